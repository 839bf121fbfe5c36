// The CUDA backend against the CPU backend, op by op, forward and backward. Fresh random data
// each run (the seed is printed; AUTOTP_TEST_SEED=<n> replays a run). Outputs that an op
// overwrites are poisoned with NaN bytes on both backends before it runs, so an element the
// kernel forgot to write shows up as NaN. Each case prints its error
//   rel = max|gpu - cpu| / max|cpu|
// against its tolerance: bf16 GEMMs 1e-2, fp32 kernels 1e-5, attention 1e-2 on the bf16
// tensor-core path (head dims 16, 32, 64, 128) and 1e-4 on the fp32 kernels (other head dims).
// Needs a GPU; without one every test is skipped (a failure under AUTOTP_REQUIRE_GPU), so it is
// not registered with ctest: tests/gpu/run_gpu_checks.sh runs it.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "gpu/gpu_test_util.hpp"
#include "kernels/backend.hpp"
#include "kernels/cuda/cuda_backend.hpp"
#include "test_util.hpp"

namespace autotp {
namespace {

using Dims2 = std::array<int64_t, 2>;
using Dims3 = std::array<int64_t, 3>;

constexpr double kBf16Tol = 1e-2, kFp32Tol = 1e-5;

// The head dims that run on the bf16 tensor-core attention kernels (kernels/cuda/attention.cuh).
double attention_tol(int64_t hd) {
  return hd == 16 || hd == 32 || hd == 64 || hd == 128 ? 1e-2 : 1e-4;
}

// An environment variable set for a scope (the CUDA backend reads these per call).
struct EnvScope {
  EnvScope(const char* name, const std::string& value) : name_(name) {
    setenv(name, value.c_str(), 1);
  }
  ~EnvScope() { unsetenv(name_); }
  const char* name_;
};
// AUTOTP_ATTN_FP32=1: the fp32 attention kernels.
struct Fp32Attention : EnvScope {
  Fp32Attention() : EnvScope("AUTOTP_ATTN_FP32", "1") {}
};
// AUTOTP_ATTN_DS_BYTES: the budget of the stored dS of the tensor-core backward; 0 recomputes
// dS in the dQ blocks. dS_unit_bytes is what one (batch, kv head) takes (attention_tc_backward.cu).
struct DsBudget : EnvScope {
  explicit DsBudget(int64_t bytes) : EnvScope("AUTOTP_ATTN_DS_BYTES", std::to_string(bytes)) {}
};
int64_t ds_unit_bytes(int64_t T, int64_t nq, int64_t nkv) {
  const int64_t nt = (T + 63) / 64;
  return nq / nkv * nt * (nt + 1) / 2 * 64 * 64 * 2;
}

uint32_t run_seed() {
  static const uint32_t seed = [] {
    const char* env = std::getenv("AUTOTP_TEST_SEED");
    uint32_t s = env ? uint32_t(std::strtoul(env, nullptr, 10)) : std::random_device{}();
    std::printf("seed %u (replay with AUTOTP_TEST_SEED=%u)\n", s, s);
    return s;
  }();
  return seed;
}

std::string name_of(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string name_of(const char* fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return buf;
}

// A buffer with its twin: the same contents on the CPU (c) and on the GPU (g).
struct Twin {
  float* c = nullptr;
  float* g = nullptr;
  size_t n = 0;
};
struct TwinI {
  int32_t* c = nullptr;
  int32_t* g = nullptr;
};

class CudaVsCpu : public ::testing::Test {
 protected:
  void SetUp() override {
    AUTOTP_NEED_GPU();
    ASSERT_GT(cuda_device_count(), 0) << "the runtime sees a GPU, cuda_device_count() does not";
    gpu_ = make_cuda_backend(0);
    cpu_ = make_cpu_backend();
    rng_.seed(run_seed() + uint32_t(std::hash<std::string>{}(
                               ::testing::UnitTest::GetInstance()->current_test_info()->name())));
    static bool once = [this] {
      std::printf("device %d: %s\n", gpu_->device(), gpu_->device_name().c_str());
      return true;
    }();
    (void)once;
  }
  void TearDown() override {
    if (!gpu_) return;
    for (auto& p : cpu_bufs_) cpu_->free_bytes(p);
    for (auto& p : gpu_bufs_) gpu_->free_bytes(p);
  }

  std::vector<float> random(size_t n, float lo = -1.0f, float hi = 1.0f) {
    std::uniform_real_distribution<float> u(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = u(rng_);
    return v;
  }
  int64_t randint(int64_t lo, int64_t hi) {  // [lo, hi]
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng_);
  }

  void* both_alloc(size_t bytes, void** g) {
    void* c = cpu_->alloc_bytes(bytes);
    *g = gpu_->alloc_bytes(bytes);
    cpu_bufs_.push_back(c);
    gpu_bufs_.push_back(*g);
    return c;
  }
  Twin upload(const std::vector<float>& h) {
    Twin t;
    void* g;
    t.c = static_cast<float*>(both_alloc(h.size() * sizeof(float), &g));
    t.g = static_cast<float*>(g);
    t.n = h.size();
    set(t, h);
    return t;
  }
  void set(const Twin& t, const std::vector<float>& h) {
    cpu_->from_host(h.data(), t.c, h.size() * sizeof(float));
    gpu_->from_host(h.data(), t.g, h.size() * sizeof(float));
  }
  // NaN bytes everywhere: what an op must overwrite.
  Twin poisoned(size_t n) {
    std::vector<float> h(n);
    std::memset(h.data(), 0xFF, n * sizeof(float));
    return upload(h);
  }
  void poison(const Twin& t) {
    std::vector<float> h(t.n);
    std::memset(h.data(), 0xFF, t.n * sizeof(float));
    set(t, h);
  }
  TwinI upload_ids(const std::vector<int32_t>& h) {
    TwinI t;
    void* g;
    t.c = static_cast<int32_t*>(both_alloc(h.size() * sizeof(int32_t), &g));
    t.g = static_cast<int32_t*>(g);
    cpu_->from_host(h.data(), t.c, h.size() * sizeof(int32_t));
    gpu_->from_host(h.data(), t.g, h.size() * sizeof(int32_t));
    return t;
  }
  std::vector<float> host(Backend& be, const float* p, size_t n) {
    std::vector<float> h(n);
    be.to_host(p, h.data(), n * sizeof(float));
    return h;
  }

  // rel = max|gpu - cpu| / max|cpu|, printed; fails above tol or on any non-finite GPU value.
  double expect_close(const std::string& what, const Twin& t, double tol) {
    const std::vector<float> a = host(*gpu_, t.g, t.n), b = host(*cpu_, t.c, t.n);
    double num = 0.0, den = 0.0;
    size_t worst = 0;
    for (size_t i = 0; i < t.n; ++i) {
      if (!std::isfinite(a[i]) || !std::isfinite(b[i])) {
        ADD_FAILURE() << what << ": element " << i << " of " << t.n << " is gpu " << a[i]
                      << " / cpu " << b[i]
                      << " (NaN on the gpu: the kernel left a poisoned output unwritten)";
        return INFINITY;
      }
      const double d = std::fabs(double(a[i]) - double(b[i]));
      if (d > num) num = d, worst = i;
      den = std::max(den, std::fabs(double(b[i])));
    }
    const double rel = den > 0 ? num / den : num;
    std::printf("  %-62s rel %.3e (tol %.0e)%s\n", what.c_str(), rel, tol,
                rel <= tol ? "" : "  <-- FAIL");
    EXPECT_LE(rel, tol) << what << ": worst element " << worst << " gpu " << a[worst] << " cpu "
                        << b[worst] << " (max|cpu| " << den << ", seed " << run_seed() << ")";
    return rel;
  }

  // The way a Use::Gemm output may be read: as a GEMM operand, once. `a` [M, K] is the A
  // operand of C[M, N] = a W^T with a fresh W; the GPU reads the bf16 copy the op left.
  void expect_gemm_reads(const std::string& what, const Twin& a, int64_t M, int64_t K) {
    const int64_t N = 19;
    Twin W = upload(random(size_t(N * K))), C = poisoned(size_t(M * N));
    cpu_->matmul(M, N, K, a.c, false, W.c, true, C.c, false);
    gpu_->matmul(M, N, K, a.g, false, W.g, true, C.g, false);
    expect_close(what + " read by matmul", C, kBf16Tol);
  }
  // The same for a dy [M, O] of linear_backward_gemms (x [M, K], W [O, K]). With `same`, an
  // ordinary fp32 buffer of dy's values: the GPU's GEMMs must give the same bits from both.
  void expect_backward_gemms_read(const std::string& what, const Twin& dy, int64_t M, int64_t O,
                                  const Twin* same = nullptr) {
    const int64_t K = 23;
    Twin x = upload(random(size_t(M * K))), W = upload(random(size_t(O * K)));
    const std::vector<float> dW0 = random(size_t(O * K));
    Twin dW = upload(dW0), dx = poisoned(size_t(M * K));
    cpu_->linear_backward_gemms(M, O, K, dy.c, x.c, W.c, dW.c, true, dx.c, Use::Any);
    gpu_->linear_backward_gemms(M, O, K, dy.g, x.g, W.g, dW.g, true, dx.g, Use::Any);
    expect_close(what + " as dy: dW", dW, kBf16Tol);
    expect_close(what + " as dy: dx", dx, kBf16Tol);
    if (!same) return;
    Twin dW2 = upload(dW0), dx2 = poisoned(size_t(M * K));
    gpu_->linear_backward_gemms(M, O, K, same->g, x.g, W.g, dW2.g, true, dx2.g, Use::Any);
    expect_same_bits(what + " as dy: dW (vs an fp32 dy)", dW, dW2);
    expect_same_bits(what + " as dy: dx (vs an fp32 dy)", dx, dx2);
  }
  // A parameter buffer holding one A [M, K] and one B [K, N] at odd offsets (the GEMMs read
  // operands inside it through the bf16 shadow), and standalone A and B (converted on the fly).
  struct GemmOperands {
    int64_t offA, offB;
    Twin params, A, B;
  };
  GemmOperands gemm_operands(int64_t M, int64_t N, int64_t K) {
    const int64_t offA = 3, offB = offA + M * K + 5, P = offB + K * N + 2;
    Twin params = upload(random(size_t(P)));
    gpu_->params_changed(params.g, size_t(P));
    cpu_->params_changed(params.c, size_t(P));
    Twin A = upload(random(size_t(M * K))), B = upload(random(size_t(K * N)));
    return {offA, offB, params, A, B};
  }
  // The GPU buffers of a and b hold the same bits.
  void expect_same_bits(const std::string& what, const Twin& a, const Twin& b) {
    const std::vector<float> ha = host(*gpu_, a.g, a.n), hb = host(*gpu_, b.g, b.n);
    EXPECT_EQ(0, std::memcmp(ha.data(), hb.data(), ha.size() * sizeof(float))) << what;
  }

  // The bf16 copy that a Use::Gemm output leaves in its own buffer (the first 2n bytes) is bf16
  // of the Use::Any output, bit for bit: this fails if the backend wrote fp32 instead.
  void expect_narrow_bits(const std::string& what, const std::vector<float>& any,
                          const float* gemm_out) {
    std::vector<uint16_t> got(any.size());
    gpu_->to_host(gemm_out, got.data(), got.size() * sizeof(uint16_t));
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < any.size(); ++i)
      if (got[i] != bf16_bits(any[i]) && !bad++) first = i;
    EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << any.size()
                       << " bf16 values differ from the fp32 output rounded, first at " << first;
  }
  // A narrow output's buffer holds its values in bf16 (its first 2n bytes), within bf16's
  // rounding of the CPU's fp32: fp32 bits read as bf16 would not be.
  void expect_holds_bf16(const std::string& what, const Twin& t) {
    std::vector<uint16_t> raw(t.n);
    gpu_->to_host(t.g, raw.data(), raw.size() * sizeof(uint16_t));
    const std::vector<float> want = host(*cpu_, t.c, t.n);
    double worst = 0, scale = 0;
    for (size_t i = 0; i < t.n; ++i) {
      const uint32_t u = uint32_t(raw[i]) << 16;
      float got;
      std::memcpy(&got, &u, sizeof(float));
      worst = std::max(worst, std::abs(double(got) - double(want[i])));
      scale = std::max(scale, std::abs(double(want[i])));
    }
    EXPECT_LE(worst / scale, kBf16Tol) << what << ": the buffer does not hold its bf16 values";
  }
  static uint16_t bf16_bits(float f) {  // round to nearest even (finite inputs)
    uint32_t u;
    std::memcpy(&u, &f, sizeof(u));
    return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }

  // Forward and backward of one attention shape on both backends, compared.
  void attention_case(int64_t B, int64_t T, int64_t nq, int64_t nkv, int64_t hd, double tol) {
    const int64_t ld = (nq + 2 * nkv) * hd, N = B * T;
    const std::string tag = name_of(" B %ld hd %ld T %ld nq/nkv %ld/%ld", long(B), long(hd),
                                    long(T), long(nq), long(nkv));
    Twin qkv = upload(random(size_t(N * ld), -2, 2));
    Twin out = poisoned(size_t(N * nq * hd)), lse = poisoned(size_t(B * nq * T));
    cpu_->attention_forward(qkv.c, B, T, nq, nkv, hd, out.c, lse.c, Use::Any);
    gpu_->attention_forward(qkv.g, B, T, nq, nkv, hd, out.g, lse.g, Use::Any);
    expect_close("attention_forward out" + tag, out, tol);
    expect_close("attention_forward lse" + tag, lse, tol);
    // Each backend's backward reads its own forward's out and lse.
    Twin dout = upload(random(size_t(N * nq * hd)));
    Twin dqkv = poisoned(size_t(N * ld));
    cpu_->attention_backward(dout.c, qkv.c, out.c, lse.c, B, T, nq, nkv, hd, dqkv.c, Use::Any);
    gpu_->attention_backward(dout.g, qkv.g, out.g, lse.g, B, T, nq, nkv, hd, dqkv.g, Use::Any);
    expect_close("attention_backward dqkv" + tag, dqkv, tol);
    // A narrow out (the step's: o_proj's GEMMs and this backward read it): on the tensor-core
    // path the buffer holds bf16 of the fp32 out, bit for bit, and the backward reads it.
    if (tol != kBf16Tol || std::getenv("AUTOTP_ATTN_FP32")) return;
    const std::vector<float> any = host(*gpu_, out.g, out.n);
    Twin out2 = upload(host(*cpu_, out.c, out.n));  // the CPU's out; the GPU's is poisoned
    const std::vector<float> bad(out.n, std::numeric_limits<float>::quiet_NaN());
    gpu_->from_host(bad.data(), out2.g, out.n * sizeof(float));
    gpu_->attention_forward(qkv.g, B, T, nq, nkv, hd, out2.g, lse.g, Use::Narrow);
    expect_narrow_bits("attention_forward (Narrow) out" + tag, any, out2.g);
    poison(dqkv);
    cpu_->attention_backward(dout.c, qkv.c, out2.c, lse.c, B, T, nq, nkv, hd, dqkv.c, Use::Any);
    gpu_->attention_backward(dout.g, qkv.g, out2.g, lse.g, B, T, nq, nkv, hd, dqkv.g, Use::Any);
    expect_close("attention_backward dqkv of a narrow out" + tag, dqkv, tol);
    expect_gemm_reads("attention_forward (Narrow) out" + tag, out2, N, nq * hd);
    // A narrow dqkv (the step's: RoPE's backward rotates it in place, qkv_proj's GEMMs read
    // it): bf16 of the fp32 dqkv, bit for bit.
    const std::vector<float> dany = host(*gpu_, dqkv.g, dqkv.n);
    Twin dqkv2 = poisoned(size_t(N * ld));
    gpu_->attention_backward(dout.g, qkv.g, out2.g, lse.g, B, T, nq, nkv, hd, dqkv2.g, Use::Narrow);
    expect_narrow_bits("attention_backward (Narrow) dqkv" + tag, dany, dqkv2.g);
    cpu_->attention_backward(dout.c, qkv.c, out2.c, lse.c, B, T, nq, nkv, hd, dqkv2.c, Use::Any);
    expect_backward_gemms_read("attention_backward (Narrow) dqkv" + tag, dqkv2, N, ld);
  }

  std::unique_ptr<CudaBackend> gpu_;
  std::unique_ptr<Backend> cpu_;
  std::mt19937 rng_;
  std::vector<void*> cpu_bufs_, gpu_bufs_;
};

// ---------------------------------------------------------------- memory

TEST_F(CudaVsCpu, MemoryOpsAndZeroFilledAlloc) {
  const size_t n = 1000;
  float* g = gpu_->alloc(n);
  gpu_bufs_.push_back(g);
  std::vector<float> h = host(*gpu_, g, n);
  for (size_t i = 0; i < n; ++i)
    ASSERT_EQ(h[i], 0.0f) << "alloc_bytes must zero-fill (" << i << ")";
  const std::vector<float> v = random(n);
  gpu_->from_host(v.data(), g, n * sizeof(float));
  float* g2 = gpu_->alloc(n);
  gpu_bufs_.push_back(g2);
  gpu_->copy(g, g2, n * sizeof(float));
  EXPECT_EQ(host(*gpu_, g2, n), v) << "copy then to_host changed the data";
  gpu_->fill_zero(g2 + 10, 20 * sizeof(float));
  h = host(*gpu_, g2, n);
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(h[i], (i >= 10 && i < 30) ? 0.0f : v[i]) << i;
  EXPECT_GE(gpu_->peak_bytes(), 2 * n * sizeof(float));
}

// ---------------------------------------------------------------- matmul

TEST_F(CudaVsCpu, MatmulAllTransposesAccumulateAndParamShadow) {
  for (auto [M, N, K] : std::vector<Dims3>{{67, 45, 129}, {256, 384, 512}, {1, 7, 3}}) {
    auto [offA, offB, params, A, B] = gemm_operands(M, N, K);
    for (int tr = 0; tr < 4; ++tr) {
      const bool ta = tr & 1, tb = tr & 2;
      for (int where = 0; where < 4; ++where) {  // bit 0: A in params, bit 1: B in params
        const bool pa = where & 1, pb = where & 2;
        // Random contents are layout-agnostic: the same buffer serves as [M,K] or [K,M].
        const float* ac = pa ? params.c + offA : A.c;
        const float* ag = pa ? params.g + offA : A.g;
        const float* bc = pb ? params.c + offB : B.c;
        const float* bg = pb ? params.g + offB : B.g;
        for (bool acc : {false, true}) {
          Twin C = acc ? upload(random(size_t(M * N))) : poisoned(size_t(M * N));
          cpu_->matmul(M, N, K, ac, ta, bc, tb, C.c, acc);
          gpu_->matmul(M, N, K, ag, ta, bg, tb, C.g, acc);
          expect_close(name_of("matmul %ldx%ldx%ld %s%s%s A%s B%s", long(M), long(N), long(K),
                               ta ? "At" : "A", tb ? "Bt" : "B", acc ? " +=" : "",
                               pa ? "(shadow)" : "", pb ? "(shadow)" : ""),
                       C, kBf16Tol);
        }
      }
    }
  }
}

// The shadow really is what the GEMM reads: parameters changed behind the backend's back
// (no params_changed) still multiply as their old values.
TEST_F(CudaVsCpu, MatmulReadsTheParamShadow) {
  const int64_t M = 33, N = 20, K = 40;
  const std::vector<float> w = random(size_t(K * N));
  Twin params = upload(w);
  gpu_->params_changed(params.g, w.size());
  Twin X = upload(random(size_t(M * K)));
  Twin C = poisoned(size_t(M * N));
  cpu_->matmul(M, N, K, X.c, false, params.c, false, C.c, false);
  const std::vector<float> other = random(w.size());
  gpu_->from_host(other.data(), params.g, other.size() * sizeof(float));
  gpu_->matmul(M, N, K, X.g, false, params.g, false, C.g, false);
  expect_close("matmul with a stale shadow (= old weights)", C, kBf16Tol);
  set(params, other);
  gpu_->params_changed(params.g, w.size());
  cpu_->matmul(M, N, K, X.c, false, params.c, false, C.c, false);
  gpu_->matmul(M, N, K, X.g, false, params.g, false, C.g, false);
  expect_close("matmul after params_changed (= new weights)", C, kBf16Tol);
}

// The fused pair of a linear's backward GEMMs (one dy conversion) against the CPU's two
// matmuls, with W from the shadow and standalone. The one-row case has 34 dx elements: the
// error is measured against the largest, and with 2 (or 3) elements both sums could cancel to
// 1e-2 of their terms, where bf16's rounding of the terms exceeds the tolerance (it did, for
// seeds 1592257824 and one in session 6). dW added into, and overwritten (a poisoned dW: the
// first gradient of a step, which reads nothing of it).
TEST_F(CudaVsCpu, LinearBackwardGemms) {
  for (auto [N, O, I] : std::vector<Dims3>{{67, 45, 129}, {300, 256, 96}, {1, 63, 34}}) {
    Twin params = upload(random(size_t(O * I + 7)));
    gpu_->params_changed(params.g, params.n);
    cpu_->params_changed(params.c, params.n);
    Twin W = upload(random(size_t(O * I)));
    Twin dy = upload(random(size_t(N * O))), x = upload(random(size_t(N * I)));
    for (bool shadow : {false, true}) {
      for (bool acc : {true, false}) {
        Twin dW = acc ? upload(random(size_t(O * I))) : poisoned(size_t(O * I)),
             dx = poisoned(size_t(N * I));
        const float* wc = shadow ? params.c + 7 : W.c;
        const float* wg = shadow ? params.g + 7 : W.g;
        cpu_->linear_backward_gemms(N, O, I, dy.c, x.c, wc, dW.c, acc, dx.c, Use::Any);
        gpu_->linear_backward_gemms(N, O, I, dy.g, x.g, wg, dW.g, acc, dx.g, Use::Any);
        const std::string tag =
            name_of(" %ldx%ldx%ld%s", long(N), long(O), long(I), shadow ? " W(shadow)" : "");
        expect_close(std::string("linear_backward_gemms dW ") + (acc ? "+=" : "=") + tag, dW,
                     kBf16Tol);
        expect_close("linear_backward_gemms dx" + tag, dx, kBf16Tol);
      }
    }
  }
}

// Use::Narrow GEMM outputs (linear_gemm's y, linear_backward_gemms' dx): the buffer holds bf16
// (its first 2n bytes are the result within bf16 rounding, which fp32 bits would not be), and
// that copy serves every narrow reader until the buffer is written: the SwiGLU forward twice, its
// backward (gu and dout both narrow), and a GEMM.
TEST_F(CudaVsCpu, NarrowGemmOutputsServeEveryReader) {
  const int64_t N = 37, I = 64, H = 96;  // gate_up: [N, H] -> [N, 2I]; down's dx: [N, I]
  Twin x = upload(random(size_t(N * H))), Wgu = upload(random(size_t(2 * I * H)));
  Twin gu = poisoned(size_t(N * 2 * I));
  cpu_->linear_gemm(N, 2 * I, H, x.c, Wgu.c, gu.c, Use::Narrow);
  gpu_->linear_gemm(N, 2 * I, H, x.g, Wgu.g, gu.g, Use::Narrow);
  expect_holds_bf16("linear_gemm (Narrow)", gu);
  for (int read = 0; read < 2; ++read) {
    Twin act = poisoned(size_t(N * I));
    cpu_->swiglu_forward(gu.c, N, I, act.c, Use::Any);
    gpu_->swiglu_forward(gu.g, N, I, act.g, Use::Any);
    expect_close(name_of("swiglu_forward of a narrow gu, read %d", read), act, kBf16Tol);
  }
  Twin dy = upload(random(size_t(N * H))), Wd = upload(random(size_t(H * I)));
  Twin dWd = upload(random(size_t(H * I))), dact = poisoned(size_t(N * I));
  Twin act = upload(random(size_t(N * I)));
  cpu_->linear_backward_gemms(N, H, I, dy.c, act.c, Wd.c, dWd.c, true, dact.c, Use::Narrow);
  gpu_->linear_backward_gemms(N, H, I, dy.g, act.g, Wd.g, dWd.g, true, dact.g, Use::Narrow);
  expect_close("linear_backward_gemms (Narrow dx) dW", dWd, kBf16Tol);
  expect_holds_bf16("linear_backward_gemms (Narrow dx) dx", dact);
  Twin dgu = poisoned(size_t(N * 2 * I));
  cpu_->swiglu_backward(dact.c, gu.c, N, I, dgu.c, Use::Any);
  gpu_->swiglu_backward(dact.g, gu.g, N, I, dgu.g, Use::Any);
  expect_close("swiglu_backward of narrow dout and gu", dgu, kBf16Tol);
  expect_gemm_reads("linear_gemm (Narrow) output", gu, N, 2 * I);
}

// alloc_narrow: the buffer keeps 2 bytes per element (the peak grows by that, not by 4), every
// op given Use::Narrow or Use::Gemm writes it and every narrow reader reads it (the layer's
// chain: gate_up GEMM -> SwiGLU -> GEMM, qkv GEMM -> RoPE -> attention on the tensor-core and
// the fp32 kernels, whose narrow out is rounded from fp32 scratch), and an op that would write
// fp32 into it fails.
TEST_F(CudaVsCpu, NarrowAllocations) {
  ASSERT_EQ(gpu_->narrow_bytes(), 2u) << "run without AUTOTP_CUDA_GEMM_OUTPUTS";
  auto narrow_twin = [&](size_t n) {
    Twin t;
    t.n = n;
    t.c = cpu_->alloc(n);
    cpu_bufs_.push_back(t.c);
    t.g = gpu_->alloc_narrow(n);
    gpu_bufs_.push_back(t.g);
    return t;
  };
  // Before any op: nothing has been freed yet, so the peak is what the backend holds.
  const size_t n_big = size_t(48) << 20, before = gpu_->peak_bytes();
  narrow_twin(n_big);  // 96 MiB of bf16 for 192 MiB of fp32 addresses
  const size_t grew = gpu_->peak_bytes() - before;
  EXPECT_GE(grew, 2 * n_big) << "alloc_narrow kept less than 2 bytes per element";
  EXPECT_LE(grew, 2 * n_big + (size_t(2) << 20))
      << "alloc_narrow kept " << grew << " bytes: more than 2 per element and a page";

  const int64_t N = 64, I = 96, H = 80;
  Twin x = upload(random(size_t(N * H))), Wgu = upload(random(size_t(2 * I * H)));
  Twin gu = narrow_twin(size_t(N * 2 * I)), act = narrow_twin(size_t(N * I));
  cpu_->linear_gemm(N, 2 * I, H, x.c, Wgu.c, gu.c, Use::Narrow);
  gpu_->linear_gemm(N, 2 * I, H, x.g, Wgu.g, gu.g, Use::Narrow);
  expect_holds_bf16("linear_gemm (Narrow) into alloc_narrow", gu);
  cpu_->swiglu_forward(gu.c, N, I, act.c, Use::Narrow);
  gpu_->swiglu_forward(gu.g, N, I, act.g, Use::Narrow);
  expect_holds_bf16("swiglu_forward (Narrow) into alloc_narrow", act);
  for (int read = 0; read < 2; ++read)  // kept for the backward: read more than once
    expect_gemm_reads(name_of("alloc_narrow SwiGLU output, read %d", read), act, N, I);

  for (bool fp32_kernels : {false, true}) {
    std::unique_ptr<Fp32Attention> env;
    if (fp32_kernels) env = std::make_unique<Fp32Attention>();
    const int64_t B = 2, T = 48, nq = 4, nkv = 2, hd = 32, ld = (nq + 2 * nkv) * hd;
    const std::string tag = fp32_kernels ? " (fp32 kernels)" : " (tensor cores)";
    Twin xa = upload(random(size_t(B * T * H))), Wqkv = upload(random(size_t(ld * H), -0.3f, 0.3f));
    Twin qkv = narrow_twin(size_t(B * T * ld)), out = narrow_twin(size_t(B * T * nq * hd));
    Twin lse = poisoned(size_t(B * nq * T));
    const std::vector<float> cs = random(size_t(T * hd / 2)), sn = random(size_t(T * hd / 2));
    Twin cos = upload(cs), sin = upload(sn);
    for (Backend* be : {static_cast<Backend*>(gpu_.get()), cpu_.get()}) {
      const bool g = be == gpu_.get();
      be->linear_gemm(B * T, ld, H, g ? xa.g : xa.c, g ? Wqkv.g : Wqkv.c, g ? qkv.g : qkv.c,
                      Use::Narrow);
      be->rope_forward(g ? qkv.g : qkv.c, B * T, T, ld, nq + nkv, hd, hd, g ? cos.g : cos.c,
                       g ? sin.g : sin.c);
      be->attention_forward(g ? qkv.g : qkv.c, B, T, nq, nkv, hd, g ? out.g : out.c,
                            g ? lse.g : lse.c, Use::Narrow);
    }
    expect_holds_bf16("qkv GEMM + RoPE into alloc_narrow" + tag, qkv);
    expect_holds_bf16("attention_forward (Narrow) into alloc_narrow" + tag, out);
    expect_close("attention_forward lse from an alloc_narrow qkv" + tag, lse, kBf16Tol);
    Twin dout = upload(random(size_t(B * T * nq * hd))), dqkv = poisoned(size_t(B * T * ld));
    cpu_->attention_backward(dout.c, qkv.c, out.c, lse.c, B, T, nq, nkv, hd, dqkv.c, Use::Any);
    gpu_->attention_backward(dout.g, qkv.g, out.g, lse.g, B, T, nq, nkv, hd, dqkv.g, Use::Any);
    expect_close("attention_backward from alloc_narrow qkv and out" + tag, dqkv, 2 * kBf16Tol);
  }

  // fp32 writes: refused, naming the cause.
  auto refused = [&](const char* what, const std::function<void()>& op) {
    try {
      op();
      ADD_FAILURE() << what << " wrote fp32 into an alloc_narrow buffer without an error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("alloc_narrow"), std::string::npos)
          << what << ": " << e.what();
    }
  };
  refused("fill_zero", [&] { gpu_->fill_zero(act.g, act.n * sizeof(float)); });
  refused("linear_gemm (Any)", [&] { gpu_->linear_gemm(N, 2 * I, H, x.g, Wgu.g, gu.g, Use::Any); });
  refused("swiglu_forward (Any)", [&] { gpu_->swiglu_forward(gu.g, N, I, act.g, Use::Any); });
  gpu_->synchronize();
}

// Narrow weights (Phi3Model's narrow_weights beside ZeroOptimizer's fp32 master shard): the
// parameters come from alloc_narrow and are their own bf16 copy; values_from_host rounds into
// them and values_to_host widens out of them bit for bit; the embedding, the norms and the GEMMs
// read their bf16 values (the CPU gets the same rounded weights); copy_values moves values
// between them and an fp32 master, rounding on the way in.
TEST_F(CudaVsCpu, NarrowWeights) {
  ASSERT_EQ(gpu_->narrow_bytes(), 2u) << "run without AUTOTP_CUDA_GEMM_OUTPUTS";
  const int64_t V = 50, H = 96, O = 72, N = 37;
  const size_t n_embed = size_t(V * H), n_w = size_t(O * H), P = n_embed + H + n_w;
  auto round = [](float f) {
    uint32_t u = uint32_t(bf16_bits(f)) << 16;
    float r;
    std::memcpy(&r, &u, sizeof r);
    return r;
  };
  std::vector<float> w = random(P), wr(P);
  for (size_t i = 0; i < P; ++i) wr[i] = round(w[i]);
  for (size_t i = n_embed; i < n_embed + H; ++i) wr[i] = round(w[i] = 1.0f + 0.5f * w[i]);
  Twin params;
  params.n = P;
  params.c = cpu_->alloc(P);
  cpu_bufs_.push_back(params.c);
  const size_t before = gpu_->peak_bytes();
  params.g = gpu_->alloc_narrow(P);
  gpu_bufs_.push_back(params.g);
  EXPECT_LE(gpu_->peak_bytes() - before, 2 * P + (size_t(2) << 20))
      << "narrow weights kept more than 2 bytes per parameter";
  cpu_->from_host(wr.data(), params.c, P * sizeof(float));
  gpu_->values_from_host(w.data(), params.g, P);
  gpu_->params_changed(params.g, P);
  cpu_->params_changed(params.c, P);
  std::vector<float> back(P);
  gpu_->values_to_host(params.g, back.data(), P);
  EXPECT_EQ(0, std::memcmp(back.data(), wr.data(), P * sizeof(float)))
      << "values_to_host of narrow weights differs from the rounded values written";
  const float* embed[2] = {params.c, params.g};
  const float* norm[2] = {params.c + n_embed, params.g + n_embed};
  const float* W[2] = {norm[0] + H, norm[1] + H};

  std::vector<int32_t> ids(N);
  for (int64_t i = 0; i < N; ++i) ids[size_t(i)] = int32_t((i * 7) % V);
  TwinI ti = upload_ids(ids);
  Twin emb = upload(random(size_t(N * H)));  // embedding_forward adds
  const std::vector<VocabBlock> blocks{{0, 0, V}};
  cpu_->embedding_forward(ti.c, N, embed[0], H, blocks, emb.c);
  gpu_->embedding_forward(ti.g, N, embed[1], H, blocks, emb.g);
  expect_close("embedding_forward from a narrow table", emb, kFp32Tol);

  Twin out = poisoned(size_t(N * H)), rstd = poisoned(size_t(N));
  cpu_->rmsnorm_forward(emb.c, norm[0], N, H, 1e-5f, out.c, rstd.c, Use::Any);
  gpu_->rmsnorm_forward(emb.g, norm[1], N, H, 1e-5f, out.g, rstd.g, Use::Any);
  expect_close("rmsnorm_forward with a narrow weight", out, kFp32Tol);
  Twin dout = upload(random(size_t(N * H))), dx = upload(random(size_t(N * H)));
  Twin dw = upload(random(size_t(H)));
  cpu_->rmsnorm_backward(dout.c, emb.c, norm[0], rstd.c, N, H, dx.c, dw.c, Use::Any);
  gpu_->rmsnorm_backward(dout.g, emb.g, norm[1], rstd.g, N, H, dx.g, dw.g, Use::Any);
  expect_close("rmsnorm_backward dx with a narrow weight", dx, kFp32Tol);
  expect_close("rmsnorm_backward dw with a narrow weight", dw, kFp32Tol);

  Twin y = poisoned(size_t(N * O));
  cpu_->linear_gemm(N, O, H, out.c, W[0], y.c, Use::Any);
  gpu_->linear_gemm(N, O, H, out.g, W[1], y.g, Use::Any);
  expect_close("linear_gemm with a narrow weight", y, kBf16Tol);

  // The optimizer's round trip: master <- narrow weights (exact), weights <- a new master.
  float* master = gpu_->alloc(n_w);
  gpu_bufs_.push_back(master);
  gpu_->copy_values(W[1], master, n_w);
  EXPECT_EQ(
      0, std::memcmp(host(*gpu_, master, n_w).data(), wr.data() + n_embed + H, n_w * sizeof(float)))
      << "copy_values from narrow weights into fp32 differs from their values";
  const std::vector<float> m2 = random(n_w);
  gpu_->from_host(m2.data(), master, n_w * sizeof(float));
  gpu_->copy_values(master, const_cast<float*>(W[1]), n_w);
  gpu_->values_to_host(W[1], back.data(), n_w);
  size_t bad = 0;
  for (size_t i = 0; i < n_w; ++i) bad += back[i] != round(m2[i]);
  EXPECT_EQ(bad, 0u) << "copy_values from fp32 into narrow weights did not round to nearest";
  gpu_->synchronize();
}

// Narrow weight gradients (linear_backward_gemms' dW_use, as Phi3Model writes them for the
// optimizer): the dW GEMM leaves bf16 of its fp32 result in place; sum_squares over a range that
// holds it between fp32 values reads it as bf16; adamw gives the same bits from it as from an
// fp32 buffer of those bf16 values; make_fp32 widens it in place; an accumulating GEMM widens it
// first and adds in fp32.
TEST_F(CudaVsCpu, NarrowWeightGradients) {
  const int64_t N = 40, O = 48, I = 64;
  const size_t nw = size_t(O * I), pad = 37;  // [pad fp32 | dW | pad fp32], a flat gradient
  Twin dy = upload(random(size_t(N * O))), x = upload(random(size_t(N * I)));
  Twin W = upload(random(nw));
  const std::vector<float> flat0 = random(nw + 2 * pad);
  Twin flat = upload(flat0), ref = poisoned(nw), dx = poisoned(size_t(N * I));
  float* dW = flat.g + pad;
  gpu_->linear_backward_gemms(N, O, I, dy.g, x.g, W.g, ref.g, false, dx.g, Use::Any, Use::Any);
  gpu_->linear_backward_gemms(N, O, I, dy.g, x.g, W.g, dW, false, dx.g, Use::Any, Use::Narrow);
  const std::vector<float> any = host(*gpu_, ref.g, nw);
  expect_narrow_bits("linear_backward_gemms (Narrow dW)", any, dW);

  // What the optimizer must see: the fp32 around, bf16 of the gradient.
  std::vector<float> want = flat0;
  for (size_t i = 0; i < nw; ++i) {
    const uint32_t u = uint32_t(bf16_bits(any[i])) << 16;
    std::memcpy(&want[pad + i], &u, sizeof(float));
  }
  auto squares = [&](size_t b, size_t e) {  // of want[b, e)
    double ss = 0.0;
    for (size_t i = b; i < e; ++i) ss += double(want[i]) * double(want[i]);
    return ss;
  };
  const double all = squares(0, want.size()), grad = squares(pad, pad + nw);
  EXPECT_NEAR(gpu_->sum_squares(flat.g, flat.n), all, 1e-12 * all)
      << "sum_squares across a narrow dW";
  EXPECT_NEAR(gpu_->sum_squares(dW, nw), grad, 1e-12 * grad) << "sum_squares of a narrow dW alone";

  AdamWStep st;
  st.decay_factor = 0.999f, st.neg_step_size = -1e-3f, st.bc2_sqrt = 0.7f;
  const std::vector<float> p0 = random(nw), m0 = random(nw, -0.1f, 0.1f),
                           v0 = random(nw, 0.0f, 0.1f);
  Twin g32 = upload(std::vector<float>(want.begin() + pad, want.begin() + pad + nw));
  Twin p1 = upload(p0), m1 = upload(m0), v1 = upload(v0), p2 = upload(p0), m2 = upload(m0),
       v2 = upload(v0);
  gpu_->adamw(p1.g, m1.g, v1.g, dW, nw, st, true, 0.5f);
  gpu_->adamw(p2.g, m2.g, v2.g, g32.g, nw, st, true, 0.5f);
  expect_same_bits("adamw p from a narrow g", p1, p2);
  expect_same_bits("adamw m from a narrow g", m1, m2);
  expect_same_bits("adamw v from a narrow g", v1, v2);

  // A range cutting the narrow dW: widened whole first.
  const double part = squares(pad + 5, pad + 15);
  EXPECT_NEAR(gpu_->sum_squares(dW + 5, 10), part, 1e-12 * part) << "sum_squares inside a dW";
  std::vector<float> got = host(*gpu_, flat.g, flat.n);
  EXPECT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * sizeof(float)))
      << "sum_squares of a range cutting a narrow dW: the dW as fp32, the values around kept";

  gpu_->linear_backward_gemms(N, O, I, dy.g, x.g, W.g, dW, false, dx.g, Use::Any, Use::Narrow);
  gpu_->make_fp32(dW + 5, 3);  // a part: the whole gradient widens
  got = host(*gpu_, flat.g, flat.n);
  EXPECT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * sizeof(float)))
      << "make_fp32: the narrow dW as fp32, the values around it untouched";

  // Accumulating into a narrow dW: widened, then dW += dy^T x in fp32.
  gpu_->linear_backward_gemms(N, O, I, dy.g, x.g, W.g, dW, false, dx.g, Use::Any, Use::Narrow);
  gpu_->linear_backward_gemms(N, O, I, dy.g, x.g, W.g, dW, true, dx.g, Use::Any, Use::Narrow);
  const std::vector<float> acc = host(*gpu_, dW, nw);
  double worst = 0, scale = 0;
  for (size_t i = 0; i < nw; ++i) {
    worst = std::max(worst, std::fabs(double(acc[i]) - 2.0 * double(any[i])));
    scale = std::max(scale, std::fabs(2.0 * double(any[i])));
  }
  EXPECT_LE(worst / scale, 4e-3) << "accumulating into a narrow dW";
}

// ---------------------------------------------------------------- elementwise

TEST_F(CudaVsCpu, AddScaleCopyCols) {
  const size_t n = 1000003;
  Twin x = upload(random(n)), y = upload(random(n));
  cpu_->add(x.c, y.c, n);
  gpu_->add(x.g, y.g, n);
  expect_close("add", y, kFp32Tol);
  cpu_->scale(y.c, n, -0.37f);
  gpu_->scale(y.g, n, -0.37f);
  expect_close("scale", y, kFp32Tol);
  for (bool acc : {false, true}) {
    Twin src = upload(random(33 * 50)), dst = upload(random(33 * 40));
    cpu_->copy_cols(src.c, 50, 7, dst.c, 40, 3, 33, 20, acc);
    gpu_->copy_cols(src.g, 50, 7, dst.g, 40, 3, 33, 20, acc);
    expect_close(acc ? "copy_cols +=" : "copy_cols", dst, kFp32Tol);
  }
}

// ---------------------------------------------------------------- embedding

TEST_F(CudaVsCpu, EmbeddingWithBlocksAndPadding) {
  const int64_t V = 50, dim = 33, n = 41, pad = 1;
  struct Case {
    const char* name;
    std::vector<VocabBlock> blocks;
    int64_t rows, padding_idx;
  };
  const Case cases[] = {{"replicated", {{0, 0, V}}, V, pad},
                        {"replicated, no padding_idx", {{0, 0, V}}, V, -1},
                        {"vocab-parallel 2 blocks", {{0, 0, 7}, {7, 30, 5}}, 12, pad}};
  for (const Case& c : cases) {
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (auto& id : ids) id = int32_t(randint(0, V - 1));
    ids[3] = ids[17] = int32_t(pad);  // padding tokens
    ids[5] = ids[6] = 31;             // a repeated token (the backward's atomics)
    TwinI ti = upload_ids(ids);
    Twin table = upload(random(size_t(c.rows * dim)));
    Twin out = upload(random(size_t(n * dim)));  // embedding_forward adds
    cpu_->embedding_forward(ti.c, n, table.c, dim, c.blocks, out.c);
    gpu_->embedding_forward(ti.g, n, table.g, dim, c.blocks, out.g);
    expect_close(std::string("embedding_forward ") + c.name, out, kFp32Tol);
    Twin dout = upload(random(size_t(n * dim)));
    Twin dtable = upload(random(size_t(c.rows * dim)));
    cpu_->embedding_backward(ti.c, n, dout.c, dim, c.blocks, c.padding_idx, dtable.c);
    gpu_->embedding_backward(ti.g, n, dout.g, dim, c.blocks, c.padding_idx, dtable.g);
    expect_close(std::string("embedding_backward ") + c.name, dtable, kFp32Tol);
  }
}

// The reductions over tokens (embedding and RMSNorm weight gradients) must give the same bits
// on every run: GPU training then repeats exactly, and a resumed run equals an uninterrupted
// one. Many tokens share few ids, so an atomics-based kernel would differ from run to run.
TEST_F(CudaVsCpu, TokenReductionsAreDeterministic) {
  const int64_t V = 7, dim = 256, n = 8192, H = 3072, N = 4096;
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& id : ids) id = int32_t(randint(0, V - 1));
  TwinI ti = upload_ids(ids);
  Twin dout = upload(random(size_t(n * dim)));
  Twin x = upload(random(size_t(N * H), -2, 2)), g = upload(random(size_t(N * H)));
  Twin w = upload(random(size_t(H), 0.5f, 1.5f)), rstd = upload(random(size_t(N), 0.5f, 1.5f));
  Twin dx = upload(std::vector<float>(size_t(N * H)));
  auto run = [&](int which) {
    Twin d = upload(std::vector<float>(which == 0 ? size_t(V * dim) : size_t(H)));
    if (which == 0)
      gpu_->embedding_backward(ti.g, n, dout.g, dim, {{0, 0, V}}, -1, d.g);
    else
      gpu_->rmsnorm_backward(g.g, x.g, w.g, rstd.g, N, H, dx.g, d.g, Use::Any);
    std::vector<float> h(d.n);
    gpu_->to_host(d.g, h.data(), h.size() * sizeof(float));
    return h;
  };
  for (int which : {0, 1}) {
    const auto first = run(which);
    for (int rep = 0; rep < 3; ++rep) {
      const auto again = run(which);
      EXPECT_EQ(0, std::memcmp(first.data(), again.data(), first.size() * sizeof(float)))
          << (which == 0 ? "embedding_backward" : "rmsnorm_backward dw")
          << " differs between two runs on the same input";
    }
  }
}

// ---------------------------------------------------------------- RMSNorm

TEST_F(CudaVsCpu, RmsNormForwardBackwardAndFusedAdd) {
  for (auto [N, H] : std::vector<Dims2>{{37, 300}, {4, 5120}, {3, 16}, {300, 40}, {5, 301}}) {
    const float eps = 1e-5f;
    Twin x = upload(random(size_t(N * H), -2, 2)), w = upload(random(size_t(H), 0.5f, 1.5f));
    Twin out = poisoned(size_t(N * H)), rstd = poisoned(size_t(N));
    cpu_->rmsnorm_forward(x.c, w.c, N, H, eps, out.c, rstd.c, Use::Any);
    gpu_->rmsnorm_forward(x.g, w.g, N, H, eps, out.g, rstd.g, Use::Any);
    const std::string tag = name_of(" N %ld H %ld", long(N), long(H));
    expect_close("rmsnorm_forward out" + tag, out, kFp32Tol);
    expect_close("rmsnorm_forward rstd" + tag, rstd, kFp32Tol);
    const std::vector<float> any = host(*gpu_, out.g, out.n);
    poison(out);
    poison(rstd);
    cpu_->rmsnorm_forward(x.c, w.c, N, H, eps, out.c, rstd.c, Use::Gemm);
    gpu_->rmsnorm_forward(x.g, w.g, N, H, eps, out.g, rstd.g, Use::Gemm);
    expect_close("rmsnorm_forward (Gemm) rstd" + tag, rstd, kFp32Tol);
    expect_narrow_bits("rmsnorm_forward (Gemm) out" + tag, any, out.g);
    expect_gemm_reads("rmsnorm_forward (Gemm) out" + tag, out, N, H);
    Twin dout = upload(random(size_t(N * H)));
    Twin dx = upload(random(size_t(N * H))), dw = upload(random(size_t(H)));  // both add
    const std::vector<float> dx0 = host(*gpu_, dx.g, dx.n), dw0 = host(*gpu_, dw.g, dw.n);
    cpu_->rmsnorm_backward(dout.c, x.c, w.c, rstd.c, N, H, dx.c, dw.c, Use::Any);
    gpu_->rmsnorm_backward(dout.g, x.g, w.g, rstd.g, N, H, dx.g, dw.g, Use::Any);
    expect_close("rmsnorm_backward dx" + tag, dx, kFp32Tol);
    expect_close("rmsnorm_backward dw" + tag, dw, kFp32Tol);
    // dx for a GEMM (the residual gradient, o_proj's dy): the fp32 dx is the same bits, and the
    // GEMMs that read the bf16 copy give the same bits as GEMMs that round dx themselves.
    Twin dx2 = upload(dx0), dw2 = upload(dw0);
    cpu_->rmsnorm_backward(dout.c, x.c, w.c, rstd.c, N, H, dx2.c, dw2.c, Use::Gemm);
    gpu_->rmsnorm_backward(dout.g, x.g, w.g, rstd.g, N, H, dx2.g, dw2.g, Use::Gemm);
    expect_same_bits("rmsnorm_backward (Gemm) dx" + tag, dx, dx2);
    expect_backward_gemms_read("rmsnorm_backward (Gemm) dx" + tag, dx2, N, H, &dx);
    // A narrow dout, as the step's qkv_proj and gate_up_proj backward GEMMs leave it.
    const int64_t K = 29;
    Twin a = upload(random(size_t(N * K))), Wd = upload(random(size_t(H * K)));
    Twin dout3 = poisoned(size_t(N * H)), dx3 = upload(dx0), dw3 = upload(dw0);
    cpu_->linear_gemm(N, H, K, a.c, Wd.c, dout3.c, Use::Narrow);
    gpu_->linear_gemm(N, H, K, a.g, Wd.g, dout3.g, Use::Narrow);
    cpu_->rmsnorm_backward(dout3.c, x.c, w.c, rstd.c, N, H, dx3.c, dw3.c, Use::Any);
    gpu_->rmsnorm_backward(dout3.g, x.g, w.g, rstd.g, N, H, dx3.g, dw3.g, Use::Any);
    expect_holds_bf16("narrow dout" + tag, dout3);
    expect_close("rmsnorm_backward dx of a narrow dout" + tag, dx3, kBf16Tol);
    expect_close("rmsnorm_backward dw of a narrow dout" + tag, dw3, kBf16Tol);

    // In place (sum = residual), then into a new buffer, then for a GEMM.
    Twin res = upload(random(size_t(N * H), -2, 2));
    poison(out);
    poison(rstd);
    cpu_->add_rmsnorm_forward(x.c, res.c, res.c, w.c, N, H, eps, out.c, rstd.c, Use::Any);
    gpu_->add_rmsnorm_forward(x.g, res.g, res.g, w.g, N, H, eps, out.g, rstd.g, Use::Any);
    expect_close("add_rmsnorm_forward residual" + tag, res, kFp32Tol);
    expect_close("add_rmsnorm_forward out" + tag, out, kFp32Tol);
    expect_close("add_rmsnorm_forward rstd" + tag, rstd, kFp32Tol);
    Twin sum = poisoned(size_t(N * H));
    poison(out);
    poison(rstd);
    cpu_->add_rmsnorm_forward(x.c, res.c, sum.c, w.c, N, H, eps, out.c, rstd.c, Use::Any);
    gpu_->add_rmsnorm_forward(x.g, res.g, sum.g, w.g, N, H, eps, out.g, rstd.g, Use::Any);
    expect_close("add_rmsnorm_forward sum (new buffer)" + tag, sum, kFp32Tol);
    expect_close("add_rmsnorm_forward residual unchanged" + tag, res, 0.0);
    expect_close("add_rmsnorm_forward out (new buffer)" + tag, out, kFp32Tol);
    poison(sum);
    poison(out);
    cpu_->add_rmsnorm_forward(x.c, res.c, sum.c, w.c, N, H, eps, out.c, rstd.c, Use::Gemm);
    gpu_->add_rmsnorm_forward(x.g, res.g, sum.g, w.g, N, H, eps, out.g, rstd.g, Use::Gemm);
    expect_close("add_rmsnorm_forward (Gemm) sum" + tag, sum, kFp32Tol);
    expect_gemm_reads("add_rmsnorm_forward (Gemm) out" + tag, out, N, H);
  }
}

// ---------------------------------------------------------------- RoPE

TEST_F(CudaVsCpu, RopePartialForwardBackward) {
  // (head_dim, rotary_dim): tiny test model, Phi-4-mini (partial 0.75), Phi-4 (full).
  for (auto [hd, rd] : std::vector<Dims2>{{8, 4}, {128, 96}, {128, 128}}) {
    const int64_t B = 2, T = 13, N = B * T, nq = 3, nkv = 1, ld = (nq + 2 * nkv) * hd;
    Twin x = upload(random(size_t(N * ld)));
    Twin cos = upload(random(size_t(T * rd / 2), -1.2f, 1.2f));
    Twin sin = upload(random(size_t(T * rd / 2), -1.2f, 1.2f));
    const std::string tag = name_of(" hd %ld rd %ld", long(hd), long(rd));
    cpu_->rope_forward(x.c, N, T, ld, nq + nkv, hd, rd, cos.c, sin.c);
    gpu_->rope_forward(x.g, N, T, ld, nq + nkv, hd, rd, cos.g, sin.g);
    expect_close("rope_forward" + tag, x, kFp32Tol);
    cpu_->rope_backward(x.c, N, T, ld, nq + nkv, hd, rd, cos.c, sin.c);
    gpu_->rope_backward(x.g, N, T, ld, nq + nkv, hd, rd, cos.g, sin.g);
    expect_close("rope_backward" + tag, x, kFp32Tol);
  }
}

// ---------------------------------------------------------------- attention

TEST_F(CudaVsCpu, AttentionForwardBackward) {
  const int64_t B = 2;
  for (int64_t hd : {16, 64, 128, 8}) {
    for (int64_t T : {1, 17, 128, 300}) {
      for (auto [nq, nkv] : std::vector<Dims2>{{8, 4}, {3, 1}, {4, 4}}) {
        attention_case(B, T, nq, nkv, hd, attention_tol(hd));
      }
    }
  }
  // The tensor-core backward's other two ways: dS stored one (batch, kv head) per pass (B x nkv
  // passes), and recomputed (no budget).
  for (int64_t T : {17, 130, 300}) {
    for (auto [nq, nkv] : std::vector<Dims2>{{8, 4}, {3, 1}}) {
      for (int64_t budget : {ds_unit_bytes(T, nq, nkv), int64_t(0)}) {
        SCOPED_TRACE(budget ? "dS stored, one unit per pass" : "dS recomputed");
        DsBudget scope(budget);
        attention_case(B, T, nq, nkv, 128, attention_tol(128));
      }
    }
  }
  // The fp32 kernels at a tensor-core head dim (they stay the fallback).
  Fp32Attention fp32;
  for (int64_t T : {17, 300}) attention_case(B, T, 8, 4, 64, 1e-4);
}

// The Phi-4-mini shape at full length: accuracy over 32 key tiles, and the kernel times of the
// tensor-core path against the fp32 kernels (AUTOTP_ATTN_FP32 selects those).
TEST_F(CudaVsCpu, AttentionLongSequenceAndTimes) {
  const int64_t B = 1, T = 2048, nq = 24, nkv = 8, hd = 128;
  attention_case(B, T, nq, nkv, hd, attention_tol(hd));
  cudaEvent_t e0, e1, e2;
  ASSERT_EQ(cudaEventCreate(&e0), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&e1), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&e2), cudaSuccess);
  // B 4 is the training step's shape, timed with dS stored (the default) and recomputed; the
  // fp32 kernels are timed at B 1 only (they are slow).
  enum Path { kStored, kRecomputed, kFp32 };
  for (auto [Bt, path] : std::vector<std::pair<int64_t, Path>>{
           {1, kStored}, {4, kStored}, {4, kRecomputed}, {1, kFp32}}) {
    const bool fp32 = path == kFp32;
    std::unique_ptr<Fp32Attention> scope(fp32 ? new Fp32Attention : nullptr);
    std::unique_ptr<DsBudget> budget(path == kRecomputed ? new DsBudget(0) : nullptr);
    const int64_t N = Bt * T, ld = (nq + 2 * nkv) * hd;
    Twin qkv = upload(random(size_t(N * ld), -2, 2)), dout = upload(random(size_t(N * nq * hd)));
    Twin out = poisoned(size_t(N * nq * hd)), lse = poisoned(size_t(Bt * nq * T));
    Twin dqkv = poisoned(size_t(N * ld));
    const int reps = 5;
    float fwd = 0, bwd = 0;
    std::vector<float> first;
    for (int rep = 0; rep <= reps; ++rep) {  // rep 0 warms up
      cudaEventRecord(e0, gpu_->stream());
      gpu_->attention_forward(qkv.g, Bt, T, nq, nkv, hd, out.g, lse.g, Use::Any);
      cudaEventRecord(e1, gpu_->stream());
      gpu_->attention_backward(dout.g, qkv.g, out.g, lse.g, Bt, T, nq, nkv, hd, dqkv.g, Use::Any);
      cudaEventRecord(e2, gpu_->stream());
      ASSERT_EQ(cudaEventSynchronize(e2), cudaSuccess);
      float f, b;
      cudaEventElapsedTime(&f, e0, e1);
      cudaEventElapsedTime(&b, e1, e2);
      if (rep > 0) fwd += f / reps, bwd += b / reps;
      if (rep == 0) first = host(*gpu_, dqkv.g, dqkv.n);
    }
    // Deterministic kernels (no atomics): the gradients of every repetition are bitwise equal.
    const std::vector<float> last = host(*gpu_, dqkv.g, dqkv.n);
    EXPECT_EQ(std::memcmp(first.data(), last.data(), last.size() * sizeof(float)), 0)
        << "attention_backward is not deterministic";
    // Useful causal flops: 2 matmuls forward, 5 backward (7 run where the dQ blocks recompute
    // S and dP).
    const double mm = 2.0 * Bt * nq * double(T) * double(T) / 2 * hd;
    const char* what[] = {"tensor cores, dS stored", "tensor cores, dS recomputed", "fp32 kernels"};
    std::printf(
        "  attention %s B %ld T %ld hd %ld nq/nkv %ld/%ld: forward %.3f ms (%.0f TFLOP/s), "
        "backward %.3f ms (%.0f TFLOP/s)\n",
        what[path], long(Bt), long(T), long(hd), long(nq), long(nkv), fwd, 2 * mm / fwd * 1e-9, bwd,
        5 * mm / bwd * 1e-9);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaEventDestroy(e2);
}

// The step's attention input: qkv_proj's GEMM writes qkv narrow, RoPE rotates the bf16 copy in
// place, and the attention reads it: the tensor-core kernels as it is, the fp32 kernels widened
// (AUTOTP_ATTN_FP32, or a head dim without tensor-core kernels).
TEST_F(CudaVsCpu, NarrowQkvThroughRopeAndAttention) {
  for (auto [hd, fp32] :
       std::vector<std::pair<int64_t, bool>>{{128, false}, {64, true}, {8, false}}) {
    std::unique_ptr<Fp32Attention> scope(fp32 ? new Fp32Attention : nullptr);
    const int64_t B = 2, T = 70, nq = 4, nkv = 2, H = 32, rd = hd / 2, ld = (nq + 2 * nkv) * hd;
    const int64_t N = B * T;
    const std::string tag = name_of(" hd %ld%s", long(hd), fp32 ? " (fp32 kernels)" : "");
    Twin x = upload(random(size_t(N * H))), W = upload(random(size_t(ld * H), -0.5f, 0.5f));
    Twin cos = upload(random(size_t(T * rd / 2), -1, 1)), sin = upload(random(size_t(T * rd / 2)));
    Twin qkv = poisoned(size_t(N * ld));
    for (Backend* be : {static_cast<Backend*>(cpu_.get()), static_cast<Backend*>(gpu_.get())}) {
      const bool c = be == cpu_.get();
      be->linear_gemm(N, ld, H, c ? x.c : x.g, c ? W.c : W.g, c ? qkv.c : qkv.g, Use::Narrow);
      be->rope_forward(c ? qkv.c : qkv.g, N, T, ld, nq + nkv, hd, rd, c ? cos.c : cos.g,
                       c ? sin.c : sin.g);
    }
    expect_holds_bf16("qkv after RoPE (narrow)" + tag, qkv);
    Twin out = poisoned(size_t(N * nq * hd)), lse = poisoned(size_t(B * nq * T));
    cpu_->attention_forward(qkv.c, B, T, nq, nkv, hd, out.c, lse.c, Use::Narrow);
    gpu_->attention_forward(qkv.g, B, T, nq, nkv, hd, out.g, lse.g, Use::Narrow);
    expect_close("attention_forward lse of a narrow qkv" + tag, lse, kBf16Tol);
    expect_gemm_reads("attention_forward out of a narrow qkv" + tag, out, N, nq * hd);
    // dout narrow too, as o_proj's backward GEMM leaves it in the step.
    Twin Wo = upload(random(size_t(nq * hd * H), -0.5f, 0.5f)),
         dout = poisoned(size_t(N * nq * hd));
    cpu_->linear_gemm(N, nq * hd, H, x.c, Wo.c, dout.c, Use::Narrow);
    gpu_->linear_gemm(N, nq * hd, H, x.g, Wo.g, dout.g, Use::Narrow);
    Twin dqkv = poisoned(size_t(N * ld));
    cpu_->attention_backward(dout.c, qkv.c, out.c, lse.c, B, T, nq, nkv, hd, dqkv.c, Use::Any);
    gpu_->attention_backward(dout.g, qkv.g, out.g, lse.g, B, T, nq, nkv, hd, dqkv.g, Use::Any);
    expect_close("attention_backward dqkv of a narrow qkv and dout" + tag, dqkv, kBf16Tol);
    expect_holds_bf16("dout (narrow)" + tag, dout);
    if (fp32 || hd != 128) continue;  // the fp32 kernels write an fp32 dqkv
    // The step's dqkv: narrow, rotated back by RoPE in place, read by qkv_proj's GEMMs.
    Twin dqkv2 = poisoned(size_t(N * ld));
    for (Backend* be : {static_cast<Backend*>(cpu_.get()), static_cast<Backend*>(gpu_.get())}) {
      const bool c = be == cpu_.get();
      be->attention_backward(c ? dout.c : dout.g, c ? qkv.c : qkv.g, c ? out.c : out.g,
                             c ? lse.c : lse.g, B, T, nq, nkv, hd, c ? dqkv2.c : dqkv2.g,
                             Use::Narrow);
      be->rope_backward(c ? dqkv2.c : dqkv2.g, N, T, ld, nq + nkv, hd, rd, c ? cos.c : cos.g,
                        c ? sin.c : sin.g);
    }
    expect_holds_bf16("dqkv after RoPE's backward (narrow)" + tag, dqkv2);
    expect_backward_gemms_read("dqkv after RoPE's backward (narrow)" + tag, dqkv2, N, ld);
  }
}

TEST_F(CudaVsCpu, AttentionRejectsUncompiledHeadDim) {
  Twin qkv = upload(random(size_t(3 * 12))), out = poisoned(4), lse = poisoned(1);
  EXPECT_TRUE(
      has(error_of([&] { gpu_->attention_forward(qkv.g, 1, 1, 1, 1, 12, out.g, lse.g, Use::Any); }),
          "head_dim 12"));
}

// ---------------------------------------------------------------- SwiGLU

TEST_F(CudaVsCpu, SwigluForwardBackward) {
  const int64_t N = 37, I = 300;
  Twin gu = upload(random(size_t(N * 2 * I), -6, 6));
  Twin out = poisoned(size_t(N * I));
  cpu_->swiglu_forward(gu.c, N, I, out.c, Use::Any);
  gpu_->swiglu_forward(gu.g, N, I, out.g, Use::Any);
  expect_close("swiglu_forward", out, kFp32Tol);
  Twin dout = upload(random(size_t(N * I)));
  Twin dgu = poisoned(size_t(N * 2 * I));
  cpu_->swiglu_backward(dout.c, gu.c, N, I, dgu.c, Use::Any);
  gpu_->swiglu_backward(dout.g, gu.g, N, I, dgu.g, Use::Any);
  expect_close("swiglu_backward", dgu, kFp32Tol);
}

// Outputs for a GEMM (Use::Gemm): the GPU writes only the bf16 copy the GEMM reads, on the
// 16-byte path (I % 4 == 0) and the scalar one.
TEST_F(CudaVsCpu, SwigluForGemm) {
  for (int64_t I : {300, 301}) {
    const int64_t N = 37;
    const std::string tag = name_of(" I %ld", long(I));
    Twin gu = upload(random(size_t(N * 2 * I), -6, 6));
    Twin out = poisoned(size_t(N * I));
    gpu_->swiglu_forward(gu.g, N, I, out.g, Use::Any);
    const std::vector<float> any = host(*gpu_, out.g, out.n);
    cpu_->swiglu_forward(gu.c, N, I, out.c, Use::Gemm);
    gpu_->swiglu_forward(gu.g, N, I, out.g, Use::Gemm);
    expect_narrow_bits("swiglu_forward (Gemm)" + tag, any, out.g);
    expect_gemm_reads("swiglu_forward (Gemm)" + tag, out, N, I);
    Twin dout = upload(random(size_t(N * I)));
    Twin dgu = poisoned(size_t(N * 2 * I));
    gpu_->swiglu_backward(dout.g, gu.g, N, I, dgu.g, Use::Any);
    const std::vector<float> dany = host(*gpu_, dgu.g, dgu.n);
    cpu_->swiglu_backward(dout.c, gu.c, N, I, dgu.c, Use::Gemm);
    gpu_->swiglu_backward(dout.g, gu.g, N, I, dgu.g, Use::Gemm);
    expect_narrow_bits("swiglu_backward (Gemm)" + tag, dany, dgu.g);
    expect_backward_gemms_read("swiglu_backward (Gemm)" + tag, dgu, N, 2 * I);
  }
}

// A Use::Gemm output stops standing for its buffer once anything else writes the buffer: the
// next GEMM then reads the new fp32 contents. An op whose input overlaps its output writes fp32.
TEST_F(CudaVsCpu, GemmOutputsYieldToLaterWrites) {
  const int64_t N = 29, H = 64;
  Twin x = upload(random(size_t(N * H), -2, 2)), w = upload(random(size_t(H), 0.5f, 1.5f));
  Twin out = poisoned(size_t(N * H)), rstd = poisoned(size_t(N));
  const std::vector<float> later = random(size_t(N * H));
  Twin sq = upload(random(size_t(H * H)));  // the B of the GEMM that overwrites
  // Overwritten by each kind of write: a memory op, an elementwise op, a GEMM, a kernel; for a
  // Gemm output (one read) and a Narrow one (kept for every read until then).
  for (int how = 0; how < 8; ++how) {
    const Use use = how < 4 ? Use::Gemm : Use::Narrow;
    cpu_->rmsnorm_forward(x.c, w.c, N, H, 1e-5f, out.c, rstd.c, use);
    gpu_->rmsnorm_forward(x.g, w.g, N, H, 1e-5f, out.g, rstd.g, use);
    if (use == Use::Narrow) expect_gemm_reads("Use::Narrow output before the write", out, N, H);
    Twin src = upload(later);
    for (Backend* be : {static_cast<Backend*>(cpu_.get()), static_cast<Backend*>(gpu_.get())}) {
      float* o = be == cpu_.get() ? out.c : out.g;
      const float* sp = be == cpu_.get() ? src.c : src.g;
      if (how % 4 == 0) be->copy(sp, o, size_t(N * H) * sizeof(float));
      if (how % 4 == 1) be->copy_cols(sp, H, 0, o, H, 0, N, H, false);
      if (how % 4 == 2)
        be->matmul(N, H, H, sp, false, be == cpu_.get() ? sq.c : sq.g, true, o, false);
      if (how % 4 == 3)
        be->rmsnorm_forward(sp, be == cpu_.get() ? w.c : w.g, N, H, 1e-5f, o,
                            be == cpu_.get() ? rstd.c : rstd.g, Use::Any);
    }
    const double tol = how % 4 == 2 ? kBf16Tol : kFp32Tol;
    const char* kind = use == Use::Gemm ? "Gemm" : "Narrow";
    expect_close(name_of("Use::%s output overwritten (way %d), read as fp32", kind, how % 4), out,
                 tol);
    expect_gemm_reads(name_of("Use::%s output overwritten (way %d)", kind, how % 4), out, N, H);
  }
  // In place: out is x. The result must be fp32 and right.
  Twin y = upload(random(size_t(N * H), -2, 2));
  cpu_->rmsnorm_forward(y.c, w.c, N, H, 1e-5f, y.c, rstd.c, Use::Gemm);
  gpu_->rmsnorm_forward(y.g, w.g, N, H, 1e-5f, y.g, rstd.g, Use::Gemm);
  expect_close("rmsnorm_forward in place with Use::Gemm (written as fp32)", y, kFp32Tol);
}

// ---------------------------------------------------------------- cross-entropy

TEST_F(CudaVsCpu, CrossEntropyVocabParallelAndIgnoreIndex) {
  const int32_t ignore = -100;
  struct Case {
    const char* name;
    int64_t N, V, vocab;  // V local columns of a `vocab`-token vocabulary
    std::vector<VocabBlock> blocks;
  };
  const Case cases[] = {{"vocab-parallel 2 blocks", 37, 12, 50, {{0, 0, 7}, {7, 30, 5}}},
                        {"replicated V 3000", 29, 3000, 3000, {{0, 0, 3000}}},
                        {"replicated V 200064", 3, 200064, 200064, {{0, 0, 200064}}}};
  for (const Case& c : cases) {
    const std::string tag = std::string(" ") + c.name;
    std::vector<int32_t> tg(size_t(c.N));
    for (auto& t : tg) t = int32_t(randint(0, c.vocab - 1));
    tg[0] = ignore;
    tg[size_t(c.N) - 1] = int32_t(c.blocks.back().begin);  // one target surely held locally
    TwinI targets = upload_ids(tg);
    Twin logits = upload(random(size_t(c.N * c.V), -8, 8));
    Twin m = poisoned(size_t(c.N)), s = poisoned(size_t(c.N)), z = poisoned(size_t(c.N));
    cpu_->ce_stats(logits.c, c.N, c.V, targets.c, c.blocks, m.c, s.c, z.c);
    gpu_->ce_stats(logits.g, c.N, c.V, targets.g, c.blocks, m.g, s.g, z.g);
    expect_close("ce_stats m" + tag, m, kFp32Tol);
    expect_close("ce_stats s" + tag, s, kFp32Tol);
    expect_close("ce_stats z" + tag, z, kFp32Tol);
    // Another rank's max (some above ours, some below), as the TP all-reduce would bring it.
    std::vector<float> mg = host(*cpu_, m.c, size_t(c.N));
    for (size_t i = 0; i < mg.size(); ++i) mg[i] += i % 2 ? 3.0f : 0.0f;
    Twin mgt = upload(mg), s2 = upload(host(*cpu_, s.c, size_t(c.N)));
    cpu_->ce_rescale(m.c, mgt.c, c.N, s2.c);
    gpu_->ce_rescale(m.g, mgt.g, c.N, s2.g);
    expect_close("ce_rescale" + tag, s2, kFp32Tol);
    const float scale = 1.0f / float(c.N - 1);
    Twin logits2 = upload(host(*cpu_, logits.c, logits.n));
    cpu_->ce_backward(logits.c, c.N, c.V, m.c, s.c, targets.c, c.blocks, ignore, scale, Use::Any);
    gpu_->ce_backward(logits.g, c.N, c.V, m.g, s.g, targets.g, c.blocks, ignore, scale, Use::Any);
    expect_close("ce_backward" + tag, logits, kFp32Tol);
    // For the lm_head's GEMMs only: the GPU writes the bf16 gradient elsewhere, once.
    cpu_->ce_backward(logits2.c, c.N, c.V, m.c, s.c, targets.c, c.blocks, ignore, scale, Use::Gemm);
    gpu_->ce_backward(logits2.g, c.N, c.V, m.g, s.g, targets.g, c.blocks, ignore, scale, Use::Gemm);
    expect_backward_gemms_read("ce_backward (Gemm)" + tag, logits2, c.N, c.V);
  }
}

// Narrow logits (the lm_head's GEMM with Use::Narrow): ce_stats and ce_backward read the bf16
// copy, and the gradient replaces it in place for the lm_head's backward GEMMs; on the 16-byte
// path (V % 4 == 0) and the scalar one.
TEST_F(CudaVsCpu, CrossEntropyOfNarrowLogits) {
  const int32_t ignore = -100;
  for (int64_t V : {3000, 3001}) {
    const int64_t N = 29, H = 16;
    const std::string tag = name_of(" V %ld", long(V));
    const std::vector<VocabBlock> blocks{{0, 0, V}};
    std::vector<int32_t> tg(static_cast<size_t>(N));
    for (auto& t : tg) t = int32_t(randint(0, V - 1));
    tg[1] = ignore;
    TwinI targets = upload_ids(tg);
    // Logits within +-1.5: bf16's rounding (2^-9 of each) moves s by ~0.3%, under the tolerance.
    Twin x = upload(random(size_t(N * H))), W = upload(random(size_t(V * H), -0.25f, 0.25f));
    Twin logits = poisoned(size_t(N * V));
    cpu_->linear_gemm(N, V, H, x.c, W.c, logits.c, Use::Narrow);
    gpu_->linear_gemm(N, V, H, x.g, W.g, logits.g, Use::Narrow);
    expect_holds_bf16("narrow logits" + tag, logits);
    Twin m = poisoned(size_t(N)), s = poisoned(size_t(N)), z = poisoned(size_t(N));
    cpu_->ce_stats(logits.c, N, V, targets.c, blocks, m.c, s.c, z.c);
    gpu_->ce_stats(logits.g, N, V, targets.g, blocks, m.g, s.g, z.g);
    expect_close("ce_stats m of narrow logits" + tag, m, kBf16Tol);
    expect_close("ce_stats s of narrow logits" + tag, s, kBf16Tol);
    expect_close("ce_stats z of narrow logits" + tag, z, kBf16Tol);
    cpu_->ce_backward(logits.c, N, V, m.c, s.c, targets.c, blocks, ignore, 0.5f, Use::Gemm);
    gpu_->ce_backward(logits.g, N, V, m.g, s.g, targets.g, blocks, ignore, 0.5f, Use::Gemm);
    expect_backward_gemms_read("ce_backward of narrow logits" + tag, logits, N, V);
  }
}

// The vocab-parallel path end to end: the logits split into two column shards, each reduced on
// its own, the maxes combined, the sums rescaled and added, give the whole row's statistics.
TEST_F(CudaVsCpu, CrossEntropyShardsCombine) {
  const int64_t N = 13, V = 3000, half = 1504;  // the second shard's width is not a multiple of 4
  std::vector<float> full = random(size_t(N * V), -8, 8);
  for (int64_t n = 0; n < N; ++n) full[size_t(n * V + (n % 2 ? 7 : V - 9))] = 20.0f;  // max side
  std::vector<int32_t> tg(static_cast<size_t>(N));
  for (auto& t : tg) t = int32_t(randint(0, V - 1));
  TwinI targets = upload_ids(tg);
  Twin whole = upload(full), m = poisoned(size_t(N)), s = poisoned(size_t(N)),
       z = poisoned(size_t(N));
  cpu_->ce_stats(whole.c, N, V, targets.c, {{0, 0, V}}, m.c, s.c, z.c);
  const std::vector<float> mref = host(*cpu_, m.c, size_t(N)), sref = host(*cpu_, s.c, size_t(N)),
                           zref = host(*cpu_, z.c, size_t(N));
  std::vector<float> msh[2], ssh[2], zsh[2];
  for (int r = 0; r < 2; ++r) {
    const int64_t lo = r ? half : 0, w = r ? V - half : half;
    std::vector<float> shard(size_t(N * w));
    for (int64_t n = 0; n < N; ++n)
      std::copy_n(full.begin() + n * V + lo, w, shard.begin() + n * w);
    Twin sh = upload(shard);
    gpu_->ce_stats(sh.g, N, w, targets.g, {{0, lo, w}}, m.g, s.g, z.g);
    msh[r] = host(*gpu_, m.g, size_t(N));
    ssh[r] = host(*gpu_, s.g, size_t(N));
    zsh[r] = host(*gpu_, z.g, size_t(N));
  }
  std::vector<float> mg(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) mg[size_t(n)] = std::max(msh[0][size_t(n)], msh[1][size_t(n)]);
  Twin mgt = upload(mg);
  double worst = 0.0;
  std::vector<float> total(static_cast<size_t>(N), 0.0f);
  for (int r = 0; r < 2; ++r) {
    Twin mr = upload(msh[r]), sr = upload(ssh[r]);
    gpu_->ce_rescale(mr.g, mgt.g, N, sr.g);
    const std::vector<float> h = host(*gpu_, sr.g, size_t(N));
    for (int64_t n = 0; n < N; ++n) total[size_t(n)] += h[size_t(n)];
  }
  for (int64_t n = 0; n < N; ++n) {
    const size_t i = size_t(n);
    EXPECT_EQ(mg[i], mref[i]) << "row " << n;
    EXPECT_EQ(zsh[0][i] + zsh[1][i], zref[i]) << "row " << n << ": one shard holds the target";
    worst = std::max(worst, std::fabs(double(total[i]) - sref[i]) / sref[i]);
  }
  std::printf("  %-62s rel %.3e (tol %.0e)\n", "ce_stats over 2 shards + ce_rescale: s", worst,
              kFp32Tol);
  EXPECT_LE(worst, kFp32Tol);
}

// ---------------------------------------------------------------- optimizer

TEST_F(CudaVsCpu, AdamwAndSumSquares) {
  const size_t n = 100003;
  AdamWStep st;
  st.decay_factor = 1.0f - 3e-4f * 0.1f;
  st.one_minus_beta1 = 0.1f;
  st.beta2 = 0.95f;
  st.one_minus_beta2 = 0.05f;
  st.bc2_sqrt = std::sqrt(1.0f - std::pow(0.95f, 7.0f));
  st.eps = 1e-8f;
  st.neg_step_size = -3e-4f / (1.0f - std::pow(0.9f, 7.0f));
  for (bool decay : {true, false}) {
    for (float w1 : {0.1f, 0.7f}) {  // both branches of torch's lerp
      st.one_minus_beta1 = w1;
      Twin p = upload(random(n)), m = upload(random(n, -0.1f, 0.1f));
      Twin v = upload(random(n, 0.0f, 0.01f)), g = upload(random(n));
      cpu_->adamw(p.c, m.c, v.c, g.c, n, st, decay, 0.5f);
      gpu_->adamw(p.g, m.g, v.g, g.g, n, st, decay, 0.5f);
      const std::string tag = name_of(" decay %d 1-beta1 %.1f", int(decay), double(w1));
      expect_close("adamw p" + tag, p, kFp32Tol);
      expect_close("adamw m" + tag, m, kFp32Tol);
      expect_close("adamw v" + tag, v, kFp32Tol);
      const std::vector<float> a = host(*gpu_, p.g, n), b = host(*cpu_, p.c, n);
      size_t differ = 0;
      for (size_t i = 0; i < n; ++i) differ += std::memcmp(&a[i], &b[i], sizeof(float)) != 0;
      std::printf("  adamw p%s: %zu of %zu elements not bit-identical to the cpu\n", tag.c_str(),
                  differ, n);
    }
  }
  for (size_t len : {size_t(1), size_t(1000), size_t(10000019)}) {
    Twin x = upload(random(len, -3, 3));
    const double a = gpu_->sum_squares(x.g, len), b = cpu_->sum_squares(x.c, len);
    const double rel = std::fabs(a - b) / std::fabs(b);
    std::printf("  %-62s rel %.3e (tol %.0e)\n", name_of("sum_squares n %zu", len).c_str(), rel,
                kFp32Tol);
    EXPECT_LE(rel, kFp32Tol) << "sum_squares n " << len << ": gpu " << a << " cpu " << b;
  }
}

// ---------------------------------------------------------------- profiling

// AdamW over the whole parameter buffer writes the bf16 shadow in the same pass, so that
// params_changed() skips its conversion: a GEMM must then read the updated weights. A copy
// into the parameters after the update makes params_changed() convert again.
TEST_F(CudaVsCpu, AdamwWritesTheShadow) {
  const int64_t M = 9, N = 31, K = 33;  // params = B[K, N]; 1023 elements, split unaligned
  const size_t n = size_t(K * N), cut = 5;
  AdamWStep st;
  st.neg_step_size = -0.05f;
  Twin p = upload(random(n)), m = upload(random(n, -0.1f, 0.1f));
  Twin v = upload(random(n, 0.0f, 0.01f)), g = upload(random(n));
  Twin X = upload(random(size_t(M * K))), C = poisoned(size_t(M * N));
  gpu_->params_changed(p.g, n);
  cpu_->params_changed(p.c, n);
  for (size_t b : {size_t(0), cut}) {  // [0, 5) on the scalar path, [5, n) misaligned too
    const size_t e = b == 0 ? cut : n;
    cpu_->adamw(p.c + b, m.c + b, v.c + b, g.c + b, e - b, st, true, 1.0f);
    gpu_->adamw(p.g + b, m.g + b, v.g + b, g.g + b, e - b, st, true, 1.0f);
  }
  // The shadow already holds the new weights, before any params_changed().
  cpu_->matmul(M, N, K, X.c, false, p.c, false, C.c, false);
  gpu_->matmul(M, N, K, X.g, false, p.g, false, C.g, false);
  expect_close("matmul after adamw, before params_changed (shadow written by adamw)", C, kBf16Tol);
  poison(C);
  gpu_->params_changed(p.g, n);
  cpu_->params_changed(p.c, n);
  cpu_->matmul(M, N, K, X.c, false, p.c, false, C.c, false);
  gpu_->matmul(M, N, K, X.g, false, p.g, false, C.g, false);
  expect_close("matmul after adamw and params_changed (conversion skipped)", C, kBf16Tol);
  // Another whole update, then a copy over part of the parameters: the shadow must follow.
  cpu_->adamw(p.c, m.c, v.c, g.c, n, st, true, 1.0f);
  gpu_->adamw(p.g, m.g, v.g, g.g, n, st, true, 1.0f);
  Twin other = upload(random(n));
  cpu_->copy(other.c, p.c, 100 * sizeof(float));
  gpu_->copy(other.g, p.g, 100 * sizeof(float));
  gpu_->params_changed(p.g, n);
  cpu_->params_changed(p.c, n);
  cpu_->matmul(M, N, K, X.c, false, p.c, false, C.c, false);
  gpu_->matmul(M, N, K, X.g, false, p.g, false, C.g, false);
  expect_close("matmul after adamw + copy into the parameters", C, kBf16Tol);
}

TEST_F(CudaVsCpu, ProfilingCountsOpCategories) {
  gpu_->set_profiling(true);
  gpu_->reset_op_times();
  Twin a = upload(random(64 * 64)), c = poisoned(64 * 64);
  gpu_->matmul(64, 64, 64, a.g, false, a.g, true, c.g, false);
  Twin qkv = upload(random(size_t(2 * 17 * 3 * 16))), out = poisoned(17 * 2 * 16);
  Twin lse = poisoned(2 * 17);
  gpu_->attention_forward(qkv.g, 1, 17, 1, 1, 16, out.g, lse.g, Use::Any);
  gpu_->attention_forward(qkv.g, 2, 17, 1, 1, 16, out.g, lse.g, Use::Any);
  auto t = gpu_->op_times_ms();
  EXPECT_GT(t["gemm"], 0.0);
  EXPECT_GT(t["attention"], 0.0);
  EXPECT_EQ(t.count("swiglu"), 0u) << "no swiglu ran, yet it has a time";
  gpu_->reset_op_times();
  EXPECT_TRUE(gpu_->op_times_ms().empty());
  gpu_->set_profiling(false);
}

// ---------------------------------------------------------------- GEMM tuner

// AUTOTP_GEMM_TUNE, read when a backend is constructed: a shape's first GEMM times cuBLAS's
// default against cuBLASLt's candidates, later ones reuse the choice. "1" keeps the default
// unless a candidate is faster; "lt" takes the fastest cuBLASLt candidate, so that the Lt path
// runs whatever the timings. Either must compute what the CPU does, with every transpose,
// operands at odd offsets of the shadow (2-byte aligned), a bf16 C, and accumulating GEMMs whose
// tuning runs leave C alone: C0 + A B after the first call (tuning included), C0 + 2 A B after
// the second (the cached choice). The two shapes replace the smaller operand by zeros for
// tuning, one A and one B.
TEST_F(CudaVsCpu, TunedGemmsMatchTheCpu) {
  for (const char* mode : {"1", "lt"}) {
    // A fresh backend for the mode: the previous one's buffers go first.
    for (void* p : gpu_bufs_) gpu_->free_bytes(p);
    gpu_bufs_.clear();
    {
      EnvScope tune("AUTOTP_GEMM_TUNE", mode), verbose("AUTOTP_GEMM_TUNE_VERBOSE", "1");
      gpu_ = make_cuda_backend(0);
    }
    const std::string tag = name_of(" (AUTOTP_GEMM_TUNE=%s)", mode);
    for (auto [M, N, K] : std::vector<Dims3>{{256, 384, 512}, {67, 45, 129}}) {
      auto [offA, offB, params, A, B] = gemm_operands(M, N, K);
      for (int tr = 0; tr < 4; ++tr) {
        const bool ta = tr & 1, tb = tr & 2;
        for (bool shadow : {false, true}) {
          const float* ac = shadow ? params.c + offA : A.c;
          const float* ag = shadow ? params.g + offA : A.g;
          const float* bc = shadow ? params.c + offB : B.c;
          const float* bg = shadow ? params.g + offB : B.g;
          const std::string what =
              name_of("tuned matmul %ldx%ldx%ld %s%s%s", long(M), long(N), long(K), ta ? "At" : "A",
                      tb ? "Bt" : "B", shadow ? " (shadow)" : "") +
              tag;
          Twin C = poisoned(size_t(M * N));
          cpu_->matmul(M, N, K, ac, ta, bc, tb, C.c, false);
          gpu_->matmul(M, N, K, ag, ta, bg, tb, C.g, false);
          expect_close(what, C, kBf16Tol);
          Twin acc = upload(random(size_t(M * N)));  // C0
          for (int call = 1; call <= 2; ++call) {
            cpu_->matmul(M, N, K, ac, ta, bc, tb, acc.c, true);
            gpu_->matmul(M, N, K, ag, ta, bg, tb, acc.g, true);
            expect_close(what + name_of(" +=, call %d: C0 + %d A B", call, call), acc, kBf16Tol);
          }
        }
      }
    }
    // A bf16 C: linear_gemm's Use::Narrow output, then read by a (tuned) GEMM.
    const int64_t N = 200, O = 320, I = 256;
    Twin x = upload(random(size_t(N * I))), W = upload(random(size_t(O * I)));
    Twin y = poisoned(size_t(N * O));
    cpu_->linear_gemm(N, O, I, x.c, W.c, y.c, Use::Narrow);
    gpu_->linear_gemm(N, O, I, x.g, W.g, y.g, Use::Narrow);
    expect_holds_bf16("tuned linear_gemm, bf16 C" + tag, y);
    expect_gemm_reads("tuned linear_gemm, bf16 C" + tag, y, N, O);
  }
}

// AUTOTP_GEMM_TUNE_FILE: a backend tunes each new GEMM shape and writes the file (a header, then
// one line per shape); a fresh backend reading it runs the same algorithms without timing, so
// its outputs are bit-identical (what lets a resume reproduce its run). The file's choices are
// obeyed: "default" lines give cublasGemmEx's bits even under AUTOTP_GEMM_TUNE=lt. A header of
// another setup is ignored and the file rewritten; a malformed line is an error naming the file
// and the line. The same file in a table folder (the default mode) is obeyed without timing.
TEST_F(CudaVsCpu, GemmTuningFileIsReused) {
  char tmpl[] = "/tmp/autotp_gemm_tune_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl, path = dir + "/gemm_tune.txt";
  struct Cleanup {  // also when an assertion ends the test early
    std::string path, dir;
    ~Cleanup() {
      std::remove(path.c_str());
      std::remove(dir.c_str());
    }
  } cleanup{path, dir};
  const auto read_file = [&] {
    std::string text;
    if (std::FILE* f = std::fopen(path.c_str(), "r")) {
      char buf[4096];
      for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) text.append(buf, n);
      std::fclose(f);
    }
    return text;
  };
  const auto write_file = [&](const std::string& text) {
    std::FILE* f = std::fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr) << path;
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
  };
  const auto lines = [](const std::string& text) {
    std::vector<std::string> v;
    for (size_t b = 0, e; b < text.size(); b = e + 1) {
      e = std::min(text.find('\n', b), text.size());
      v.push_back(text.substr(b, e - b));
    }
    return v;
  };
  // A fresh backend (the previous one's buffers go first), tuned with the file or untuned; the
  // variables are read at construction and unset after it.
  const auto fresh = [&](bool tuned) {
    for (void* p : gpu_bufs_) gpu_->free_bytes(p);
    gpu_bufs_.clear();
    EnvScope tune("AUTOTP_GEMM_TUNE", tuned ? "lt" : "0"), file("AUTOTP_GEMM_TUNE_FILE", path),
        verbose("AUTOTP_GEMM_TUNE_VERBOSE", "1");
    gpu_ = make_cuda_backend(0);
  };
  // Two shapes: C = A B, and C0 += A^T B twice (the second call runs the first's plan). Their
  // outputs, one after the other.
  const int64_t M = 64, N = 96, K = 160;
  const std::vector<float> a = random(size_t(M * K)), b = random(size_t(K * N)),
                           c0 = random(size_t(M * N));
  const auto gemms = [&] {
    Twin A = upload(a), B = upload(b), C = poisoned(size_t(M * N)), acc = upload(c0);
    gpu_->matmul(M, N, K, A.g, false, B.g, false, C.g, false);
    for (int call = 0; call < 2; ++call) gpu_->matmul(M, N, K, A.g, true, B.g, false, acc.g, true);
    std::vector<float> out = host(*gpu_, C.g, C.n), h = host(*gpu_, acc.g, acc.n);
    out.insert(out.end(), h.begin(), h.end());
    return out;
  };
  const auto same_bits = [](const std::vector<float>& x, const std::vector<float>& y) {
    return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
  };

  fresh(true);
  const std::vector<float> tuned = gemms();
  const std::string text = read_file();
  const std::vector<std::string> saved = lines(text);
  ASSERT_EQ(saved.size(), 3u) << path << ": a header and one line per shape expected:\n" << text;
  EXPECT_EQ(saved[0].rfind("autotp-gemm-tune ", 0), 0u) << saved[0];
  for (size_t i = 1; i < saved.size(); ++i)
    EXPECT_NE(saved[i].find(" lt "), std::string::npos)
        << "AUTOTP_GEMM_TUNE=lt kept cublasGemmEx: " << saved[i];

  fresh(true);
  EXPECT_TRUE(same_bits(gemms(), tuned)) << "a backend reading " << path << " computed other bits";
  EXPECT_EQ(read_file(), text) << "nothing was new to tune, yet the file changed";

  std::string defaults = saved[0] + "\n";
  for (size_t i = 1; i < saved.size(); ++i) {
    const size_t lt = saved[i].find(" lt ");
    defaults += (lt == std::string::npos ? saved[i] : saved[i].substr(0, lt) + " default") + "\n";
  }
  write_file(defaults);
  fresh(true);
  const std::vector<float> from_file = gemms();
  fresh(false);
  EXPECT_TRUE(same_bits(from_file, gemms()))
      << "the file's \"default\" choices did not run cublasGemmEx's default";

  write_file("autotp-gemm-tune 0 elsewhere\nnot a choice\n");
  fresh(true);
  testing::internal::CaptureStderr();
  EXPECT_NO_THROW(gemms()) << "a file tuned elsewhere must be ignored";
  const std::string warned = testing::internal::GetCapturedStderr();
  EXPECT_NE(warned.find("ignoring " + path +
                        ", tuned elsewhere (header \"autotp-gemm-tune 0 "
                        "elsewhere\""),
            std::string::npos)
      << "no warning naming the file and its header:\n"
      << warned;
  const std::vector<std::string> rewritten = lines(read_file());
  ASSERT_EQ(rewritten.size(), 3u) << path << " was not rewritten after its header mismatched";
  EXPECT_EQ(rewritten[0], saved[0]);

  write_file(saved[0] + "\n64 96 160 0 0 0 0 256 256 zz default\n");
  fresh(true);
  try {
    gemms();
    ADD_FAILURE() << "a malformed line in " << path << " was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find(path + ":2:"), std::string::npos) << e.what();
  }

  // The same choices as a shipped table (the folder given to make_cuda_backend, no
  // AUTOTP_GEMM_TUNE): its lt lines run (the tuned bits), nothing is timed or written; with
  // AUTOTP_GEMM_TUNE=0, or a table of another setup, the default's bits.
  const auto from_table = [&](const char* mode) {
    for (void* p : gpu_bufs_) gpu_->free_bytes(p);
    gpu_bufs_.clear();
    std::unique_ptr<EnvScope> env(mode ? new EnvScope("AUTOTP_GEMM_TUNE", mode) : nullptr);
    gpu_ = make_cuda_backend(0, dir);
    return gemms();
  };
  std::string table = text;
  table.replace(table.find(" mode lt "), 9, " mode 1 ");  // a table is a file tuned in mode 1
  write_file(table);
  {
    // The bits alone cannot tell the table was used where an lt choice computes the default's
    // bits: the tuner also says what it read.
    EnvScope verbose("AUTOTP_GEMM_TUNE_VERBOSE", "1");
    testing::internal::CaptureStderr();
    const std::vector<float> bits = from_table(nullptr);
    const std::string said = testing::internal::GetCapturedStderr();
    EXPECT_TRUE(same_bits(bits, tuned)) << "the table's choices did not run";
    EXPECT_NE(said.find("2 choices from " + path), std::string::npos)
        << "the tuner did not read the table's 2 choices:\n"
        << said;
  }
  EXPECT_EQ(read_file(), table) << "a table is read, never written";
  fresh(false);
  const std::vector<float> defaults_bits = gemms();
  EXPECT_TRUE(same_bits(from_table("0"), defaults_bits)) << "AUTOTP_GEMM_TUNE=0 used the table";
  write_file("autotp-gemm-tune 1 cublasLt 0 mode 1 sm_00 another GPU\n" + saved[1] + "\n");
  EXPECT_TRUE(same_bits(from_table(nullptr), defaults_bits))
      << "a table of another GPU or cuBLASLt was used";

  fresh(false);
  std::remove(path.c_str());
  EXPECT_EQ(std::remove(dir.c_str()), 0) << dir << " is not empty: a temporary file was left";
}

}  // namespace
}  // namespace autotp
