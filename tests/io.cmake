# io: safetensors, the HDF5 model file, and the Hugging Face <-> HDF5 converter.
autotp_test(test_safetensors ${PROJECT_SOURCE_DIR}/tests/test_safetensors.cpp LIBS autotp_io)
autotp_test(test_model_file ${PROJECT_SOURCE_DIR}/tests/test_model_file.cpp LIBS autotp_io)
autotp_test(test_convert ${PROJECT_SOURCE_DIR}/tests/test_convert.cpp LIBS autotp_io)

# The tool itself: a round trip through the command line (config.json comes back byte for byte),
# and a refused input exits 1 with one error line.
if(TARGET autotp-convert)
  set(io_fixtures ${PROJECT_SOURCE_DIR}/tests/fixtures/io)
  add_test(NAME autotp_convert_cli
           COMMAND sh -c [=[set -e; rm -rf "$1"; mkdir -p "$1"
             "$0" "$2/mm_tiny" "$1/m.h5" --merge_lora vision | grep -q "merged LoRA adapter 'vision' into 8 weights"
             "$0" "$1/m.h5" "$1/hf" --max_shard_size 20KB
             test -f "$1/hf/model.safetensors.index.json"
             cmp "$2/mm_tiny/config.json" "$1/hf/config.json"
             set +e; out=$("$0" "$2/phi4_tiny" "$1/x.h5" --merge_lora vision 2>&1); rc=$?; echo "$out"
             test $rc -eq 1 && echo "$out" | grep -q "autotp-convert: error: .*no 'vision_lora' object" && test ! -e "$1/x.h5"]=]
                   $<TARGET_FILE:autotp-convert> ${PROJECT_BINARY_DIR}/io_cli ${io_fixtures})
endif()
