// build_plan: the specs applied to every parameter of the model, DeepSpeed's precedence and
// error cases first, then the checks that make a plan the forward pass can run.
#include "partition/plan.hpp"

#include <algorithm>
#include <map>

#include "core/error.hpp"
#include "partition/gqa_check.hpp"
#include "partition/split_layout.hpp"

namespace autotp {

namespace {

// Notes about per-layer parameters are merged across layers: one line per kind, naming
// model.layers.{0-39}.x instead of forty lines.
class NoteSet {
 public:
  void add(const std::string& name, const std::string& text) {  // text: "{}" = the name
    const std::string key = layer_key(name) + '\x1f' + text;
    auto it = index_.find(key);
    if (it == index_.end()) {
      it = index_.emplace(key, notes_.size()).first;
      notes_.push_back({text, {}});
    }
    notes_[it->second].names.push_back(name);
  }
  void add_plain(const std::string& text) { notes_.push_back({text, {}}); }
  std::vector<std::string> finish() const {
    std::vector<std::string> out;
    for (auto& n : notes_) {
      std::string t = n.text;
      const size_t at = t.find("{}");
      if (at != std::string::npos) t.replace(at, 2, group_layer_names(n.names).front());
      out.push_back(t);
    }
    return out;
  }

 private:
  struct Note {
    std::string text;
    std::vector<std::string> names;
  };
  std::vector<Note> notes_;
  std::map<std::string, size_t> index_;
};

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
  return out;
}

// Megatron pairs: a column-parallel layer's output slice feeds the row-parallel layer that
// consumes exactly that slice. Any other combination still computes the same function (the
// model converts the activation between the two layouts, see model/tp_layout.hpp) but pays an
// all-gather and holds the whole activation, so the plan says so.
void note_unpaired(const PartitionPlan& plan, const ModelConfig& mc, NoteSet& notes) {
  auto pair = [&](const std::string& a, const std::string& b, const char* what) {
    const ShardSpec &sa = plan.at(a), &sb = plan.at(b);
    const bool both_split = sa.split_dim == 0 && sb.split_dim == 1;
    const bool both_whole = sa.split_dim < 0 && sb.split_dim < 0;
    if (both_split || both_whole) return;
    const std::string b_short = b.substr(b.rfind('.', b.size() - 8) + 1);
    notes.add(a, "{} is " + sa.rule + (sa.split_dim == 1 ? " (split along its input)" : "") +
                     " but " + b_short + " is " + sb.rule +
                     (sb.split_dim == 0 ? " (split along its output)" : "") + ": the " + what +
                     " runs with its activation all-gathered between them. Split the pair "
                     "together (the first column, the second row) or replicate both");
  };
  for (int64_t l = 0; l < mc.num_hidden_layers; ++l) {
    const std::string pre = "model.layers." + std::to_string(l) + ".";
    pair(pre + "self_attn.qkv_proj.weight", pre + "self_attn.o_proj.weight", "attention");
    pair(pre + "mlp.gate_up_proj.weight", pre + "mlp.down_proj.weight", "MLP");
  }
}

}  // namespace

const ShardSpec* PartitionPlan::find(const std::string& name) const {
  for (auto& s : params)
    if (s.name == name) return &s;
  return nullptr;
}

const ShardSpec& PartitionPlan::at(const std::string& name) const {
  const ShardSpec* s = find(name);
  check(s != nullptr, "parameter '", name, "' is not in the partition plan");
  return *s;
}

namespace {

PartitionPlan plan_at(const PartitionConfig& pc, const ModelConfig& mc, int64_t tp) {
  const std::string src = pc.source.empty() ? std::string("tensor_parallel") : pc.source;
  check(tp >= 1, src, ": the TP size must be at least 1, got ", tp);
  PartitionPlan plan;
  plan.tp = tp;
  NoteSet notes;
  std::vector<int64_t> matched(pc.specs.size(), 0), decided(pc.specs.size(), 0);

  for (const auto& p : mc.parameters()) {
    ShardSpec s;
    s.name = p.name;
    s.shape = p.shape;
    s.tp = tp;
    if (p.shape.size() != 2) {  // norms: never sharded (DeepSpeed only replaces linears)
      s.rule = "1-D -> replicated";
      plan.params.push_back(s);
      continue;
    }
    std::vector<size_t> hits;
    for (size_t i = 0; i < pc.specs.size(); ++i)
      if (pc.specs[i].matches(p.name, mc.model_type)) {
        hits.push_back(i);
        ++matched[i];
      }

    const bool embed = p.name == "model.embed_tokens.weight", head = p.name == "lm_head.weight";
    if (pc.vocab_parallel && (embed || head)) {
      check(mc.vocab_size % tp == 0, src, ": vocab_parallel splits ", p.name, " ",
            dims_to_string(p.shape), " along the vocabulary, but vocab_size ", mc.vocab_size,
            " is not divisible by tp ", tp,
            "; choose a tp that divides the vocabulary or set \"vocab_parallel\": false");
      s.split_dim = 0;
      s.parts = {mc.vocab_size};
      s.type = PartitionType::Column;
      s.rule = "vocab_parallel";
      if (!hits.empty())
        notes.add(p.name, "vocab_parallel supersedes " + pc.specs[hits[0]].describe() + " for {}");
      plan.params.push_back(s);
      continue;
    }
    if (hits.empty()) {
      s.rule = "unmatched -> replicated";
      plan.unmatched.push_back(p.name);
      plan.params.push_back(s);
      continue;
    }

    const LayerSpec& spec = pc.specs[hits[0]];
    ++decided[hits[0]];
    if (hits.size() > 1) {
      std::vector<std::string> others;
      for (size_t k = 1; k < hits.size(); ++k) others.push_back(pc.specs[hits[k]].origin);
      notes.add(p.name, "{} matches " + spec.origin + " and also " + join(others, ", ") +
                            "; the first in order wins, as in DeepSpeed");
    }
    const std::string where =
        src + ": " + spec.origin + " on " + p.name + " " + dims_to_string(p.shape);
    s.type = spec.type;
    s.rule = spec.describe();
    if (spec.type == PartitionType::Skip) {
      plan.params.push_back(s);
      continue;
    }
    if (embed) {  // DeepSpeed splits a matched embedding along hidden
      check(spec.shape.empty(), where,
            ": an embedding takes no shape; it is split along hidden (or along the vocabulary "
            "with \"vocab_parallel\": true)");
      check(mc.hidden_size % tp == 0, where, ": the embedding is split along hidden, but ",
            "hidden_size ", mc.hidden_size, " is not divisible by tp ", tp);
      s.split_dim = 1;
      s.parts = {mc.hidden_size};
      s.rule += " (embedding: split along hidden)";
      plan.params.push_back(s);
      continue;
    }
    const SplitLayout l = resolve_checked(spec, p, mc, tp, where);
    for (auto size : l.sub_sizes)
      check(size % tp == 0, where, ": ",
            l.sub_sizes.size() > 1 ? "sub-parameter size " : "the split dim's size ", size,
            l.sub_sizes.size() > 1 ? " (of " + dims_to_string(l.sub_sizes) + ")" : "",
            " is not divisible by tp ", tp);
    s.split_dim = l.split_dim;
    s.parts = l.parts;
    plan.params.push_back(s);
  }

  if (pc.strict_mode && !plan.unmatched.empty())
    fail(src, ": strict_mode: no layer spec matches these weights: ",
         join(group_layer_names(plan.unmatched), ", "),
         ". Add a spec for each (\"partition_type\": \"skip\" keeps one replicated)");
  if (tp > 1) note_unpaired(plan, mc, notes);
  for (size_t i = 0; i < pc.specs.size(); ++i) {
    if (matched[i] == 0)
      notes.add_plain(pc.specs[i].origin + " (" + join(pc.specs[i].patterns, " ") +
                      ") matches no weight of this model (model_type " + mc.model_type + ")");
    else if (decided[i] == 0)
      notes.add_plain(pc.specs[i].origin +
                      " decides nothing: every weight it matches is taken by " + "an earlier spec");
  }
  if (!plan.unmatched.empty())
    notes.add_plain(std::to_string(plan.unmatched.size()) +
                    " 2-D weights match no spec and are replicated on every TP rank: " +
                    join(group_layer_names(plan.unmatched), ", ") +
                    " (strict_mode makes this an error)");
  plan.notes = notes.finish();
  return plan;
}

// pc with each column spec of qkv_proj and gate_up_proj given the shape that the refusal
// messages tell the user to write (gqa_check.hpp): the config as it will be once fixed.
PartitionConfig with_model_shapes(PartitionConfig pc, const ModelConfig& mc) {
  const std::string qkv = "model.layers.0.self_attn.qkv_proj.weight";
  const std::string gate_up = "model.layers.0.mlp.gate_up_proj.weight";
  for (auto& spec : pc.specs) {
    if (spec.type != PartitionType::Column) continue;
    if (spec.matches(qkv, mc.model_type))
      spec.shape = {ShapeEntry{-1, {mc.q_rows(), mc.kv_rows(), mc.kv_rows()}}, ShapeEntry{}};
    else if (spec.matches(gate_up, mc.model_type))
      spec.shape = {ShapeEntry{2, {}}, ShapeEntry{}};
    else
      continue;
    spec.partition_dim = 0;
  }
  return pc;
}

std::string or_list(const std::vector<int64_t>& v) {
  std::string out;
  for (size_t k = 0; k < v.size(); ++k)
    out += (k == 0 ? "" : k + 1 == v.size() ? " or " : ", ") + std::to_string(v[k]);
  return out;
}

}  // namespace

std::vector<int64_t> plannable_tp_sizes(const PartitionConfig& pc, const ModelConfig& mc) {
  std::vector<int64_t> v;
  for (int64_t t = 1; t <= std::max<int64_t>(1, mc.num_attention_heads); ++t) {
    try {
      plan_at(pc, mc, t);
      v.push_back(t);
    } catch (const Error&) {
    }
  }
  return v;
}

PartitionPlan build_plan(const PartitionConfig& pc, const ModelConfig& mc, int64_t tp) {
  try {
    return plan_at(pc, mc, tp);
  } catch (const Error& e) {
    // A refusal that another tp, or the shape the message asks for, would cure says which tp
    // values then plan, as build_plan itself decides (vocab_parallel and all).
    const std::vector<int64_t> fixed = plannable_tp_sizes(with_model_shapes(pc, mc), mc);
    if (fixed.empty()) throw;
    const bool as_given = !plannable_tp_sizes(pc, mc).empty();
    fail(e.what(),
         as_given ? ". tp values that work for this model under this config: "
                  : ". With that shape, the tp values that work for this model under this config: ",
         or_list(fixed));
  }
}

}  // namespace autotp
