// Shard arithmetic: which slices of a parameter TP rank r holds, and copying them.
#include <cstring>

#include "core/error.hpp"
#include "partition/plan.hpp"

namespace autotp {

std::vector<std::pair<int64_t, int64_t>> ShardSpec::ranges(int64_t r) const {
  if (split_dim < 0) return {{0, shape.empty() ? 1 : shape[0]}};
  check(r >= 0 && r < tp, "tensor ", name, ": TP rank ", r, " is outside [0, ", tp, ")");
  std::vector<std::pair<int64_t, int64_t>> out;
  int64_t offset = 0;
  for (auto p : parts) {
    const int64_t piece = p / tp;
    out.push_back({offset + r * piece, offset + (r + 1) * piece});
    offset += p;
  }
  return out;
}

std::vector<int64_t> ShardSpec::local_shape() const {
  std::vector<int64_t> s = shape;
  if (split_dim >= 0) s[size_t(split_dim)] /= tp;
  return s;
}

int64_t ShardSpec::local_numel() const {
  int64_t n = 1;
  for (auto d : local_shape()) n *= d;
  return n;
}

int64_t ShardSpec::global_numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

namespace {

// The tensor as [outer, D, inner] around split_dim: every range of rank r is, for each outer
// index, one contiguous run of (end - begin) * inner elements.
template <bool kExtract>
void copy_shard(const ShardSpec& s, int64_t r, const char* src, char* dst, size_t elem) {
  if (s.split_dim < 0) {
    std::memcpy(dst, src, size_t(s.global_numel()) * elem);
    return;
  }
  const size_t d = size_t(s.split_dim);
  int64_t outer = 1, inner = 1;
  for (size_t k = 0; k < d; ++k) outer *= s.shape[k];
  for (size_t k = d + 1; k < s.shape.size(); ++k) inner *= s.shape[k];
  const int64_t full_d = s.shape[d], local_d = full_d / s.tp;
  const auto rs = s.ranges(r);
  for (int64_t o = 0; o < outer; ++o) {
    int64_t at = 0;  // position along the local split dim
    for (auto [b, e] : rs) {
      const size_t n = size_t((e - b) * inner) * elem;
      const size_t full_off = size_t((o * full_d + b) * inner) * elem;
      const size_t local_off = size_t((o * local_d + at) * inner) * elem;
      if (kExtract)
        std::memcpy(dst + local_off, src + full_off, n);
      else
        std::memcpy(dst + full_off, src + local_off, n);
      at += e - b;
    }
  }
}

}  // namespace

void extract_shard(const ShardSpec& s, int64_t r, const void* full, void* local, size_t elem_size) {
  copy_shard<true>(s, r, static_cast<const char*>(full), static_cast<char*>(local), elem_size);
}

void insert_shard(const ShardSpec& s, int64_t r, const void* local, void* full, size_t elem_size) {
  copy_shard<false>(s, r, static_cast<const char*>(local), static_cast<char*>(full), elem_size);
}

}  // namespace autotp
