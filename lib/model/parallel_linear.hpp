#pragma once
// A linear layer y = x W^T (W [out, in], no bias) split the way its ShardSpec says, Megatron
// style, plus the layout conversions between its producer, the GEMM and its consumer.
//   column (split_dim 0): x R -> y S(parts)        backward: dx partial -> all-reduce (full)
//   row    (split_dim 1): x S(parts) -> y P -> all-reduce -> R    backward: identity, dx S
//   replicated:           x R -> y R               backward: dx full from full dy
// A "site" is one use of a linear in the model: its input arrives in layout `src` and its
// consumer wants layout `dst`; conversions are inserted where they differ from the GEMM's.
#include <cstdint>

#include "model/param_layout.hpp"
#include "model/tp_layout.hpp"

namespace autotp {

struct LinearSite {
  size_t w_offset = 0;           // the weight's offset in the flat params (and grads) buffer
  int64_t out = 0, in = 0;       // global weight shape
  int split = -1;                // -1 replicated, 0 column, 1 row (-1 whenever tp == 1)
  Layout in_layout, out_layout;  // what the GEMM consumes / produces (row: after all-reduce)
  Layout src, dst;               // what the site receives / must deliver

  // `spec` gives the split; src/dst as above.
  static LinearSite make(const ParamSlot& slot, int64_t tp, const Layout& src, const Layout& dst);
  int64_t out_local(int64_t tp) const { return split == 0 ? out / tp : out; }
  int64_t in_local(int64_t tp) const { return split == 1 ? in / tp : in; }
  bool converts_input() const { return src != in_layout; }
  bool converts_output() const { return out_layout != dst; }
  // Whether the GEMM writes y directly (no all-reduce, no layout conversion after it): then
  // linear_forward honors y's Use, elsewhere y is fp32 (Any).
  bool writes_y() const { return split != 1 && !converts_output(); }
  Use y_use(Use use) const { return writes_y() ? use : Use::Any; }
};

// Forward: y (dst) = convert(x (src)) W^T. `xin` receives the converted input when
// converts_input() (it is what the backward needs; otherwise the backward uses x itself);
// `tmp` holds the GEMM output when converts_output(). Returns the GEMM input pointer.
// `use` is y's Use (kernels/backend.hpp), honored as s.y_use(use).
const float* linear_forward(Backend& be, TpGroup& g, const LinearSite& s, const float* W,
                            const float* x, int64_t N, float* xin, float* tmp, float* y,
                            Use use = Use::Any);

// Backward: dW (+)= dy^T xin (added into when dW_accumulate, else overwritten, with the Use
// dW_use: Backend::linear_backward_gemms); dx (src layout,
// overwritten) = the input gradient, FULL when src is R. dy is in dst layout; tmp_dy and tmp_dx
// are scratch of the GEMM's output/input widths. `use` is dx's Use, holding only where the GEMM
// writes dx directly (as in the forward).
void linear_backward(Backend& be, TpGroup& g, const LinearSite& s, const float* W, float* dW,
                     bool dW_accumulate, const float* dy, const float* xin, int64_t N,
                     float* tmp_dy, float* tmp_dx, float* dx, Use use = Use::Any,
                     Use dW_use = Use::Any);

}  // namespace autotp
