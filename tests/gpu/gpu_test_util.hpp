#pragma once
// For the tests that need a GPU: without one they skip, unless AUTOTP_REQUIRE_GPU is set (the
// GPU machine's check script sets it, so a missing GPU there is a failure, not a skip).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdlib>

namespace autotp::test {

inline int visible_gpus() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

}  // namespace autotp::test

#define AUTOTP_NEED_GPU()                                                                    \
  do {                                                                                       \
    if (autotp::test::visible_gpus() == 0) {                                                 \
      if (std::getenv("AUTOTP_REQUIRE_GPU")) FAIL() << "AUTOTP_REQUIRE_GPU: no GPU visible"; \
      GTEST_SKIP() << "no GPU visible";                                                      \
    }                                                                                        \
  } while (0)
