// The CUDA backend against transformers' Phi3ForCausalLM: the fixtures of test_model_hf.cpp
// (fp32 eager reference) replayed on the GPU, whose GEMMs take bf16 operands. bf16 keeps 8
// significant bits (unit roundoff 2^-8 = 3.9e-3), so the loss must agree to 1e-2 relative and
// each gradient to 5e-2 in norm (||g - g_ref|| / ||g_ref||): a few roundings through two layers
// forward and back, not a wrong kernel (those give errors of order 1).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "dist/cuda/device_comm.hpp"
#include "gpu_test_util.hpp"
#include "hf_fixture.hpp"
#include "kernels/cuda/cuda_backend.hpp"

namespace autotp {

namespace {

constexpr double kLossTol = 1e-2, kLogitsTol = 2e-2, kGradTol = 5e-2;

void compare_on_gpu(const std::string& name) {
  auto be = make_cuda_backend(0);
  auto comm = make_staged_mpi_comm(MPI_COMM_SELF, be->stream());
  test::HfComparison r = test::replay_hf_fixture(name, *be, *comm);
  const double loss_rel = std::fabs(double(r.loss) - r.ref_loss) / std::fabs(double(r.ref_loss));
  EXPECT_LE(loss_rel, kLossTol) << name << ": loss " << r.loss << " vs " << r.ref_loss;
  EXPECT_LT(r.logits_err, kLogitsTol) << name << " logits";
  for (auto& [slot, e] : r.grad_err) EXPECT_LT(e, kGradTol) << name << " gradient of " << slot;
  std::printf(
      "hf-fixture %s on %s: loss %.6f (transformers %.6f, relative difference %.2e <= %.0e), "
      "logits relative error %.2e, worst gradient relative error %.2e (<= %.0e)\n",
      name.c_str(), be->device_name().c_str(), r.loss, r.ref_loss, loss_rel, kLossTol, r.logits_err,
      r.worst_grad_err(), kGradTol);
}

TEST(CudaModelHF, TiedShortFactors) {
  AUTOTP_NEED_GPU();
  compare_on_gpu("tied_short");
}
TEST(CudaModelHF, UntiedShortFactors) {
  AUTOTP_NEED_GPU();
  compare_on_gpu("untied_short");
}
TEST(CudaModelHF, UntiedLongFactors) {
  AUTOTP_NEED_GPU();
  compare_on_gpu("untied_long");
}

}  // namespace
}  // namespace autotp
