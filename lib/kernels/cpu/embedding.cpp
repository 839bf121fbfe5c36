// Token embedding lookup over a (possibly vocab- or hidden-sharded) table.
#include <cstring>

#include "kernels/cpu/cpu_backend.hpp"

namespace autotp {

namespace {
// The local table row of token id, or -1 when no block of this shard holds it.
int64_t local_row(int64_t id, const std::vector<VocabBlock>& blocks) {
  for (auto& b : blocks)
    if (id >= b.begin && id < b.begin + b.len) return b.col + id - b.begin;
  return -1;
}
}  // namespace

void CpuBackend::embedding_forward(const int32_t* ids, int64_t n, const float* table, int64_t dim,
                                   const std::vector<VocabBlock>& blocks, float* out) {
  // out[i, :] += E[id_i, :] when this shard holds row id_i (vocab-parallel: the other ranks'
  // rows contribute 0 here and arrive through the all-reduce of the partial sums).
  for (int64_t i = 0; i < n; ++i) {
    int64_t row = local_row(ids[i], blocks);
    if (row < 0) continue;
    const float* e = table + row * dim;
    float* o = out + i * dim;
    for (int64_t j = 0; j < dim; ++j) o[j] += e[j];
  }
}

void CpuBackend::embedding_backward(const int32_t* ids, int64_t n, const float* dout, int64_t dim,
                                    const std::vector<VocabBlock>& blocks, int64_t padding_idx,
                                    float* dtable) {
  // dE[id_i, :] += dout[i, :]; nn.Embedding(padding_idx) gives the padding row no gradient.
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] == padding_idx) continue;
    int64_t row = local_row(ids[i], blocks);
    if (row < 0) continue;
    const float* g = dout + i * dim;
    float* d = dtable + row * dim;
    for (int64_t j = 0; j < dim; ++j) d[j] += g[j];
  }
}

}  // namespace autotp
