autotp_test(test_tokenizer ${PROJECT_SOURCE_DIR}/tests/test_tokenizer.cpp LIBS autotp_data)
autotp_test(test_bpe_trainer ${PROJECT_SOURCE_DIR}/tests/test_bpe_trainer.cpp LIBS autotp_data)
autotp_test(test_token_file ${PROJECT_SOURCE_DIR}/tests/test_token_file.cpp LIBS autotp_data)
autotp_test(test_sampler ${PROJECT_SOURCE_DIR}/tests/test_sampler.cpp RANKS 4 LIBS autotp_data)
# test_token_file also runs the autotp-tokenize tool end to end.
if(TARGET autotp-tokenize)
  add_dependencies(test_token_file autotp-tokenize)
  target_compile_definitions(test_token_file PRIVATE
                             AUTOTP_TOKENIZE_EXE="$<TARGET_FILE:autotp-tokenize>")
endif()
