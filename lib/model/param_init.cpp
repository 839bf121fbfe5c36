#include "model/param_init.hpp"

#include <algorithm>
#include <cmath>
#include <thread>
#include <vector>

#include "core/error.hpp"

namespace autotp {

namespace {

// splitmix64's finaliser: a bijective 64-bit mix; splitmix64 is itself counter-based
// (output i = mix(state0 + i * golden)), which is what we need.
uint64_t mix(uint64_t x) {
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// Global index along `dim` of every local index along it (identity when not split there).
std::vector<int64_t> global_of_local(const ShardSpec& s, int64_t r, size_t dim) {
  std::vector<int64_t> g;
  if (s.replicated() || size_t(s.split_dim) != dim) {
    for (int64_t i = 0; i < s.shape[dim]; ++i) g.push_back(i);
  } else {
    for (auto [b, e] : s.ranges(r))
      for (int64_t i = b; i < e; ++i) g.push_back(i);
  }
  return g;
}

const uint64_t kGolden = 0x9e3779b97f4a7c15ull;

uint64_t tensor_key(uint64_t seed, const std::string& name) {
  return mix(seed * kGolden + fnv1a(name));
}

// counter_normal with the tensor's key computed once (hashing the name per element costs more
// than the sample).
double keyed_normal(uint64_t key, uint64_t index) {
  uint64_t bits = mix(key + (index + 1) * kGolden);
  // Box-Muller on the two 32-bit halves: u1 in (0, 1], u2 in [0, 1).
  double u1 = (double(bits >> 32) + 1.0) / 4294967296.0;
  double u2 = double(bits & 0xffffffffull) / 4294967296.0;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

}  // namespace

double counter_normal(uint64_t seed, const std::string& name, uint64_t index) {
  return keyed_normal(tensor_key(seed, name), index);
}

void init_normal_shard(const ShardSpec& spec, int64_t r, uint64_t seed, double std,
                       int64_t zero_row, float* out) {
  check(spec.shape.size() == 1 || spec.shape.size() == 2, "init: tensor ", spec.name, " has ",
        spec.shape.size(), " dims; expected 1 or 2");
  auto rows = global_of_local(spec, r, 0);
  const int64_t cols_full = spec.shape.size() == 2 ? spec.shape[1] : 1;
  auto cols = spec.shape.size() == 2 ? global_of_local(spec, r, 1) : std::vector<int64_t>{0};
  const uint64_t key = tensor_key(seed, spec.name);
  // Rows are independent (counter-based): split them over the cores, or a multi-billion
  // parameter model takes minutes to initialise.
  auto fill_rows = [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {
      float* o = out + r * cols.size();
      const int64_t gi = rows[r];
      for (int64_t gj : cols)
        *o++ =
            gi == zero_row ? 0.0f : float(std * keyed_normal(key, uint64_t(gi * cols_full + gj)));
    }
  };
  const size_t n_threads = std::min<size_t>(std::max(1u, std::thread::hardware_concurrency()),
                                            rows.size() * cols.size() / 65536 + 1);
  std::vector<std::thread> pool;
  for (size_t t = 1; t < n_threads; ++t)
    pool.emplace_back(fill_rows, rows.size() * t / n_threads, rows.size() * (t + 1) / n_threads);
  fill_rows(0, rows.size() / n_threads);
  for (auto& th : pool) th.join();
}

}  // namespace autotp
