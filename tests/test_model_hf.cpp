// The model against transformers' Phi3ForCausalLM (fp32, eager attention): logits, loss and
// every parameter's gradient, from fixtures written by tests/fixtures/model/make_hf_fixtures.py.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "hf_fixture.hpp"

namespace autotp {

namespace {

void compare_with_hf(const std::string& name) {
  auto be = make_cpu_backend();
  auto comm = make_mpi_comm(MPI_COMM_SELF);
  test::HfComparison r = test::replay_hf_fixture(name, *be, *comm);
  EXPECT_NEAR(r.loss, r.ref_loss, 1e-5 * std::fabs(r.ref_loss)) << name;
  EXPECT_LT(r.logits_err, 1e-5) << name << " logits";
  for (auto& [slot, e] : r.grad_err) EXPECT_LT(e, 1e-5) << name << " gradient of " << slot;
  std::printf("%s: loss %.7f (transformers %.7f), worst gradient relative error %.2e\n",
              name.c_str(), r.loss, r.ref_loss, r.worst_grad_err());
}

TEST(ModelHF, TiedShortFactors) {
  compare_with_hf("tied_short");
}
TEST(ModelHF, UntiedShortFactors) {
  compare_with_hf("untied_short");
}
TEST(ModelHF, UntiedLongFactors) {
  compare_with_hf("untied_long");
}

}  // namespace
}  // namespace autotp
