#include "partition/split_layout.hpp"

#include "core/error.hpp"

namespace autotp {

namespace {

int64_t product(const std::vector<int64_t>& v, size_t from, size_t to) {
  int64_t n = 1;
  for (size_t k = from; k < to; ++k) n *= v[k];
  return n;
}

}  // namespace

std::string dims_to_string(const std::vector<int64_t>& v) {
  std::string out = "[";
  for (size_t k = 0; k < v.size(); ++k) out += (k ? ", " : "") + std::to_string(v[k]);
  return out + "]";
}

SplitLayout resolve_split(const LayerSpec& spec, const std::vector<int64_t>& w,
                          const std::string& where) {
  const int64_t rows = w[0], cols = w[1];
  SplitLayout l;
  if (spec.shape.empty()) {  // a plain column (rows) or row (columns) split
    l.split_dim = spec.type == PartitionType::Column ? 0 : 1;
    l.parts = {w[size_t(l.split_dim)]};
    l.sub_sizes = l.parts;
    l.logical = w;
    return l;
  }

  // The logical dims: fixed sizes, or -1 = inferred. At partition_dim an int n > 0 is a count of
  // equal sub-parameters (its size is inferred) and a list gives the sizes.
  const auto& shape = spec.shape;
  const size_t k = shape.size(), p = size_t(spec.dim());
  const std::string ss = shape_to_string(shape);
  std::vector<int64_t> d(k, -1);
  int64_t count = 0;
  for (size_t i = 0; i < k; ++i) {
    if (i == p && shape[i].is_list()) {
      for (auto s : shape[i].sizes) d[i] = (d[i] < 0 ? 0 : d[i]) + s;
    } else if (i == p) {
      count = shape[i].value > 0 ? shape[i].value : 0;
    } else {
      d[i] = shape[i].value;
    }
  }
  // With only the output dim and the input dim, the sub-parameter sizes must add up to the rows;
  // say so directly (the reference reaches the same verdict through a mismatched inferred dim).
  if (k == 2 && p == 0 && shape[0].is_list())
    check(d[0] == rows, where, ": the sub-parameter sizes ", dims_to_string(shape[0].sizes),
          " sum to ", d[0], " but the weight has ", rows, " rows");

  std::vector<size_t> unknown;
  for (size_t i = 0; i < k; ++i)
    if (d[i] < 0) unknown.push_back(i);
  if (unknown.size() == 1) {
    int64_t known = 1;
    for (size_t i = 0; i < k; ++i)
      if (d[i] > 0) known *= d[i];
    check((rows * cols) % known == 0, where, ": shape ", ss, " cannot be inferred: ", rows * cols,
          " elements are not a multiple of ", known);
    d[unknown[0]] = rows * cols / known;
  } else if (unknown.size() > 1) {
    check(k == 2, where, ": shape ", ss,
          " has several inferred (-1) dims and more than two entries, so it is ambiguous");
    for (auto i : unknown) d[i] = w[i];
  }
  check(d[k - 1] == cols, where, ": shape ", ss, " resolves to ", dims_to_string(d),
        " whose last dim ", d[k - 1], " must equal the weight's input dim ", cols);
  check(product(d, 0, k - 1) == rows, where, ": shape ", ss, " resolves to ", dims_to_string(d),
        " whose output dims multiply to ", product(d, 0, k - 1), " but the weight has ", rows,
        " rows");
  if (count > 0) {
    check(d[p] % count == 0, where, ": ", p + 1 == k ? "the input dim " : "the rows ", d[p],
          " are not divisible by the ", count, " sub-parameters of shape ", ss);
    l.sub_sizes.assign(size_t(count), d[p] / count);
  } else if (shape[p].is_list()) {
    l.sub_sizes = shape[p].sizes;  // d[p] is their sum
  } else {
    l.sub_sizes = {d[p]};
  }
  l.logical = d;

  if (p + 1 == k) {  // the input dim: a column split of the stored weight
    l.split_dim = 1;
    l.parts = l.sub_sizes;
    return l;
  }
  l.split_dim = 0;
  const int64_t outer = product(d, 0, p), inner = product(d, p + 1, k - 1);
  for (int64_t o = 0; o < outer; ++o)
    for (auto s : l.sub_sizes) l.parts.push_back(s * inner);
  return l;
}

}  // namespace autotp
