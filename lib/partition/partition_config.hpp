#pragma once
// DeepSpeed AutoTP's tensor_parallel.partition_config, with DeepSpeed's semantics exactly
// (see docs in README "Partition rules"): patterns are Python re.match (anchored at the start,
// not a full match), the first matching spec wins, presets merge after the user's specs.
#include <boost/regex.hpp>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace autotp {

enum class PartitionType { Column, Row, Skip };
std::string partition_type_name(PartitionType t);  // "column", "row", "skip"

// One entry of `shape`: an int (-1 = infer, n > 0 = n equal sub-parameters at partition_dim)
// or, only at partition_dim, a list of unequal sub-parameter sizes.
struct ShapeEntry {
  int64_t value = -1;
  std::vector<int64_t> sizes;  // non-empty = the list form
  bool is_list() const { return !sizes.empty(); }
};

// `shape` as JSON writes it, without spaces: [[5120,1280,1280],-1].
std::string shape_to_string(const std::vector<ShapeEntry>& shape);

struct LayerSpec {
  std::vector<std::string> patterns;
  std::vector<boost::regex> regexes;  // compiled patterns, same order
  PartitionType type = PartitionType::Skip;
  std::optional<int> partition_dim;      // default 0 for column, 1 for row
  std::vector<ShapeEntry> shape;         // empty = not fused
  std::vector<std::string> model_types;  // empty = any
  // DeepSpeed gathers a column layer's output on every rank when set. It changes where outputs
  // are gathered, not what each rank stores, so the plan records it and nothing more.
  bool gather_output = false;
  std::string origin;  // "layer_specs[2]" or "preset phi3 [1]": names the spec in messages

  int dim() const;  // partition_dim or its default
  // "layer_specs[0] column shape [[5120,1280,1280],-1]": the spec as the plan's rule names it.
  std::string describe() const;
  // Python re.match(pattern, name) for any pattern, and model_types (case-insensitive).
  bool matches(const std::string& name, const std::string& model_type) const;
};

struct PartitionConfig {
  std::string source;  // the ds_config file, for messages
  int64_t autotp_size = 0;
  std::string preset_model;  // "" = none
  bool use_default_specs = true;
  bool strict_mode = false;
  // autotp extension: embed_tokens split along vocab (rows) and lm_head column-parallel with a
  // vocab-parallel cross-entropy. DeepSpeed ignores the key; see README.
  bool vocab_parallel = false;
  std::vector<LayerSpec> specs;  // effective order: the user's, then the preset's if merged

  // Parses ds_config["tensor_parallel"]. Throws Error naming the field on anything malformed,
  // including a pattern that does not compile.
  static PartitionConfig from_json(const nlohmann::json& tensor_parallel,
                                   const std::string& source);
  // The built-in specs of a preset ("phi3", "llama", ...), as DeepSpeed defines them.
  static std::vector<LayerSpec> preset_specs(const std::string& preset);
  static std::vector<std::string> preset_names();
};

}  // namespace autotp
