# checkpoint: save and bit-exact resume, elastic resume, reshard and merge, and every bad input.
autotp_test(test_checkpoint ${PROJECT_SOURCE_DIR}/tests/test_checkpoint.cpp RANKS 4
            LIBS autotp_train autotp_checkpoint)
# End to end under mpirun: one test per case of test_checkpoint_cli.sh.
if(TARGET autotp-reshard AND TARGET autotp-merge)
  foreach(c stop_signal rotation reshard_merge bad_manifest missing_file checksum wrong_model
            disk_full)
    add_test(NAME checkpoint_cli_${c}
             COMMAND bash ${PROJECT_SOURCE_DIR}/tests/test_checkpoint_cli.sh ${c}
                     ${PROJECT_BINARY_DIR}/checkpoint_cli/${c} $<TARGET_FILE:autotp-train>
                     $<TARGET_FILE:autotp-reshard> $<TARGET_FILE:autotp-merge>
                     $<TARGET_FILE:autotp-convert>)
    set_tests_properties(checkpoint_cli_${c} PROPERTIES TIMEOUT 600 SKIP_RETURN_CODE 77)
  endforeach()
endif()
# For tests/checkpoint/export_check.sh (run by hand where transformers is installed): the
# logits of a model file on the CPU backend.
add_executable(checkpoint_logits ${PROJECT_SOURCE_DIR}/tests/checkpoint/checkpoint_logits.cpp)
target_include_directories(checkpoint_logits PRIVATE ${PROJECT_SOURCE_DIR}/tests)
target_link_libraries(checkpoint_logits PRIVATE autotp_model GTest::gtest MPI::MPI_CXX)
