autotp_test(test_train_invariance ${PROJECT_SOURCE_DIR}/tests/test_train_invariance.cpp RANKS 4
            LIBS autotp_train)
# autotp-train end to end under mpirun: the default run, and the failures that must end the job.
add_test(NAME autotp_train_cli
         COMMAND bash ${PROJECT_SOURCE_DIR}/tests/test_train_cli.sh $<TARGET_FILE:autotp-train>
                 ${PROJECT_BINARY_DIR}/train_cli)
set_tests_properties(autotp_train_cli PROPERTIES TIMEOUT 600)
# memory_plan against the CPU backend's allocations, and checkpointing's bit-equality.
autotp_test(test_memory_plan ${PROJECT_SOURCE_DIR}/tests/test_memory_plan.cpp RANKS 4
            LIBS autotp_train)
