#include "config/ds_config.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>

#include "core/error.hpp"

namespace autotp {

using nlohmann::json;

namespace {

// Reads fields of one JSON object; every message names the file and the dotted field.
class Fields {
 public:
  Fields(const json& j, std::string source, std::string prefix)
      : j_(j), source_(std::move(source)), prefix_(std::move(prefix)) {}

  std::string path(const char* key) const { return prefix_ + key; }

  // The value, or nullptr when absent, null or "auto" (left for the command line to decide).
  const json* get(const char* key) const {
    if (!j_.is_object() || !j_.contains(key)) return nullptr;
    const json& v = j_[key];
    if (v.is_null() || (v.is_string() && v.get<std::string>() == "auto")) return nullptr;
    return &v;
  }
  [[noreturn]] void bad(const char* key, const std::string& want) const {
    fail(source_, ": field '", path(key), "' must be ", want, ", got ", j_[key].dump());
  }
  void integer(const char* key, int64_t& out, int64_t min) const {
    if (auto v = get(key)) {
      if (!v->is_number_integer() || v->get<int64_t>() < min)
        bad(key, min > 0 ? "a positive integer or \"auto\"" : "a non-negative integer");
      out = v->get<int64_t>();
    }
  }
  void number(const char* key, double& out, double min = -1e300) const {
    if (auto v = get(key)) {
      if (!v->is_number() || v->get<double>() < min)
        bad(key, min > -1e300 ? "a non-negative number" : "a number");
      out = v->get<double>();
    }
  }
  void boolean(const char* key, bool& out) const {
    if (auto v = get(key)) {
      if (!v->is_boolean()) bad(key, "true or false");
      out = v->get<bool>();
    }
  }
  void string(const char* key, std::string& out) const {
    if (auto v = get(key)) {
      if (!v->is_string()) bad(key, "a string");
      out = v->get<std::string>();
    }
  }
  Fields object(const char* key) const {
    static const json empty = json::object();
    if (auto v = get(key)) {
      if (!v->is_object()) bad(key, "an object");
      return Fields(*v, source_, path(key) + ".");
    }
    return Fields(empty, source_, path(key) + ".");
  }
  bool has(const char* key) const { return get(key) != nullptr; }
  bool is_auto(const char* key) const {
    return j_.is_object() && j_.contains(key) && j_[key] == "auto";
  }

 private:
  const json& j_;
  std::string source_, prefix_;
};

std::string lower(std::string s) {
  for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

DsConfig DsConfig::from_json(const json& j, const std::string& source) {
  check(j.is_object(), source, ": a DeepSpeed config must be a JSON object");
  DsConfig c;
  c.source = source;
  c.raw = j;
  Fields top(j, source, "");

  Fields tp = top.object("tensor_parallel");
  if (j.contains("tensor_parallel") && j["tensor_parallel"].is_object())
    c.tensor_parallel = j["tensor_parallel"];
  tp.integer("autotp_size", c.autotp_size, 0);
  top.integer("data_parallel_size", c.data_parallel_size, 1);

  int64_t stage = 0;
  top.object("zero_optimization").integer("stage", stage, 0);
  check(stage <= 2, source, ": field 'zero_optimization.stage' is ", stage,
        ": autotp implements ZeRO stages 0-2 (stage 3 does not combine with AutoTP); use 2");
  c.zero_stage = int(stage);

  top.integer("train_batch_size", c.train_batch_size, 1);
  top.integer("train_micro_batch_size_per_gpu", c.train_micro_batch_size_per_gpu, 1);
  top.integer("gradient_accumulation_steps", c.gradient_accumulation_steps, 1);
  top.number("gradient_clipping", c.gradient_clipping, 0.0);
  top.integer("steps_per_print", c.steps_per_print, 1);
  if (top.has("seed")) {
    top.integer("seed", c.seed, 0);
    c.has_seed = true;
  }
  top.object("bf16").boolean("enabled", c.bf16);
  top.object("bfloat16").boolean("enabled", c.bf16);  // DeepSpeed's older spelling
  bool fp16 = false;
  top.object("fp16").boolean("enabled", fp16);
  check(!fp16, source,
        ": field 'fp16.enabled' is true: autotp trains in bf16 or fp32; set \"bf16\": "
        "{\"enabled\": true} instead");

  if (top.has("optimizer")) {
    c.has_optimizer = true;
    Fields opt = top.object("optimizer");
    Fields par = opt.object("params");
    std::string type = "AdamW";
    opt.string("type", type);
    check(lower(type) == "adamw" || lower(type) == "adam", source, ": field 'optimizer.type' is \"",
          type, "\": autotp implements Adam and AdamW (both with decoupled weight decay)");
    bool adam_w_mode = true;
    par.boolean("adam_w_mode", adam_w_mode);
    check(adam_w_mode, source,
          ": field 'optimizer.params.adam_w_mode' is false (L2-coupled Adam): autotp implements "
          "decoupled weight decay only (DeepSpeed's default); remove the field");
    OptimizerConfig& o = c.optimizer;
    o.type = type;
    o.lr = 1e-3;  // FusedAdam's defaults, which DeepSpeed uses for a missing param
    o.weight_decay = 0.0;
    par.number("lr", o.lr, 0.0);
    par.number("eps", o.eps, 0.0);
    par.number("weight_decay", o.weight_decay, 0.0);
    if (auto b = par.get("betas")) {
      if (!b->is_array() || b->size() != 2 || !(*b)[0].is_number() || !(*b)[1].is_number() ||
          (*b)[0].get<double>() < 0 || (*b)[0].get<double>() >= 1 || (*b)[1].get<double>() < 0 ||
          (*b)[1].get<double>() >= 1)
        par.bad("betas", "two numbers in [0, 1) such as [0.9, 0.999]");
      o.beta1 = (*b)[0].get<double>();
      o.beta2 = (*b)[1].get<double>();
    }
  }

  if (top.has("scheduler")) {
    Fields sch = top.object("scheduler");
    Fields par = sch.object("params");
    SchedulerConfig& s = c.scheduler;
    sch.string("type", s.type);
    check(s.type == "WarmupLR" || s.type == "WarmupDecayLR" || s.type == "WarmupCosineLR", source,
          ": field 'scheduler.type' is \"", s.type,
          "\": autotp implements WarmupLR, WarmupDecayLR and WarmupCosineLR");
    par.integer("warmup_num_steps", s.warmup_num_steps, 0);
    par.integer("total_num_steps", s.total_num_steps, 1);
    par.number("warmup_min_ratio", s.warmup_min_ratio, 0.0);
    par.number("cos_min_ratio", s.cos_min_ratio, 0.0);
    par.number("warmup_min_lr", s.warmup_min_lr, 0.0);
    par.number("warmup_max_lr", s.warmup_max_lr, 0.0);
    par.string("warmup_type", s.warmup_type);
    check(s.warmup_type == "log" || s.warmup_type == "linear", source,
          ": field 'scheduler.params.warmup_type' must be \"log\" or \"linear\", got \"",
          s.warmup_type, "\"");
    if (s.type == "WarmupLR" || s.type == "WarmupDecayLR") {
      // These two ignore the optimizer's lr: they warm from warmup_min_lr to warmup_max_lr
      // (default 0.001). The schedule runs on ratios of optimizer.lr, so carry them over.
      double max_lr = 0.001;
      if (par.is_auto("warmup_max_lr"))
        max_lr = c.optimizer.lr;
      else
        par.number("warmup_max_lr", max_lr, 0.0);
      s.warmup_max_lr = max_lr;
      c.optimizer.lr = max_lr;
      s.warmup_min_ratio = max_lr > 0 ? s.warmup_min_lr / max_lr : 0.0;
      check(s.warmup_min_lr <= max_lr, source, ": field 'scheduler.params.warmup_min_lr' (",
            s.warmup_min_lr, ") is larger than warmup_max_lr (", max_lr, ")");
    }
    if (s.type != "WarmupLR")
      check(s.total_num_steps > 0, source,
            ": field 'scheduler.params.total_num_steps' is needed by ", s.type,
            " (the step at which the decay ends)");
  }

  if (j.contains("activation_checkpointing") && !j["activation_checkpointing"].is_null()) {
    Fields ac = top.object("activation_checkpointing");
    ActivationCheckpointingConfig& a = c.activation_checkpointing;
    a.enabled = true;
    static const char* known[] = {"partition_activations",           "cpu_checkpointing",
                                  "contiguous_memory_optimization",  "number_checkpoints",
                                  "synchronize_checkpoint_boundary", "profile"};
    for (auto& [key, v] : j["activation_checkpointing"].items()) {
      (void)v;
      check(std::find_if(std::begin(known), std::end(known),
                         [&](const char* k) { return key == k; }) != std::end(known),
            source, ": field 'activation_checkpointing.", key,
            "' is not one of DeepSpeed's activation_checkpointing keys (partition_activations, "
            "cpu_checkpointing, contiguous_memory_optimization, number_checkpoints, "
            "synchronize_checkpoint_boundary, profile)");
    }
    // The keys autotp cannot honour when true, and why.
    auto only_false = [&](const char* key, const char* why) {
      bool on = false;
      ac.boolean(key, on);
      check(!on, source, ": field '", ac.path(key), "' is true, which autotp cannot honour: ", why,
            "; set it to false or remove it");
    };
    only_false("partition_activations",
               "autotp's checkpoints (each layer's input) stay whole on every TP rank");
    only_false("cpu_checkpointing", "autotp keeps the checkpoints in device memory");
    only_false("profile", "autotp times the step with autotp-bench --profile instead");
    bool contiguous = false;
    ac.boolean("contiguous_memory_optimization", contiguous);  // honoured either way
    ac.boolean("synchronize_checkpoint_boundary", a.synchronize_checkpoint_boundary);
    ac.integer("number_checkpoints", a.number_checkpoints, 1);
  }
  return c;
}

std::string DsConfig::optimizer_defaults_note() const {
  const OptimizerConfig& o = optimizer;
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s with lr %g, betas [%g, %g], eps %g, weight_decay %g",
                o.type.c_str(), o.lr, o.beta1, o.beta2, o.eps, o.weight_decay);
  return source + " has no optimizer block, so autotp trains with " + buf +
         " (add \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": ...}} to choose; "
         "--lr sets the lr)";
}

void ActivationCheckpointingConfig::check_layers(int64_t num_layers,
                                                 const std::string& source) const {
  check(!enabled || number_checkpoints == 0 || number_checkpoints == num_layers, source,
        ": field 'activation_checkpointing.number_checkpoints' is ", number_checkpoints,
        ", but autotp checkpoints every layer's input (full layer recompute): the model has ",
        num_layers, " layers, so write ", num_layers, " or null");
}

DsConfig DsConfig::from_file(const std::string& path) {
  std::ifstream f(path);
  check(bool(f), path, ": cannot open the DeepSpeed config");
  std::stringstream text;
  text << f.rdbuf();
  json j;
  try {
    j = json::parse(text.str(), nullptr, true, /*ignore_comments=*/true);
  } catch (const json::exception& e) {
    fail(path, ": not valid JSON (", e.what(), ")");
  }
  return from_json(j, path);
}

void DsConfig::resolve_batch(int64_t dp) {
  check(dp >= 1, source, ": the data-parallel size must be at least 1, got ", dp);
  int64_t &tb = train_batch_size, &micro = train_micro_batch_size_per_gpu,
          &gas = gradient_accumulation_steps;
  check(tb > 0 || micro > 0, source,
        ": give train_batch_size or train_micro_batch_size_per_gpu (or both)");
  if (tb > 0 && micro > 0 && gas == 0) {
    check(tb % (micro * dp) == 0, source, ": train_batch_size ", tb,
          " is not a multiple of train_micro_batch_size_per_gpu ", micro, " x dp ", dp);
    gas = tb / (micro * dp);
  } else if (tb > 0 && micro == 0) {
    if (gas == 0) gas = 1;
    check(tb % (gas * dp) == 0, source, ": train_batch_size ", tb,
          " is not a multiple of gradient_accumulation_steps ", gas, " x dp ", dp);
    micro = tb / (gas * dp);
  } else if (tb == 0) {
    if (gas == 0) gas = 1;
    tb = micro * gas * dp;
  }
  check(tb == micro * gas * dp, source, ": train_batch_size ", tb,
        " != train_micro_batch_size_per_gpu ", micro, " x gradient_accumulation_steps ", gas,
        " x dp ", dp, " (= ", micro * gas * dp, ")");
}

}  // namespace autotp
