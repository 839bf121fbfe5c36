// Parsing tensor_parallel.partition_config the way DeepSpeed's AutoTPConfig.from_dict and
// TPLayerSpec read it (deepspeed/module_inject/autotp_config.py), with two differences that
// only turn silent mistakes into errors: unknown keys and unknown presets are rejected.
#include <algorithm>
#include <cctype>

#include "core/error.hpp"
#include "partition/partition_config.hpp"
#include "partition/regex_match.hpp"

namespace autotp {

using nlohmann::json;

namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
  return out;
}

void reject_unknown_keys(const json& j, const std::vector<std::string>& known,
                         const std::string& where) {
  for (auto it = j.begin(); it != j.end(); ++it)
    if (std::find(known.begin(), known.end(), it.key()) == known.end())
      fail(where, ": unknown key '", it.key(), "' (known keys: ", join(known, ", "),
           "); check its spelling");
}

bool get_bool(const json& j, const char* key, bool dflt, const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) return dflt;
  check(j[key].is_boolean(), where, ".", key, " must be true or false, got ", j[key].dump());
  return j[key].get<bool>();
}

std::vector<std::string> string_list(const json& v, const std::string& field) {
  check(v.is_array(), field, " must be a list of strings, got ", v.dump());
  std::vector<std::string> out;
  for (size_t k = 0; k < v.size(); ++k) {
    check(v[k].is_string(), field, "[", k, "] must be a string, got ", v[k].dump());
    out.push_back(v[k].get<std::string>());
  }
  return out;
}

// TPLayerSpec._validate_shape_format, plus: at least two entries (output dims and input dim).
std::vector<ShapeEntry> parse_shape(const json& v, int pdim, const std::string& field) {
  check(v.is_array(), field, " must be a list such as [3, -1] or [[4096, 1024, 1024], -1], got ",
        v.dump());
  check(v.size() >= 2, field, " ", v.dump(),
        " needs at least two entries: the output dims, then the input dim");
  check(pdim >= 0 && pdim < int(v.size()), field, ": partition_dim ", pdim,
        " is out of range for a shape of ", v.size(), " entries");
  std::vector<ShapeEntry> shape;
  for (size_t k = 0; k < v.size(); ++k) {
    ShapeEntry e;
    if (v[k].is_array()) {
      check(int(k) == pdim, field, " ", v.dump(),
            ": a nested list is only allowed at partition_dim (", pdim, "), found one at index ",
            k);
      check(!v[k].empty(), field, " ", v.dump(), ": the sub-parameter size list is empty");
      for (auto& s : v[k]) {
        check(!s.is_array(), field, " ", v.dump(), ": only one level of nesting is allowed");
        check(s.is_number_integer() && s.get<int64_t>() > 0, field, " ", v.dump(),
              ": sub-parameter sizes must be positive integers, got ", s.dump());
        e.sizes.push_back(s.get<int64_t>());
      }
    } else {
      check(v[k].is_number_integer(), field, " ", v.dump(), ": entry ", k,
            " must be an integer or (at partition_dim) a list of sizes, got ", v[k].dump());
      e.value = v[k].get<int64_t>();
      check(e.value > 0 || e.value == -1, field, " ", v.dump(), ": entry ", k,
            " must be a positive integer or -1 (infer), got ", e.value);
    }
    shape.push_back(e);
  }
  return shape;
}

LayerSpec parse_spec(const json& j, const std::string& origin, const std::string& source) {
  const std::string where = source + ": tensor_parallel.partition_config." + origin;
  check(j.is_object(), where, " must be an object with \"patterns\" and \"partition_type\", got ",
        j.dump());
  reject_unknown_keys(
      j, {"patterns", "partition_type", "shape", "partition_dim", "model_types", "gather_output"},
      where);
  LayerSpec s;
  s.origin = origin;

  check(j.contains("patterns"), where, ": \"patterns\" is missing (a list of regular expressions)");
  s.patterns = string_list(j["patterns"], where + ".patterns");
  check(!s.patterns.empty(), where, ".patterns is empty: the spec would match nothing");
  for (size_t k = 0; k < s.patterns.size(); ++k) {
    try {
      s.regexes.push_back(compile_python_regex(s.patterns[k]));
    } catch (const boost::regex_error& e) {
      fail(where, ".patterns[", k, "] \"", s.patterns[k],
           "\" is not a valid regular expression: ", e.what());
    }
  }

  std::string type = "column";  // DeepSpeed's default
  if (j.contains("partition_type") && !j["partition_type"].is_null()) {
    check(j["partition_type"].is_string(), where,
          ".partition_type must be \"column\", \"row\" or \"skip\", got ",
          j["partition_type"].dump());
    type = lower(j["partition_type"].get<std::string>());
  }
  if (type == "column")
    s.type = PartitionType::Column;
  else if (type == "row")
    s.type = PartitionType::Row;
  else if (type == "skip")
    s.type = PartitionType::Skip;
  else
    fail(where, ".partition_type \"", j["partition_type"].get<std::string>(),
         "\" is not one of \"column\", \"row\", \"skip\"");

  if (j.contains("partition_dim") && !j["partition_dim"].is_null()) {
    check(j["partition_dim"].is_number_integer() && j["partition_dim"].get<int64_t>() >= 0, where,
          ".partition_dim must be a non-negative integer, got ", j["partition_dim"].dump());
    s.partition_dim = int(j["partition_dim"].get<int64_t>());
  }
  if (j.contains("shape") && !j["shape"].is_null())
    s.shape = parse_shape(j["shape"], s.dim(), where + ".shape");
  if (j.contains("model_types") && !j["model_types"].is_null())
    s.model_types = string_list(j["model_types"], where + ".model_types");
  s.gather_output = get_bool(j, "gather_output", false, where);

  // A column layer computes a slice of the outputs, a row layer consumes a slice of the inputs;
  // a partition_dim that says otherwise cannot run (DeepSpeed ignores partition_dim without a
  // shape and fails on a shape mismatch inside the matmul with one).
  if (s.type != PartitionType::Skip) {
    const int last = s.shape.empty() ? 1 : int(s.shape.size()) - 1;
    const std::string of =
        s.shape.empty() ? std::string("the [out, in] weight") : "shape " + shape_to_string(s.shape);
    const std::string out_dims = last == 1 ? "0" : "0 to " + std::to_string(last - 1);
    if (s.type == PartitionType::Column)
      check(s.dim() < last, where, ": a column spec splits an output dim, but partition_dim ",
            s.dim(), " is the input dim of ", of, "; use partition_dim ", out_dims,
            " or partition_type \"row\"");
    else
      check(s.dim() == last, where, ": a row spec splits the input dim, but partition_dim ",
            s.dim(), " is an output dim of ", of, "; use partition_dim ", last,
            " or partition_type \"column\"");
  }
  return s;
}

}  // namespace

std::string partition_type_name(PartitionType t) {
  switch (t) {
    case PartitionType::Column:
      return "column";
    case PartitionType::Row:
      return "row";
    case PartitionType::Skip:
      return "skip";
  }
  return "?";
}

std::string shape_to_string(const std::vector<ShapeEntry>& shape) {
  std::string out = "[";
  for (size_t k = 0; k < shape.size(); ++k) {
    if (k) out += ",";
    if (shape[k].is_list()) {
      out += "[";
      for (size_t i = 0; i < shape[k].sizes.size(); ++i)
        out += (i ? "," : "") + std::to_string(shape[k].sizes[i]);
      out += "]";
    } else {
      out += std::to_string(shape[k].value);
    }
  }
  return out + "]";
}

int LayerSpec::dim() const {
  if (partition_dim) return *partition_dim;
  return type == PartitionType::Column ? 0 : 1;
}

std::string LayerSpec::describe() const {
  std::string d = origin + " " + partition_type_name(type);
  if (!shape.empty() && type != PartitionType::Skip) {
    d += " shape " + shape_to_string(shape);
    if (partition_dim && *partition_dim != (type == PartitionType::Column ? 0 : 1))
      d += " dim " + std::to_string(*partition_dim);
  }
  return d;
}

bool LayerSpec::matches(const std::string& name, const std::string& model_type) const {
  if (!model_types.empty()) {
    const std::string mt = lower(model_type);
    bool any = false;
    for (auto& t : model_types) any = any || lower(t) == mt;
    if (!any) return false;
  }
  for (auto& re : regexes)
    if (python_re_match(re, name)) return true;
  return false;
}

PartitionConfig PartitionConfig::from_json(const json& tp, const std::string& source) {
  PartitionConfig pc;
  pc.source = source;
  if (tp.is_null()) return pc;
  check(tp.is_object(), source, ": tensor_parallel must be an object, got ", tp.dump());
  const std::string where = source + ": tensor_parallel";

  if (tp.contains("autotp_size") && !tp["autotp_size"].is_null()) {
    check(tp["autotp_size"].is_number_integer() && tp["autotp_size"].get<int64_t>() >= 0, where,
          ".autotp_size must be a non-negative integer, got ", tp["autotp_size"].dump());
    pc.autotp_size = tp["autotp_size"].get<int64_t>();
  }
  if (tp.contains("preset_model") && !tp["preset_model"].is_null()) {
    check(tp["preset_model"].is_string(), where, ".preset_model must be a string, got ",
          tp["preset_model"].dump());
    pc.preset_model = lower(tp["preset_model"].get<std::string>());
    auto names = preset_names();
    check(std::find(names.begin(), names.end(), pc.preset_model) != names.end(), where,
          ".preset_model \"", tp["preset_model"].get<std::string>(), "\" is not a preset (",
          join(names, ", "), ")");
  }

  const bool has_pc = tp.contains("partition_config") && !tp["partition_config"].is_null();
  if (has_pc) {
    const json& c = tp["partition_config"];
    const std::string w = where + ".partition_config";
    check(c.is_object(), w, " must be an object, got ", c.dump());
    reject_unknown_keys(c,
                        {"layer_specs", "use_default_specs", "strict_mode", "vocab_parallel",
                         "tp_size", "embedding_partition_dim", "lm_head_patterns"},
                        w);
    pc.use_default_specs = get_bool(c, "use_default_specs", true, w);
    pc.strict_mode = get_bool(c, "strict_mode", false, w);
    pc.vocab_parallel = get_bool(c, "vocab_parallel", false, w);
    if (c.contains("embedding_partition_dim") && !c["embedding_partition_dim"].is_null())
      check(c["embedding_partition_dim"] == 1, w, ".embedding_partition_dim ",
            c["embedding_partition_dim"].dump(),
            " is not supported: a matched embedding is split along hidden (1), as in DeepSpeed; "
            "set \"vocab_parallel\": true to split it along the vocabulary");
    if (c.contains("lm_head_patterns") && !c["lm_head_patterns"].is_null())
      string_list(c["lm_head_patterns"], w + ".lm_head_patterns");  // Phi-3's head is lm_head
    if (c.contains("tp_size") && !c["tp_size"].is_null())           // DeepSpeed overrides it too
      check(c["tp_size"].is_number_integer(), w, ".tp_size must be an integer, got ",
            c["tp_size"].dump());
    if (c.contains("layer_specs") && !c["layer_specs"].is_null()) {
      check(c["layer_specs"].is_array(), w, ".layer_specs must be a list of specs, got ",
            c["layer_specs"].dump());
      for (size_t i = 0; i < c["layer_specs"].size(); ++i)
        pc.specs.push_back(
            parse_spec(c["layer_specs"][i], "layer_specs[" + std::to_string(i) + "]", source));
    }
  }
  // TPTrainingConfig.get_partition_config_object: the preset alone, or the user's specs merged
  // before the preset's when use_default_specs (default true), or the user's alone.
  if (!pc.preset_model.empty() && (!has_pc || pc.use_default_specs)) {
    auto preset = preset_specs(pc.preset_model);
    pc.specs.insert(pc.specs.end(), preset.begin(), preset.end());
  }
  return pc;
}

}  // namespace autotp
