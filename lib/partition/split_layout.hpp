#pragma once
// How one spec cuts one [out, in] weight: DeepSpeed's _infer_subparam_logical_shapes (layers.py)
// turned into row or column ranges of the stored weight.
//
// `shape` views the weight as a logical tensor [d0, ..., dk-1, in] whose output dims multiply to
// `out`. Splitting logical dim p < k into sub-parameters s_j, each cut into tp pieces, gives rank r
// rows that are contiguous runs of the stored weight: for every index of the dims before p and
// every sub-parameter j, the r-th piece of s_j * (product of the output dims after p) rows. So
// the split is `parts` along dim 0, each cut into tp equal pieces. Splitting the last logical dim
// (the input dim) is a column split with the sub-parameter sizes as parts.
#include <cstdint>
#include <string>
#include <vector>

#include "partition/partition_config.hpp"

namespace autotp {

struct SplitLayout {
  int split_dim = 0;               // 0: rows (outputs), 1: columns (inputs) of the weight
  std::vector<int64_t> parts;      // sizes along split_dim, each cut into tp pieces
  std::vector<int64_t> sub_sizes;  // the logical sub-parameter sizes at partition_dim
  std::vector<int64_t> logical;    // the resolved logical shape
};

// Resolves `spec` against a 2-D weight. Throws Error starting with `where` (which names the
// file, the spec and the weight) on every error case of the reference.
SplitLayout resolve_split(const LayerSpec& spec, const std::vector<int64_t>& weight,
                          const std::string& where);

std::string dims_to_string(const std::vector<int64_t>& v);  // "[5120, 1280, 1280]"

}  // namespace autotp
