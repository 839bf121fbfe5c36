autotp_test(test_train_invariance ${PROJECT_SOURCE_DIR}/tests/test_train_invariance.cpp RANKS 4
            LIBS autotp_train)
# autotp-train end to end under mpirun: the default run, and the failures that must end the job.
add_test(NAME autotp_train_cli
         COMMAND bash ${PROJECT_SOURCE_DIR}/tests/test_train_cli.sh $<TARGET_FILE:autotp-train>
                 ${PROJECT_BINARY_DIR}/train_cli)
set_tests_properties(autotp_train_cli PROPERTIES TIMEOUT 600)
# A Hugging Face folder as the model: its weights, bit for bit as through autotp-convert.
add_test(NAME autotp_hf_folder
         COMMAND bash ${PROJECT_SOURCE_DIR}/tests/test_hf_folder.sh $<TARGET_FILE:autotp-train>
                 $<TARGET_FILE:autotp-convert> $<TARGET_FILE:autotp-bench>
                 $<TARGET_FILE:autotp-plan> ${PROJECT_SOURCE_DIR}/tests/fixtures/io
                 ${PROJECT_SOURCE_DIR}/share ${PROJECT_BINARY_DIR}/hf_folder)
set_tests_properties(autotp_hf_folder PROPERTIES TIMEOUT 600)
# The README's first command as written (tools/mpirun.sh: root and other users alike).
add_test(NAME readme_first_command
         COMMAND bash ${PROJECT_SOURCE_DIR}/tests/test_readme_first_command.sh
                 ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
set_tests_properties(readme_first_command PROPERTIES TIMEOUT 600 SKIP_RETURN_CODE 77)
# memory_plan against the CPU backend's allocations, and checkpointing's bit-equality.
autotp_test(test_memory_plan ${PROJECT_SOURCE_DIR}/tests/test_memory_plan.cpp RANKS 4
            LIBS autotp_train)
