autotp_test(test_adamw ${PROJECT_SOURCE_DIR}/tests/test_adamw.cpp LIBS autotp_optim)
autotp_test(test_lr_schedule ${PROJECT_SOURCE_DIR}/tests/test_lr_schedule.cpp LIBS autotp_optim)
autotp_test(test_zero ${PROJECT_SOURCE_DIR}/tests/test_zero.cpp RANKS 4 LIBS autotp_optim)
# Bucketed gradients (ZeRO-2 over DP): the ring, and training with them against a whole buffer.
autotp_test(test_grad_buckets ${PROJECT_SOURCE_DIR}/tests/test_grad_buckets.cpp RANKS 4
            LIBS autotp_train)
