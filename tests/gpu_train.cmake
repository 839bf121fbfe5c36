# GPU tests of the device communicators and of the model on the CUDA backend. Without a GPU
# they skip (tests/gpu/run_gpu_checks.sh sets AUTOTP_REQUIRE_GPU, making that a failure).
if(TARGET autotp_dist_cuda)
  autotp_test(test_device_comm ${PROJECT_SOURCE_DIR}/tests/gpu/test_device_comm.cpp RANKS 2
              LIBS autotp_dist_cuda)
  target_include_directories(test_device_comm PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  set_tests_properties(test_device_comm PROPERTIES LABELS gpu)
endif()
if(TARGET autotp_dist_cuda AND TARGET autotp_kernels_cuda)
  autotp_test(test_cuda_model_hf ${PROJECT_SOURCE_DIR}/tests/gpu/test_cuda_model_hf.cpp
              LIBS autotp_model autotp_dist_cuda)
  target_include_directories(test_cuda_model_hf PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  set_tests_properties(test_cuda_model_hf PROPERTIES LABELS gpu)
endif()
