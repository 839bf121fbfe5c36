autotp_test(test_dtype ${PROJECT_SOURCE_DIR}/tests/test_dtype.cpp LIBS autotp_core)
autotp_test(test_model_config ${PROJECT_SOURCE_DIR}/tests/test_model_config.cpp LIBS autotp_config)
autotp_test(test_topology ${PROJECT_SOURCE_DIR}/tests/test_topology.cpp RANKS 4 LIBS autotp_dist)
