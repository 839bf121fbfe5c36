# GPU tests of the device communicators and of the model on the CUDA backend, run by
# tests/gpu/run_gpu_checks.sh (which sets AUTOTP_REQUIRE_GPU: no GPU there is a failure).
if(TARGET autotp_dist_cuda)
  autotp_test(test_device_comm ${PROJECT_SOURCE_DIR}/tests/gpu/test_device_comm.cpp GPU
              LIBS autotp_dist_cuda)
endif()
if(TARGET autotp_dist_cuda AND TARGET autotp_kernels_cuda)
  autotp_test(test_cuda_model_hf ${PROJECT_SOURCE_DIR}/tests/gpu/test_cuda_model_hf.cpp
              GPU LIBS autotp_model autotp_dist_cuda)
endif()
