#include "train/memory_plan.hpp"

#include <algorithm>

#include "core/strings.hpp"
#include "dist/size_only_comm.hpp"
#include "model/phi3_model.hpp"
#include "optim/zero_optimizer.hpp"

namespace autotp {

MemoryPlanArgs memory_plan_args(const DsConfig& ds, const ModelConfig& mc,
                                const PartitionPlan& plan, int dp, int64_t B, int64_t T,
                                bool checkpointing, const DeviceSizes& sizes) {
  ds.activation_checkpointing.check_layers(mc.num_hidden_layers, ds.source);
  MemoryPlanArgs a;
  a.model = mc;
  a.plan = plan;
  a.dp = dp;
  a.zero_stage = ds.zero_stage;
  a.optimizer = ds.optimizer;
  a.grad_clip = ds.gradient_clipping;
  a.micro_batch = B;
  a.seq_length = T;
  a.checkpointing = checkpointing;
  a.sizes = sizes;
  return a;
}

RankMemory plan_rank_memory(const MemoryPlanArgs& a, int tp_rank, int dp_rank) {
  SizingBackend be(a.sizes);
  SizeOnlyComm tp(tp_rank, int(a.plan.tp)), dp(dp_rank, a.dp);
  RankMemory m;
  m.tp_rank = tp_rank;
  m.dp_rank = dp_rank;
  // In autotp-train's order: the model, its weights set (params_changed, as load and
  // init_random end), the optimizer, then the first step's buffers.
  Phi3Model model(a.model, a.plan, tp_rank, tp, be,
                  ZeroOptimizer::model_storage(a.zero_stage, a.dp));
  model.params_changed();
  for (const float* g : model.grad_buffers()) m.gradients += be.bytes_of(g);
  m.grad_buckets = model.grad_buckets();
  m.weights = be.current_bytes() - m.gradients;
  size_t before = be.current_bytes();
  ZeroOptimizer opt(a.optimizer, a.zero_stage, a.grad_clip, model.layout(), model.params(),
                    model.grads(), dp, tp, be);
  const size_t shard = opt.grad_shard() ? be.bytes_of(opt.grad_shard()) : 0;
  m.gradients += shard;
  m.optimizer = be.current_bytes() - before - shard;
  before = be.current_bytes();
  model.set_logits_chunk_rows(a.logits_chunk_rows);
  model.set_activation_checkpointing(a.checkpointing);
  model.reserve(int(a.micro_batch), int(a.seq_length));
  m.activations = be.current_bytes() - before;
  m.peak = be.peak_bytes();
  return m;
}

RankMemory plan_memory(const MemoryPlanArgs& a) {
  RankMemory most;
  for (int r = 0; r < int(a.plan.tp); ++r) {
    RankMemory m = plan_rank_memory(a, r, 0);
    if (r == 0 || m.peak > most.peak) most = m;
  }
  return most;
}

namespace {

std::string bytes_and_count(size_t b) {
  return format_bytes(double(b)) + " (" + with_commas(int64_t(b)) + " bytes)";
}

std::string device_note(const MemoryPlanArgs& a) {
  const DeviceSizes& s = a.sizes;
  if (s.device == "cpu") return "cpu (fp32 throughout)";
  return s.device + " (narrow activations " + std::to_string(s.narrow_bytes) +
         " bytes per element" +
         (ZeroOptimizer::keeps_master_copy(a.zero_stage, a.dp)
              ? std::string(", narrow weights)")
              : ", a " + std::to_string(s.weight_copy_bytes) +
                    "-byte copy of the fp32 weights for the GEMMs)");
}

MemoryPlanArgs with_checkpointing(MemoryPlanArgs a, bool on) {
  a.checkpointing = on;
  return a;
}

}  // namespace

RankMemory print_memory_plan(std::ostream& os, const MemoryPlanArgs& a) {
  const RankMemory off = plan_memory(with_checkpointing(a, false));
  const RankMemory on = plan_memory(with_checkpointing(a, true));
  const RankMemory& m = a.checkpointing ? on : off;
  const std::string opt =
      a.zero_stage == 0 ? "ZeRO-0: Adam m, v of the whole buffer (the parameters are the master)"
      : a.dp == 1       ? "ZeRO-" + std::to_string(a.zero_stage) +
                        " at dp 1: Adam m, v of the whole buffer (the parameters are the master)"
                  : "ZeRO-" + std::to_string(a.zero_stage) + ": fp32 master, Adam m, v of a 1/" +
                        std::to_string(a.dp) + " shard, all-gather scratch";
  os << "Memory per rank, as autotp-train allocates it on " << device_note(a) << ", at seq "
     << a.seq_length << " x micro-batch " << a.micro_batch << " (TP rank " << m.tp_rank
     << ", DP rank " << m.dp_rank << ": the rank that needs the most):\n";
  auto line = [&](const char* what, size_t bytes, const std::string& note) {
    std::string b = format_bytes(double(bytes)), n = with_commas(int64_t(bytes));
    os << "  " << what << std::string(13 - std::string(what).size(), ' ')
       << std::string(11 - std::min<size_t>(11, b.size()), ' ') << b << "  "
       << std::string(17 - std::min<size_t>(17, n.size()), ' ') << n << " bytes  " << note << "\n";
  };
  line("weights", m.weights,
       ZeroOptimizer::keeps_master_copy(a.zero_stage, int(a.dp))
           ? std::string("narrow parameters (the fp32 master is the optimizer's shard)")
           : std::string("fp32 parameters") +
                 (a.sizes.weight_copy_bytes ? " + their narrow copy" : ""));
  line("gradients", m.gradients,
       m.grad_buckets ? "fp32: the own 1/" + std::to_string(a.dp) +
                            " shard of the sum + 2 buckets of the largest group" +
                            (a.model.tie_word_embeddings ? " + the tied embedding's" : "")
       : ZeroOptimizer::shards_grads(a.zero_stage, a.dp)
           ? std::string("fp32, the whole buffer (smaller here than shard + buckets)")
           : std::string("fp32, the whole buffer"));
  line("optimizer", m.optimizer, opt);
  line("activations", off.activations, "without checkpointing");
  line("activations", on.activations, "with activation checkpointing (full layer recompute)");
  os << "total per rank: " << bytes_and_count(m.total()) << ", activation checkpointing "
     << (a.checkpointing ? "on" : "off") << "\n";
  const RankMemory& other = a.checkpointing ? off : on;
  os << "  (activation checkpointing " << (a.checkpointing ? "off" : "on")
     << " instead: " << bytes_and_count(other.total()) << ")\n";
  if (a.sizes.device == "cuda")
    os << "not counted: the CUDA backend's scratch slots, grown at the first step (attention's "
          "bf16 copies and dS, GEMM operand conversions; measured for Phi-4-mini: 0.17 GiB at "
          "2048 tokens, 0.67 GiB at 8192); autotp-bench prints them beside its peak\n";
  return m;
}

std::string memory_shortfall(const MemoryPlanArgs& a, const RankMemory& need, size_t available,
                             const std::string& what) {
  if (need.total() <= available) return "";
  std::string msg =
      "this layout needs " + format_bytes(double(need.total())) + " per rank (weights " +
      format_bytes(double(need.weights)) + ", gradients " + format_bytes(double(need.gradients)) +
      ", optimizer " + format_bytes(double(need.optimizer)) + ", activations " +
      format_bytes(double(need.activations)) + " at seq " + std::to_string(a.seq_length) +
      " x micro-batch " + std::to_string(a.micro_batch) + ") but " + what + " is " +
      format_bytes(double(available)) + ": " + format_bytes(double(need.total() - available)) +
      " missing. Use more TP ranks";
  if (a.zero_stage == 0)
    msg += ", ZeRO-1 or 2 over more DP ranks (each holds 1/dp of the optimizer state)";
  else
    msg += " or DP ranks (each holds 1/dp of the optimizer state)";
  if (!a.checkpointing) {
    const RankMemory on = plan_memory(with_checkpointing(a, true));
    msg +=
        ", activation checkpointing (the ds_config's activation_checkpointing block or "
        "--activation_checkpointing true: " +
        format_bytes(double(on.total())) + " per rank)";
  }
  if (a.micro_batch > 1) msg += ", or a smaller micro-batch";
  return msg;
}

}  // namespace autotp
