#include "model/param_layout.hpp"

#include "core/error.hpp"

namespace autotp {

const ParamSlot& ParamLayout::at(const std::string& name) const {
  for (auto& s : slots)
    if (s.name == name) return s;
  fail("parameter '", name, "' is not in this model");
}

ParamLayout ParamLayout::from_plan(const PartitionPlan& plan) {
  ParamLayout l;
  for (auto& spec : plan.params) {
    ParamSlot s;
    s.name = spec.name;
    s.spec = &spec;
    s.offset = l.total;
    s.numel = size_t(spec.local_numel());
    s.tp_replicated = spec.replicated();
    s.decay = spec.shape.size() == 2;  // matrices and embeddings decay, norm weights do not
    l.total += s.numel;
    l.slots.push_back(s);
  }
  return l;
}

}  // namespace autotp
