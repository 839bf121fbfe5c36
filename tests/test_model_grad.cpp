// Every parameter's gradient of the hand-written backward against central finite differences
// of the forward (fp32), on a tiny model with every feature on: GQA, head_dim != hidden/heads,
// partial rotary, LongRoPE (short and long factors), padding token, ignored targets, tied and
// untied embeddings.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/error.hpp"
#include "model/phi3_model.hpp"
#include "model_test_util.hpp"

namespace autotp {
namespace {

struct Batch {
  int B = 2, T = 6;
  std::vector<int32_t> ids, targets;
};

Batch make_batch(int T, uint32_t seed, int64_t vocab, int32_t pad) {
  Batch b;
  b.T = T;
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> tok(0, int32_t(vocab) - 1);
  for (int i = 0; i < b.B * T; ++i) b.ids.push_back(tok(rng));
  b.ids[2] = pad;  // a padding token among the inputs (its embedding row gets no gradient)
  b.ids[b.B * T - 1] = pad;
  for (int s = 0; s < b.B; ++s)
    for (int t = 0; t < T; ++t)
      b.targets.push_back(t + 1 < T ? b.ids[s * T + t + 1] : Phi3Model::kIgnoreIndex);
  b.targets[1] = Phi3Model::kIgnoreIndex;  // and an ignored label mid-sequence
  return b;
}

// Norm weights of 1 would hide a missing weight multiply: perturb them.
void perturb_norms(Phi3Model& m, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, 0.3f);
  for (auto& s : m.layout().slots) {
    if (s.spec->shape.size() != 1) continue;
    std::vector<float> w(s.numel);
    for (auto& v : w) v = 1.0f + n(rng);
    m.set_param_shard(s.name, w.data());
  }
}

void check_gradients(bool tied, int T) {
  // std 0.3 rather than 0.02: gradients large enough to stand far above fp32 rounding.
  ModelConfig cfg = test::tiny_config(tied, 0.3);
  PartitionPlan plan = test::replicated_plan(cfg);
  auto be = make_cpu_backend();
  auto comm = make_mpi_comm(MPI_COMM_SELF);
  Phi3Model m(cfg, plan, 0, *comm, *be);
  m.init_random(7);
  perturb_norms(m, 11);
  Batch b = make_batch(T, 5, cfg.vocab_size, int32_t(cfg.pad_token_id));

  m.zero_grad();
  float loss = m.forward(b.ids.data(), b.targets.data(), b.B, b.T);
  EXPECT_TRUE(std::isfinite(loss));
  EXPECT_EQ(m.num_targets(), int64_t(b.B * (T - 1) - 1));
  m.backward(1.0f);

  std::mt19937 rng(3);
  const float eps = 1e-2f;
  float* P = m.params();
  auto loss_at = [&](size_t idx, float v) {
    float old;
    be->to_host(P + idx, &old, sizeof(float));
    be->from_host(&v, P + idx, sizeof(float));
    float l = m.forward(b.ids.data(), b.targets.data(), b.B, b.T);
    be->from_host(&old, P + idx, sizeof(float));
    return l;
  };
  for (auto& slot : m.layout().slots) {
    std::vector<float> g = m.grad_shard(slot.name), p = m.param_shard(slot.name);
    const bool embed = slot.name == "model.embed_tokens.weight";
    const int64_t H = cfg.hidden_size, pad = cfg.pad_token_id;
    if (embed && !tied) {
      // nn.Embedding(padding_idx): the padding row gets exactly no gradient.
      for (int64_t j = 0; j < H; ++j) EXPECT_EQ(g[size_t(pad * H + j)], 0.0f) << j;
    }
    // A random subset of 24 elements (all of a small tensor).
    std::vector<size_t> idx(slot.numel);
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
    std::shuffle(idx.begin(), idx.end(), rng);
    idx.resize(std::min<size_t>(idx.size(), 24));
    double num = 0, den = 0;
    for (size_t i : idx) {
      // The lookup's forward uses the padding row, the backward ignores it (as torch does): a
      // finite difference there measures something the gradient deliberately leaves out.
      if (embed && int64_t(i) / H == pad) continue;
      // Central differences at eps and eps/2 combined (Richardson): the eps^2 error term
      // cancels, leaving fp32 rounding of the loss as the main error.
      auto central = [&](float h) {
        return (double(loss_at(slot.offset + i, p[i] + h)) -
                double(loss_at(slot.offset + i, p[i] - h))) /
               (double(p[i] + h) - double(p[i] - h));
      };
      double fd = (4.0 * central(eps / 2) - central(eps)) / 3.0;
      num += (fd - g[i]) * (fd - g[i]);
      den += fd * fd;
    }
    double rel = std::sqrt(num / den);
    EXPECT_LT(rel, 5e-3) << slot.name << (tied ? " (tied)" : " (untied)") << " T=" << T
                         << ": |fd - grad| / |fd| = " << rel << " over " << idx.size()
                         << " elements, |fd| = " << std::sqrt(den);
  }
}

TEST(ModelGrad, UntiedLongFactors) {
  check_gradients(false, 6);
}
TEST(ModelGrad, TiedLongFactors) {
  check_gradients(true, 6);
}
TEST(ModelGrad, TiedShortFactors) {
  check_gradients(true, 4);
}

// grad_scale multiplies, backward accumulates, and all-ignored targets give loss 0, no grads.
// zero_grad() is lazy: the backward after it overwrites the stale gradients (and zeroes the
// ones it does not write), giving the first backward's gradients bit for bit.
void check_scale_accumulate_and_no_targets(bool tied) {
  SCOPED_TRACE(tied ? "tied" : "untied");
  ModelConfig cfg = test::tiny_config(tied, 0.1);
  PartitionPlan plan = test::replicated_plan(cfg);
  auto be = make_cpu_backend();
  auto comm = make_mpi_comm(MPI_COMM_SELF);
  Phi3Model m(cfg, plan, 0, *comm, *be);
  m.init_random(1);
  Batch b = make_batch(6, 9, cfg.vocab_size, 1);
  m.zero_grad();
  m.forward(b.ids.data(), b.targets.data(), b.B, b.T);
  m.backward(1.0f);
  std::vector<float> g1(m.grads(), m.grads() + m.layout().total);
  m.forward(b.ids.data(), b.targets.data(), b.B, b.T);
  m.backward(0.5f);
  for (size_t i = 0; i < g1.size(); i += 97)
    EXPECT_NEAR(m.grads()[i], 1.5f * g1[i], 1e-6f + 1e-5f * std::fabs(g1[i]));
  m.zero_grad();
  EXPECT_EQ(m.grad_shard("model.norm.weight"), std::vector<float>(size_t(cfg.hidden_size), 0.0f));
  m.forward(b.ids.data(), b.targets.data(), b.B, b.T);
  m.backward(1.0f);
  for (size_t i = 0; i < g1.size(); ++i) ASSERT_EQ(m.grads()[i], g1[i]) << "element " << i;

  std::vector<int32_t> none(b.targets.size(), Phi3Model::kIgnoreIndex);
  m.zero_grad();
  EXPECT_EQ(m.forward(b.ids.data(), none.data(), b.B, b.T), 0.0f);
  EXPECT_EQ(m.num_targets(), 0);
  m.backward(1.0f);
  for (size_t i = 0; i < m.layout().total; ++i) ASSERT_EQ(m.grads()[i], 0.0f);
  EXPECT_THROW(m.backward(1.0f), Error);  // one backward per forward

  std::vector<int32_t> bad = b.ids;
  bad[3] = int32_t(cfg.vocab_size);
  EXPECT_THROW(m.forward(bad.data(), b.targets.data(), b.B, b.T), Error);
}

TEST(ModelGrad, ScaleAccumulateAndNoTargets) {
  check_scale_accumulate_and_no_targets(false);
  check_scale_accumulate_and_no_targets(true);
}

}  // namespace
}  // namespace autotp
