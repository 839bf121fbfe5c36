autotp_test(test_ds_config ${PROJECT_SOURCE_DIR}/tests/test_ds_config.cpp LIBS autotp_config)
autotp_test(test_partition_regex ${PROJECT_SOURCE_DIR}/tests/test_partition_regex.cpp
            LIBS autotp_partition)
autotp_test(test_partition_config ${PROJECT_SOURCE_DIR}/tests/test_partition_config.cpp
            LIBS autotp_partition)
autotp_test(test_partition_gqa ${PROJECT_SOURCE_DIR}/tests/test_partition_gqa.cpp
            LIBS autotp_partition)
autotp_test(test_partition_shard ${PROJECT_SOURCE_DIR}/tests/test_partition_shard.cpp
            LIBS autotp_partition)
if(TARGET autotp-plan)
  autotp_test(test_autotp_plan ${PROJECT_SOURCE_DIR}/tests/test_autotp_plan.cpp LIBS autotp_train)
  add_dependencies(test_autotp_plan autotp-plan)
endif()
