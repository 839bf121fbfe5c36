# autotp-bench's counts, the timing Comm and the benchmark step, on the CPU backend.
autotp_test(test_bench ${PROJECT_SOURCE_DIR}/tests/test_bench.cpp RANKS 2 LIBS autotp_train)
