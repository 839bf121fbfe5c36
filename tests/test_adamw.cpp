// ZeroOptimizer on one rank against torch.optim.AdamW + clip_grad_norm_ (fixture made by
// tests/fixtures/optim/make_adamw_fixture.py): two param groups, one with weight decay.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "kernels/cpu/cpu_backend.hpp"
#include "optim/adamw.hpp"
#include "optim/zero_optimizer.hpp"

using namespace autotp;

namespace {

CpuBackend cpu;  // host memory: the tests hand the optimizer std::vector buffers

nlohmann::json load_fixture() {
  const std::string path =
      std::string(AUTOTP_SOURCE_DIR) + "/tests/fixtures/optim/adamw_fixture.json";
  std::ifstream f(path);
  EXPECT_TRUE(f.good()) << path;
  return nlohmann::json::parse(f);
}

ParamLayout two_groups(size_t n_decay, size_t n_nodecay) {
  ParamLayout l;
  l.slots.push_back({"decayed", nullptr, 0, n_decay, false, true});
  l.slots.push_back({"not_decayed", nullptr, n_decay, n_nodecay, false, false});
  l.total = n_decay + n_nodecay;
  return l;
}

// Relative to the value, with a floor so that values near zero are not judged on noise.
void expect_close(double got, double want, double rel, const std::string& what) {
  EXPECT_LE(std::abs(got - want), rel * std::max(std::abs(want), 1e-3))
      << what << ": got " << got << " want " << want;
}

}  // namespace

TEST(AdamW, MatchesTorchWithClippingAndTwoGroups) {
  const auto fx = load_fixture();
  OptimizerConfig oc;
  oc.beta1 = fx["betas"][0];
  oc.beta2 = fx["betas"][1];
  oc.eps = fx["eps"];
  oc.weight_decay = fx["weight_decay"];
  const auto layout = two_groups(fx["n_decay"], fx["n_nodecay"]);
  auto params = fx["params0"].get<std::vector<float>>();
  std::vector<float> grads(layout.total);
  ASSERT_EQ(params.size(), layout.total);
  auto dp = make_mpi_comm(MPI_COMM_SELF), tp = make_mpi_comm(MPI_COMM_SELF);
  for (int stage : {0, 1, 2}) {
    auto p = params;
    ZeroOptimizer opt(oc, stage, fx["max_norm"], layout, p.data(), grads.data(), *dp, *tp, cpu);
    int clipped = 0;
    double worst = 0;
    for (size_t k = 0; k < fx["grads"].size(); ++k) {
      const auto gk = fx["grads"][k].get<std::vector<float>>();
      std::copy(gk.begin(), gk.end(), grads.begin());  // in place: the optimizer holds grads
      const auto st = opt.step(fx["lr"][k].get<double>());
      ASSERT_TRUE(st.applied);
      expect_close(st.grad_norm, fx["norms"][k], 1e-6, "norm at step " + std::to_string(k));
      clipped += st.clip_coef < 1.0f;
      const auto want = fx["params"][k].get<std::vector<float>>();
      for (size_t i = 0; i < want.size(); ++i) {
        expect_close(p[i], want[i], 1e-6,
                     "stage " + std::to_string(stage) + " step " + std::to_string(k) + " element " +
                         std::to_string(i));
        worst = std::max(worst, std::abs(double(p[i]) - want[i]) / std::abs(want[i]));
      }
      for (float g : grads) ASSERT_EQ(g, 0.0f) << "step() leaves the gradients zeroed";
    }
    EXPECT_EQ(opt.step_count(), 10);
    EXPECT_EQ(clipped, 4) << "the fixture clips on steps 1, 3, 6 and 8";
    RecordProperty("worst_relative_error_stage" + std::to_string(stage), std::to_string(worst));
    std::printf("stage %d: worst relative difference to torch %.3g\n", stage, worst);
  }
}

// The decoupled decay alone: with zero gradients Adam's step is zero (m = v = 0) and only
// p * (1 - lr * wd) remains, on decayed slots only.
TEST(AdamW, ZeroGradientLeavesOnlyTheDecay) {
  OptimizerConfig oc;
  oc.weight_decay = 0.5;
  const auto layout = two_groups(3, 2);
  std::vector<float> p = {1, -2, 4, 8, 16}, g(5, 0.0f);
  auto dp = make_mpi_comm(MPI_COMM_SELF), tp = make_mpi_comm(MPI_COMM_SELF);
  ZeroOptimizer opt(oc, 0, 0.0, layout, p.data(), g.data(), *dp, *tp, cpu);
  const auto st = opt.step(0.25);  // 1 - 0.25 * 0.5 = 0.875
  EXPECT_TRUE(st.applied);
  EXPECT_EQ(st.grad_norm, 0.0);
  EXPECT_EQ(p, (std::vector<float>{0.875f, -1.75f, 3.5f, 8, 16}));
}

TEST(AdamW, RejectsWhatItCannotDo) {
  const auto layout = two_groups(3, 2);
  std::vector<float> p(5), g(5);
  auto dp = make_mpi_comm(MPI_COMM_SELF), tp = make_mpi_comm(MPI_COMM_SELF);
  auto message = [&](OptimizerConfig oc, int stage, double clip) -> std::string {
    try {
      ZeroOptimizer opt(oc, stage, clip, layout, p.data(), g.data(), *dp, *tp, cpu);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  OptimizerConfig sgd;
  sgd.type = "SGD";
  EXPECT_NE(message(sgd, 0, 0).find("optimizer.type 'SGD'"), std::string::npos);
  EXPECT_NE(message({}, 3, 0).find("zero_optimization.stage 3"), std::string::npos);
  EXPECT_NE(message({}, 0, -1).find("gradient_clipping"), std::string::npos);
  OptimizerConfig beta;
  beta.beta2 = 1.0;
  EXPECT_NE(message(beta, 0, 0).find("betas"), std::string::npos);
  OptimizerConfig adam;
  adam.type = "Adam";  // DeepSpeed's Adam is AdamW by default (adam_w_mode = true)
  EXPECT_EQ(message(adam, 0, 0), "");
  auto gap = layout;
  gap.slots[1].offset = 4;
  try {
    ZeroOptimizer opt({}, 0, 0, gap, p.data(), g.data(), *dp, *tp, cpu);
    FAIL() << "a layout with a gap must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("slot 'not_decayed'"), std::string::npos) << e.what();
  }
}
