#include "partition/plan_report.hpp"

#include <algorithm>
#include <cstdio>
#include <map>

#include "core/strings.hpp"

namespace autotp {

namespace {

std::string dims(const std::vector<int64_t>& v) {
  std::string out = "[";
  for (size_t k = 0; k < v.size(); ++k) out += (k ? "," : "") + std::to_string(v[k]);
  return out + "]";
}

int64_t layer_of(const std::string& name) {
  static const std::string pre = "model.layers.";
  if (name.compare(0, pre.size(), pre) != 0) return -1;
  size_t end = name.find('.', pre.size());
  return std::stoll(name.substr(pre.size(), end - pre.size()));
}

// Rank r's ranges along the split dim, "[0,768)+[3072,3328)".
std::string rank_ranges(const ShardSpec& s, int64_t r) {
  std::string out;
  for (auto [b, e] : s.ranges(r))
    out += (out.empty() ? "" : "+") + ("[" + std::to_string(b) + "," + std::to_string(e) + ")");
  return out;
}

struct Table {
  std::vector<std::vector<std::string>> rows;   // cells
  std::vector<std::vector<std::string>> extra;  // lines printed under each row
  void print(std::ostream& os) const {
    std::vector<size_t> w;
    for (auto& r : rows)
      for (size_t c = 0; c < r.size(); ++c) {
        if (w.size() <= c) w.push_back(0);
        w[c] = std::max(w[c], r[c].size());
      }
    for (size_t i = 0; i < rows.size(); ++i) {
      std::string line;
      for (size_t c = 0; c < rows[i].size(); ++c) {
        const bool numeric = c == 3;  // counts read best right-aligned
        std::string cell = rows[i][c];
        std::string pad(w[c] - cell.size(), ' ');
        line +=
            (c ? "  " : "") + (numeric ? pad + cell : cell + (c + 1 < rows[i].size() ? pad : ""));
      }
      os << line << "\n";
      for (auto& x : extra[i]) os << "    " << x << "\n";
    }
  }
};

}  // namespace

void print_plan_report(std::ostream& os, const PartitionPlan& plan, const PartitionConfig& pc,
                       const ModelConfig& mc, const PlanReportOptions& opt) {
  const int64_t tp = plan.tp, dp = opt.dp;

  os << "model  " << opt.model_label << ": model_type " << mc.model_type << ", "
     << mc.num_hidden_layers << " layers, hidden " << mc.hidden_size << ", "
     << mc.num_attention_heads << " query / " << mc.num_key_value_heads << " KV heads of "
     << mc.head_dim << ", intermediate " << mc.intermediate_size << ", vocab " << mc.vocab_size
     << (mc.tie_word_embeddings ? ", tied embeddings" : ", untied lm_head") << "; "
     << with_commas(mc.num_parameters()) << " parameters\n";
  if (!opt.weights_label.empty()) os << "weights " << opt.weights_label << "\n";
  size_t user = 0;
  for (auto& s : pc.specs) user += s.origin.compare(0, 7, "preset ") != 0;
  os << "config " << opt.config_label << ": tp " << tp << " x dp " << dp << " = " << tp * dp
     << " ranks, ZeRO stage " << opt.zero_stage << ", device " << opt.device << "; " << user
     << " layer spec" << (user == 1 ? "" : "s") << " + " << (pc.specs.size() - user)
     << " from preset " << (pc.preset_model.empty() ? "(none)" : pc.preset_model)
     << ", vocab_parallel " << (pc.vocab_parallel ? "on" : "off") << ", strict_mode "
     << (pc.strict_mode ? "on" : "off") << "\n\n";

  os << "Each TP rank holds the local shape (its elements per rank); ranges are TP rank r's rows "
        "or columns of the global weight.\n\n";

  // Per-layer signatures, to print a run of identical layers once.
  std::map<int64_t, std::string> sig;
  for (auto& s : plan.params) {
    int64_t l = layer_of(s.name);
    if (l >= 0)
      sig[l] += layer_key(s.name) + "|" + s.rule + "|" + dims(s.shape) + "|" +
                std::to_string(s.split_dim) + "|" + dims(s.parts) + ";";
  }

  Table t;
  t.rows.push_back({"parameter", "global", "local", "elements", "rule"});
  t.extra.push_back({});
  auto add_note_row = [&](const std::string& text) {
    t.rows.push_back({text});
    t.extra.push_back({});
  };
  int64_t shown_layer = -1, run_from = -1, run_to = -1, current = -1;
  auto flush_run = [&] {
    if (run_from < 0) return;
    add_note_row(run_from == run_to
                     ? "model.layers." + std::to_string(run_from) + ".*: same as layer " +
                           std::to_string(shown_layer)
                     : "model.layers." + std::to_string(run_from) + "-" + std::to_string(run_to) +
                           ".*: same as layer " + std::to_string(shown_layer));
    run_from = run_to = -1;
  };
  for (auto& s : plan.params) {
    const int64_t l = layer_of(s.name);
    if (l != current) {  // entering a new layer (or leaving the layers)
      current = l;
      if (l >= 0 && shown_layer >= 0 && !opt.all_layers && sig[l] == sig[shown_layer]) {
        if (run_from < 0) run_from = l;
        run_to = l;
      } else {
        flush_run();
        if (l >= 0) shown_layer = l;
      }
    }
    if (l >= 0 && run_from >= 0 && l >= run_from) continue;
    t.rows.push_back(
        {s.name, dims(s.shape), dims(s.local_shape()), with_commas(s.local_numel()), s.rule});
    std::vector<std::string> extra;
    if (!s.replicated()) {
      const std::string label = s.split_dim == 0 ? "rows " : "cols ";
      std::string line = label;
      for (int64_t r = 0; r < tp; ++r) {
        std::string piece = "r" + std::to_string(r) + " " + rank_ranges(s, r);
        if (line.size() + piece.size() > 96 && line != label) {
          extra.push_back(line);
          line = std::string(label.size(), ' ');
        }
        line += (line.back() == ' ' ? "" : "  ") + piece;
      }
      extra.push_back(line);
    }
    t.extra.push_back(extra);
  }
  flush_run();
  t.print(os);

  os << "\nunmatched (2-D weights no spec matched; replicated on every TP rank): ";
  if (plan.unmatched.empty()) {
    os << "none\n";
  } else {
    os << plan.unmatched.size() << "\n";
    for (auto& n : group_layer_names(plan.unmatched)) os << "  " << n << "\n";
  }
  os << "\nnotes:" << (plan.notes.empty() ? " none\n" : "\n");
  for (auto& n : plan.notes) os << "  - " << n << "\n";
}

}  // namespace autotp
