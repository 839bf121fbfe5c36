# gpu: the CUDA backend against the CPU backend, op by op. Built whenever the CUDA backend is,
# but not registered with ctest (CI has no GPU); the GPU job script runs it.
if(TARGET autotp_kernels_cuda)
  add_executable(test_cuda_backend ${PROJECT_SOURCE_DIR}/tests/gpu/test_cuda_backend.cpp)
  target_include_directories(test_cuda_backend PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  target_link_libraries(test_cuda_backend PRIVATE autotp_kernels GTest::gtest_main)
endif()

# gemm_sweep: the step's GEMM shapes under every cuBLASLt algorithm (a measurement, not a test).
if(TARGET autotp_kernels_cuda)
  add_executable(gemm_sweep ${PROJECT_SOURCE_DIR}/tests/gpu/gemm_sweep.cu)
  target_include_directories(gemm_sweep PRIVATE ${PROJECT_SOURCE_DIR}/lib)
  target_link_libraries(gemm_sweep PRIVATE CUDA::cudart CUDA::cublas CUDA::cublasLt)
  # wgmma_probe: the wgmma wrappers' descriptor conventions against the CPU (a diagnosis tool).
  add_executable(wgmma_probe ${PROJECT_SOURCE_DIR}/tests/gpu/wgmma_probe.cu)
  target_include_directories(wgmma_probe PRIVATE ${PROJECT_SOURCE_DIR}/lib)
  target_link_libraries(wgmma_probe PRIVATE CUDA::cudart)
endif()
