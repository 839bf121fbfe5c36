// Runs under mpirun -np 4. ZeRO stages 0, 1 and 2 on TP x DP = 1x4, 2x2 and 4x1 against a
// serial AdamW (double precision) on the global problem, computed on every rank.
//
// The global problem: a model of six parameters, some TP-sharded and some replicated, some
// without weight decay, whose local sizes (49 elements in all) do not divide dp, so the shards
// are padded. A sharded parameter of local size L has global size L * tp and TP rank t holds
// global elements [t * L, (t + 1) * L); a replicated one is the same on every TP rank. DP rank d
// contributes gradient g_d, the update uses their mean. Gradients are small multiples of 2^-10
// so every sum over ranks is exact, whatever order MPI adds in.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "dist/comm.hpp"
#include "dist/timed_comm.hpp"
#include "dist/topology.hpp"
#include "kernels/cpu/cpu_backend.hpp"
#include "optim/zero_optimizer.hpp"
#include "test_util.hpp"

using namespace autotp;

namespace {

CpuBackend cpu;  // host memory: the tests hand the optimizer std::vector buffers

struct SlotDef {
  const char* name;
  size_t local;
  bool replicated, decay;
};
const SlotDef kSlots[] = {{"embed", 13, false, true}, {"ln1", 7, true, false},
                          {"qkv", 11, false, true},   {"bias", 5, false, false},
                          {"ln2", 3, true, false},    {"head", 10, true, true}};
constexpr int kSteps = 5;
const double kLr[kSteps] = {1e-2, 2e-2, 3e-2, 2e-2, 1e-2};
// Per-step gradient scales (powers of two keep the sums exact): clipping at kClip bites on
// steps 0, 2 and 4 only.
const double kScale[kSteps] = {1.0, 1.0 / 16, 2.0, 1.0 / 32, 1.0};
constexpr double kClip = 0.1;

OptimizerConfig adamw() {
  OptimizerConfig oc;
  oc.beta1 = 0.9;
  oc.beta2 = 0.95;
  oc.eps = 1e-3;  // comparable to the gradients: a wrong gradient scale changes the update
  oc.weight_decay = 0.1;
  return oc;
}

uint64_t mix(uint64_t x) {  // splitmix64's finaliser
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// The global problem at one TP degree.
struct Global {
  int tp, dp;
  std::vector<size_t> offset;  // global offset of each slot
  size_t total = 0;

  Global(int tp_, int dp_) : tp(tp_), dp(dp_) {
    for (auto& s : kSlots) {
      offset.push_back(total);
      total += s.replicated ? s.local : s.local * tp;
    }
  }
  // Global index of element o of slot s on TP rank t.
  size_t index(size_t s, int t, size_t o) const {
    return offset[s] + (kSlots[s].replicated ? 0 : size_t(t) * kSlots[s].local) + o;
  }
  static float param0(size_t j) {
    const double u = double(mix(j) >> 11) / double(1ull << 53);
    return float((mix(j + 7777) & 1 ? 1.0 : -1.0) * (0.5 + u));
  }
  // DP rank d's gradient of global element j at step k: an integer in [-64, 64] times 2^-10.
  static float grad(size_t j, int d, int k) {
    const int q = int(mix(j * 1000003ull + uint64_t(d) * 7919ull + uint64_t(k) * 104729ull) % 129);
    return float((q - 64) / 1024.0 * kScale[k]);
  }
};

struct Reference {
  std::vector<double> p, m, v, norm;
};

// Serial AdamW in double on the global vectors; every element counted once in the norm.
Reference serial_adamw(const Global& g) {
  const auto oc = adamw();
  Reference r;
  for (size_t j = 0; j < g.total; ++j) r.p.push_back(Global::param0(j));
  r.m.assign(g.total, 0.0);
  r.v.assign(g.total, 0.0);
  std::vector<bool> decay(g.total);
  for (size_t s = 0; s < std::size(kSlots); ++s)
    for (size_t j = g.offset[s]; j < (s + 1 < std::size(kSlots) ? g.offset[s + 1] : g.total); ++j)
      decay[j] = kSlots[s].decay;
  for (int k = 0; k < kSteps; ++k) {
    std::vector<double> mean(g.total, 0.0);
    double ss = 0.0;
    for (size_t j = 0; j < g.total; ++j) {
      for (int d = 0; d < g.dp; ++d) mean[j] += Global::grad(j, d, k);
      mean[j] /= g.dp;
      ss += mean[j] * mean[j];
    }
    const double norm = std::sqrt(ss), coef = std::min(1.0, kClip / (norm + 1e-6));
    r.norm.push_back(norm);
    const double lr = kLr[k], t = k + 1;
    const double bc1 = 1 - std::pow(oc.beta1, t), bc2 = 1 - std::pow(oc.beta2, t);
    for (size_t j = 0; j < g.total; ++j) {
      const double gj = mean[j] * coef;
      if (decay[j]) r.p[j] -= lr * oc.weight_decay * r.p[j];
      r.m[j] = oc.beta1 * r.m[j] + (1 - oc.beta1) * gj;
      r.v[j] = oc.beta2 * r.v[j] + (1 - oc.beta2) * gj * gj;
      r.p[j] -= lr / bc1 * r.m[j] / (std::sqrt(r.v[j] / bc2) + oc.eps);
    }
  }
  return r;
}

ParamLayout local_layout() {
  ParamLayout l;
  for (auto& s : kSlots) {
    ParamSlot p;
    p.name = s.name;
    p.offset = l.total;
    p.numel = s.local;
    p.tp_replicated = s.replicated;
    p.decay = s.decay;
    l.total += s.local;
    l.slots.push_back(p);
  }
  return l;
}

// Global index of each local flat element on this TP rank.
std::vector<size_t> global_index(const Global& g, const ParamLayout& l, int tp_rank) {
  std::vector<size_t> idx(l.total);
  for (size_t s = 0; s < l.slots.size(); ++s)
    for (size_t o = 0; o < l.slots[s].numel; ++o)
      idx[l.slots[s].offset + o] = g.index(s, tp_rank, o);
  return idx;
}

bool close(double got, double want, double rel, double abs_floor = 0.0) {
  return std::abs(got - want) <= rel * std::abs(want) + abs_floor;
}

struct Snapshot {
  std::vector<float> params, master, m, v;
  int64_t step;
  Snapshot(ZeroOptimizer& o, const std::vector<float>& p)
      : params(p),
        master(o.master().data, o.master().data + o.master().numel),
        m(o.exp_avg().data, o.exp_avg().data + o.exp_avg().numel),
        v(o.exp_avg_sq().data, o.exp_avg_sq().data + o.exp_avg_sq().numel),
        step(o.step_count()) {}
  bool operator==(const Snapshot& b) const {
    return params == b.params && master == b.master && m == b.m && v == b.v && step == b.step;
  }
};

// One TP x DP layout of the 4 ranks: this rank's groups, the global problem and its reference.
struct Case {
  Topology topo;
  std::unique_ptr<Comm> tpc, dpc;
  Global g;
  Reference ref;
  std::vector<size_t> idx;  // global index of each local element
  std::string where;
};

// f(Case&) on TP x DP = 1x4, 2x2 and 4x1.
template <typename F>
void on_every_topology(const ParamLayout& layout, F&& f) {
  for (auto [tp, dp] : {std::pair{1, 4}, {2, 2}, {4, 1}}) {
    auto topo = Topology::create(MPI_COMM_WORLD, tp, dp);
    const Global g(tp, dp);
    Case c{topo,
           make_mpi_comm(topo.tp_comm),
           make_mpi_comm(topo.dp_comm),
           g,
           serial_adamw(g),
           global_index(g, layout, topo.tp_rank),
           "tp=" + std::to_string(tp) + " dp=" + std::to_string(dp) + " rank " +
               std::to_string(topo.world_rank)};
    f(c);
    topo.free();
  }
}

}  // namespace

TEST(Zero, StagesMatchTheSerialReferenceOnEveryTopology) {
  const auto layout = local_layout();
  on_every_topology(layout, [&](Case& c) {
    auto& [topo, tpc, dpc, g, ref, idx, where] = c;
    const int dp = g.dp;
    std::vector<std::vector<float>> finals;
    for (int stage : {0, 1, 2}) {
      for (size_t bucket : {ZeroOptimizer::kDefaultBucketNumel, size_t(5)}) {
        const std::string run =
            where + " stage " + std::to_string(stage) + " bucket " + std::to_string(bucket);
        std::vector<float> params(layout.total), grads(layout.total);
        for (size_t i = 0; i < layout.total; ++i) params[i] = Global::param0(idx[i]);
        ZeroOptimizer opt(adamw(), stage, kClip, layout, params.data(), grads.data(), *dpc, *tpc,
                          cpu, bucket);
        auto fill = [&](int k) {
          for (size_t i = 0; i < layout.total; ++i)
            grads[i] = Global::grad(idx[i], topo.dp_rank, k);
        };
        // Memory: stages 1/2 keep state for the own shard only.
        auto [lo, hi] = ZeroOptimizer::shard_range(layout.total, dp, topo.dp_rank);
        EXPECT_EQ(opt.master().offset, stage == 0 ? 0 : lo) << run;
        EXPECT_EQ(opt.master().numel, stage == 0 ? layout.total : hi - lo) << run;
        EXPECT_EQ(opt.exp_avg().numel, opt.master().numel) << run;
        EXPECT_LE(hi - lo, (layout.total + dp - 1) / dp) << run;

        int k = 0;
        auto good_step = [&] {
          fill(k);
          const auto st = opt.step(kLr[k]);
          EXPECT_TRUE(st.applied) << run << " step " << k;
          EXPECT_TRUE(close(st.grad_norm, ref.norm[k], 1e-6))
              << run << " step " << k << ": norm " << st.grad_norm << " want " << ref.norm[k];
          EXPECT_EQ(st.clip_coef < 1.0f, k % 2 == 0) << run << " step " << k;
          ++k;
        };
        // A non-finite gradient on one rank: every rank skips, nothing moves.
        auto bad_step = [&](size_t slot, int world_rank, float bad) {
          fill(k);
          if (topo.world_rank == world_rank) grads[layout.slots[slot].offset + 1] = bad;
          const Snapshot before(opt, params);
          const auto st = opt.step(kLr[k]);
          EXPECT_FALSE(st.applied) << run;
          EXPECT_FALSE(std::isfinite(st.grad_norm)) << run << " norm " << st.grad_norm;
          EXPECT_TRUE(before == Snapshot(opt, params)) << run << ": a skipped step changed state";
          for (float x : grads) ASSERT_EQ(x, 0.0f) << run << ": grads not zeroed";
        };
        good_step();
        good_step();
        good_step();
        bad_step(0, 1, std::numeric_limits<float>::quiet_NaN());  // sharded slot
        // Replicated slot on the last rank: tp_rank tp - 1, whose copy the norm does not count
        // when tp > 1.
        bad_step(1, 3, std::numeric_limits<float>::infinity());
        good_step();
        good_step();
        EXPECT_EQ(opt.step_count(), kSteps) << run;

        for (size_t i = 0; i < layout.total; ++i)
          EXPECT_TRUE(close(params[i], ref.p[idx[i]], 1e-6))
              << run << " element " << i << ": " << params[i] << " want " << ref.p[idx[i]];
        // m sums gradients of both signs: judge it against its own scale, not each value.
        double m_scale = 0, v_scale = 0;
        for (double x : ref.m) m_scale = std::max(m_scale, std::abs(x));
        for (double x : ref.v) v_scale = std::max(v_scale, x);
        const auto ms = opt.master(), m = opt.exp_avg(), v = opt.exp_avg_sq();
        for (size_t i = 0; i < ms.numel; ++i) {
          const size_t j = idx[ms.offset + i];
          EXPECT_EQ(ms.data[i], params[ms.offset + i]) << run;
          EXPECT_TRUE(close(m.data[i], ref.m[j], 1e-6, 1e-6 * m_scale))
              << run << " m " << i << ": " << m.data[i] << " want " << ref.m[j];
          EXPECT_TRUE(close(v.data[i], ref.v[j], 1e-6, 1e-6 * v_scale)) << run << " v " << i;
        }
        finals.push_back(params);
      }
    }
    for (size_t r = 1; r < finals.size(); ++r)
      for (size_t i = 0; i < layout.total; ++i)
        EXPECT_TRUE(close(finals[r][i], finals[0][i], 1e-6)) << where << " run " << r;
  });
}

// Bucketed gradients (stage 2 over DP, no gradient buffer): each step's gradient arrives as two
// micro-batches of halves (exact), each in groups (the model's layers) from buckets that a ring
// of two reuses once the optimizer has finished the group they held; the result is the serial
// reference's, and a NaN in one rank's bucket skips the step everywhere.
TEST(Zero, BucketedGradientsMatchTheSerialReference) {
  const auto layout = local_layout();
  on_every_topology(layout, [&](Case& c) {
    auto& [topo, tpc, dpc, g, ref, idx, where] = c;
    if (g.dp == 1) return;
    for (size_t bucket : {ZeroOptimizer::kDefaultBucketNumel, size_t(5)}) {
      const std::string run = where + " bucket " + std::to_string(bucket);
      std::vector<float> params(layout.total);
      for (size_t i = 0; i < layout.total; ++i) params[i] = Global::param0(idx[i]);
      ZeroOptimizer opt(adamw(), 2, kClip, layout, params.data(), nullptr, *dpc, *tpc, cpu, bucket);
      EXPECT_TRUE(opt.bucketed()) << run;
      const auto [lo, hi] = ZeroOptimizer::shard_range(layout.total, g.dp, topo.dp_rank);
      // Groups in the order a backward finishes them, last first, cutting slots and shards.
      const std::vector<std::pair<size_t, size_t>> groups = {{31, 49}, {12, 31}, {0, 12}};
      std::vector<float> ring[2] = {std::vector<float>(19), std::vector<float>(19)};
      int held[2] = {-1, -1}, next = 0;
      opt.zero_grad();
      auto micro_batch = [&](int k, float bad) {
        for (size_t gi = 0; gi < groups.size(); ++gi) {
          const auto [b, e] = groups[gi];
          const int r = next;
          next ^= 1;
          if (held[r] >= 0)
            opt.finish_grads(groups[size_t(held[r])].first,
                             groups[size_t(held[r])].second - groups[size_t(held[r])].first);
          held[r] = int(gi);
          std::vector<float>& buf = ring[r];
          for (size_t i = b; i < e; ++i) buf[i - b] = Global::grad(idx[i], topo.dp_rank, k) / 2;
          if (b == 0) buf[1] += bad;
          opt.grads_ready(b, e - b, buf.data());
        }
      };
      for (int k = 0; k < kSteps; ++k) {
        micro_batch(k, 0.0f);
        micro_batch(k, 0.0f);
        const auto st = opt.step(kLr[k]);
        EXPECT_TRUE(st.applied) << run << " step " << k;
        EXPECT_TRUE(close(st.grad_norm, ref.norm[k], 1e-6))
            << run << " step " << k << ": norm " << st.grad_norm << " want " << ref.norm[k];
        if (k == 2) {  // a NaN on the last rank: skipped on every rank, nothing moves
          const std::vector<float> before = params;
          micro_batch(k + 1, 0.0f);
          micro_batch(k + 1, topo.world_rank == 3 ? std::numeric_limits<float>::quiet_NaN() : 0);
          EXPECT_FALSE(opt.step(1.0).applied) << run;
          EXPECT_EQ(params, before) << run;
          EXPECT_EQ(opt.step_count(), k + 1) << run;
        }
      }
      for (size_t i = 0; i < layout.total; ++i)
        EXPECT_TRUE(close(params[i], ref.p[idx[i]], 1e-6))
            << run << " element " << i << ": " << params[i] << " want " << ref.p[idx[i]];
      EXPECT_EQ(opt.master().offset, lo) << run;
      EXPECT_EQ(opt.master().numel, hi - lo) << run;
    }
  });
}

// MPI's marks: wait_until(mark) completes the sums started before the mark, whatever runs after.
TEST(ZeroComm, WaitUntilAMarkCompletesTheSumsBeforeIt) {
  auto c = make_mpi_comm(MPI_COMM_WORLD);
  const int n = c->size(), r = c->rank();
  constexpr size_t kLen = 1000;
  std::vector<std::vector<float>> bufs(static_cast<size_t>(n), std::vector<float>(kLen));
  std::vector<size_t> marks;
  for (int q = 0; q < n; ++q) {
    for (size_t j = 0; j < kLen; ++j) bufs[size_t(q)][j] = float(r + 1) * float(q + 1) + float(j);
    c->reduce_sum_async(bufs[size_t(q)].data(), kLen, q);
    marks.push_back(c->mark());
  }
  EXPECT_EQ(c->mark(), marks.back());
  for (int q = 0; q < n; ++q) {
    EXPECT_GT(marks[size_t(q)], q ? marks[size_t(q) - 1] : 0) << "marks grow";
    c->wait_until(marks[size_t(q)]);
    c->wait_until(marks[0]);  // old: nothing to do
    if (q != r) continue;
    for (size_t j = 0; j < kLen; ++j)
      ASSERT_EQ(bufs[size_t(q)][j], float(n * (n + 1) / 2) * float(q + 1) + float(n) * float(j));
  }
  c->wait_all();
  c->wait_until(marks.back());
}

// The norm counts replicated parameters once: with tp = 4 and only a replicated slot carrying
// gradient, the norm is that slot's norm, not twice it.
TEST(Zero, ReplicatedSlotsCountOnce) {
  auto topo = Topology::create(MPI_COMM_WORLD, 4, 1);
  auto tpc = make_mpi_comm(topo.tp_comm), dpc = make_mpi_comm(topo.dp_comm);
  ParamLayout l;
  l.slots.push_back({"norm", nullptr, 0, 2, true, false});
  l.slots.push_back({"w", nullptr, 2, 1, false, true});
  l.total = 3;
  std::vector<float> p(3, 1.0f), g = {3.0f, 4.0f, 0.0f};
  ZeroOptimizer opt(adamw(), 2, 0.0, l, p.data(), g.data(), *dpc, *tpc, cpu);
  EXPECT_DOUBLE_EQ(opt.step(0.0).grad_norm, 5.0);
  g = {0.0f, 0.0f, 1.0f};  // the sharded element counts on all 4 TP ranks: sqrt(4)
  EXPECT_DOUBLE_EQ(opt.step(0.0).grad_norm, 2.0);
  topo.free();
}

// The async sums the optimizer overlaps with the backward: many in flight at once, reduces to
// every root and all-reduces, complete at wait_all(); through TimedComm, enabled (each completes
// at once and counts as one call) and disabled (passed through).
TEST(ZeroComm, AsyncSumsCompleteAtWaitAll) {
  for (bool timed : {false, true}) {
    TimedComm c(make_mpi_comm(MPI_COMM_WORLD), nullptr);
    c.set_enabled(timed);
    const int r = c.rank(), n = c.size();
    constexpr size_t kLen = 1000;  // per piece
    // Piece p: rank r holds r * 1000 + p * 7 + i at element i; its sum over ranks is
    // 1000 * n (n - 1) / 2 + n (p * 7 + i).
    std::vector<float> buf(kLen * size_t(n + 1));
    auto value = [&](int rank, size_t p, size_t i) { return float(rank * 1000 + p * 7 + i); };
    for (size_t p = 0; p <= size_t(n); ++p)
      for (size_t i = 0; i < kLen; ++i) buf[p * kLen + i] = value(r, p, i);
    for (int p = n - 1; p >= 0; --p) c.reduce_sum_async(buf.data() + p * kLen, kLen, p);
    c.all_reduce_sum_async(buf.data() + n * kLen, kLen);
    c.wait_all();
    auto sum = [&](size_t p, size_t i) {
      float s = 0;
      for (int q = 0; q < n; ++q) s += value(q, p, i);
      return s;
    };
    for (size_t i = 0; i < kLen; ++i) {
      ASSERT_EQ(buf[size_t(r) * kLen + i], sum(size_t(r), i)) << "reduce to root " << r;
      ASSERT_EQ(buf[size_t(n) * kLen + i], sum(size_t(n), i)) << "all-reduce";
    }
    EXPECT_EQ(c.calls(), timed ? n + 1 : 0);
  }
}

namespace {

// Ranges of the test layout (49 elements: embed [0,13) ln1 [13,20) qkv [20,31) bias [31,36)
// ln2 [36,39) head [39,49)), in the order a backward could report them.
using Ranges = std::vector<std::pair<size_t, size_t>>;  // offset, count
// Every element once, last slot first, qkv split across two reports, bias and ln2 as one.
const Ranges kAll = {{39, 10}, {31, 8}, {26, 5}, {20, 6}, {13, 7}, {0, 13}};
// Gaps at the start, in the middle and at the end, left to step().
const Ranges kSome = {{31, 8}, {20, 6}};

}  // namespace

// Starting the DP sums from grads_ready() (any order, any subset) changes nothing: the same
// parameters and state, bit for bit, as step() alone, and the serial reference. Twice over:
// with the exact gradients (a range summed twice or never shows against the reference), and
// with gradients whose float sums round (a different cut into collectives could add them in
// another order).
TEST(Zero, ReportedRangesGiveTheSameStepAsNone) {
  const auto layout = local_layout();
  on_every_topology(layout, [&](Case& c) {
    auto& [topo, tpc, dpc, g, ref, idx, where] = c;
    for (int stage : {0, 1, 2}) {
      for (size_t bucket : {ZeroOptimizer::kDefaultBucketNumel, size_t(5)}) {
        for (bool exact : {true, false}) {
          const std::string run = where + " stage " + std::to_string(stage) + " bucket " +
                                  std::to_string(bucket) + (exact ? " exact" : " rounding");
          std::vector<float> params[2], grads[2];
          std::vector<std::unique_ptr<ZeroOptimizer>> opt;
          for (int h = 0; h < 2; ++h) {  // 0: no reports, 1: reports
            params[h].resize(layout.total);
            grads[h].resize(layout.total);
            for (size_t i = 0; i < layout.total; ++i) params[h][i] = Global::param0(idx[i]);
            opt.push_back(std::make_unique<ZeroOptimizer>(adamw(), stage, kClip, layout,
                                                          params[h].data(), grads[h].data(), *dpc,
                                                          *tpc, cpu, bucket));
          }
          for (int k = 0; k < kSteps; ++k) {
            StepStats st[2];
            for (int h = 0; h < 2; ++h) {
              for (size_t i = 0; i < layout.total; ++i)
                grads[h][i] = Global::grad(idx[i], topo.dp_rank, k) +
                              (exact ? 0.0f : float(topo.dp_rank + 1) / 3e4f);
              if (h == 1)
                for (auto [o, c] : k % 2 ? kSome : kAll) opt[1]->grads_ready(o, c);
              st[h] = opt[h]->step(kLr[k]);
            }
            EXPECT_TRUE(st[1].applied) << run << " step " << k;
            EXPECT_EQ(st[1].grad_norm, st[0].grad_norm) << run << " step " << k;
            if (exact) {
              EXPECT_TRUE(close(st[1].grad_norm, ref.norm[k], 1e-6)) << run << " step " << k;
            }
            EXPECT_TRUE(Snapshot(*opt[1], params[1]) == Snapshot(*opt[0], params[0]))
                << run << " step " << k << ": the reported step differs from the plain one";
            for (float x : grads[1]) ASSERT_EQ(x, 0.0f) << run << ": grads not zeroed";
          }
          for (size_t i = 0; exact && i < layout.total; ++i)
            EXPECT_TRUE(close(params[1][i], ref.p[idx[i]], 1e-6))
                << run << " element " << i << ": " << params[1][i] << " want " << ref.p[idx[i]];
        }
      }
    }
  });
}

// A range reported twice, or past the end, is one clear error on every rank; the step then
// goes on (nothing was started for the bad report) and gives the plain step's result.
TEST(Zero, OverlappingOrOutOfRangeReportsAreClearErrors) {
  const auto layout = local_layout();
  auto topo = Topology::create(MPI_COMM_WORLD, 1, 4);
  auto tpc = make_mpi_comm(topo.tp_comm), dpc = make_mpi_comm(topo.dp_comm);
  for (int stage : {0, 1, 2}) {
    std::vector<float> params[2], grads[2];
    std::vector<std::unique_ptr<ZeroOptimizer>> opt;
    for (int h = 0; h < 2; ++h) {
      params[h].assign(layout.total, 0.5f);
      grads[h].resize(layout.total);
      for (size_t i = 0; i < layout.total; ++i) grads[h][i] = Global::grad(i, topo.dp_rank, 0);
      opt.push_back(std::make_unique<ZeroOptimizer>(adamw(), stage, kClip, layout, params[h].data(),
                                                    grads[h].data(), *dpc, *tpc, cpu));
    }
    ZeroOptimizer& o = *opt[1];
    o.grads_ready(10, 20);
    const std::string run = "stage " + std::to_string(stage);
    for (auto [off, count] : Ranges{{25, 5}, {5, 6}, {0, 49}, {12, 1}}) {
      const std::string e = error_of([&] { o.grads_ready(off, count); });
      EXPECT_TRUE(has(e, "overlaps [10, 30), reported earlier in this step")) << run << ": " << e;
    }
    for (auto [off, count] : Ranges{{45, 5}, {50, 0}, {1, size_t(-1)}}) {
      const std::string e = error_of([&] { o.grads_ready(off, count); });
      EXPECT_TRUE(has(e, "lie outside the model's 49 gradients")) << run << ": " << e;
    }
    EXPECT_TRUE(has(error_of([&] { o.zero_grad(); }), "call step() first")) << run;
    o.grads_ready(30, 19);  // adjacent: fine
    o.grads_ready(49, 0);   // empty, at the end: fine
    opt[0]->step(1e-2);
    o.step(1e-2);
    EXPECT_TRUE(Snapshot(*opt[1], params[1]) == Snapshot(*opt[0], params[0])) << run;
  }
  topo.free();
}

namespace {

// Forwards to an MPI communicator and logs the async sums started on a buffer: (begin, end,
// root), root -1 for an all-reduce.
class LoggingComm final : public Comm {
 public:
  LoggingComm(MPI_Comm c, const float* base) : in_(make_mpi_comm(c)), base_(base) {}
  int rank() const override { return in_->rank(); }
  int size() const override { return in_->size(); }
  void all_reduce_sum(float* b, size_t n) override { in_->all_reduce_sum(b, n); }
  void all_reduce_max(float* b, size_t n) override { in_->all_reduce_max(b, n); }
  void all_gather(const float* s, float* r, size_t n) override { in_->all_gather(s, r, n); }
  void reduce_scatter_sum(const float* s, float* r, size_t n) override {
    in_->reduce_scatter_sum(s, r, n);
  }
  void broadcast(float* b, size_t n, int root) override { in_->broadcast(b, n, root); }
  void barrier() override { in_->barrier(); }
  void reduce_sum_async(float* b, size_t n, int root) override {
    log.push_back({size_t(b - base_), size_t(b - base_) + n, root});
    in_->reduce_sum_async(b, n, root);
  }
  void all_reduce_sum_async(float* b, size_t n) override {
    log.push_back({size_t(b - base_), size_t(b - base_) + n, -1});
    in_->all_reduce_sum_async(b, n);
  }
  void wait_all() override {
    ++waits;
    in_->wait_all();
  }
  std::vector<std::tuple<size_t, size_t, int>> log;
  int waits = 0;

 private:
  std::unique_ptr<Comm> in_;
  const float* base_;
};

}  // namespace

// A piece starts as soon as its last element is reported, not at step(). DP 4, bucket 5: the
// 49 elements in shards of 13 are cut at 5, 10, 13, 15, 20, 25, 26, 30, 35, 39, 40, 45.
TEST(Zero, APieceStartsWhenItsLastElementIsReported) {
  const auto layout = local_layout();
  auto topo = Topology::create(MPI_COMM_WORLD, 1, 4);
  auto tpc = make_mpi_comm(topo.tp_comm);
  for (int stage : {1, 2}) {
    std::vector<float> params(layout.total, 0.5f), grads(layout.total, 1.0f);
    LoggingComm dpc(topo.dp_comm, grads.data());
    ZeroOptimizer opt(adamw(), stage, 0.0, layout, params.data(), grads.data(), dpc, *tpc, cpu, 5);
    // Stage 2 reduces each piece to the owner of its shard (13 elements each); stage 1
    // all-reduces.
    auto root = [&](int owner) { return stage == 2 ? owner : -1; };
    using Log = std::vector<std::tuple<size_t, size_t, int>>;
    opt.grads_ready(39, 10);
    EXPECT_EQ(dpc.log, (Log{{39, 40, root(3)}, {40, 45, root(3)}, {45, 49, root(3)}}));
    opt.grads_ready(31, 8);  // [35, 39) is complete, [30, 35) still lacks 30
    EXPECT_EQ(dpc.log.size(), 4u);
    EXPECT_EQ(dpc.log.back(), std::make_tuple(size_t(35), size_t(39), root(2)));
    opt.grads_ready(30, 1);
    EXPECT_EQ(dpc.log.back(), std::make_tuple(size_t(30), size_t(35), root(2)));
    EXPECT_EQ(dpc.waits, 0);
    opt.step(0.0);
    // The rest in layout order, then one wait.
    EXPECT_EQ(dpc.waits, 1);
    const Log rest(dpc.log.begin() + 5, dpc.log.end());
    EXPECT_EQ(rest, (Log{{0, 5, root(0)},
                         {5, 10, root(0)},
                         {10, 13, root(0)},
                         {13, 15, root(1)},
                         {15, 20, root(1)},
                         {20, 25, root(1)},
                         {25, 26, root(1)},
                         {26, 30, root(2)}}));
  }
  topo.free();
}
