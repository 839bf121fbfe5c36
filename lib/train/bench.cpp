#include "train/bench.hpp"

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <vector>

#include "config/ds_config.hpp"
#include "core/cli.hpp"
#include "core/error.hpp"
#include "core/strings.hpp"
#include "data/sampler.hpp"
#include "dist/mpi_main.hpp"
#include "dist/timed_comm.hpp"
#include "dist/topology.hpp"
#include "io/file_util.hpp"
#include "io/model_source.hpp"
#include "model/phi3_model.hpp"
#include "optim/zero_optimizer.hpp"
#include "partition/partition_config.hpp"
#include "partition/plan.hpp"
#include "train/device.hpp"
#include "train/flops.hpp"
#include "train/grad_link.hpp"
#include "train/memory_plan.hpp"
#ifdef AUTOTP_WITH_CUDA
#include "kernels/cuda/cuda_backend.hpp"
#endif

namespace autotp {

namespace po = boost::program_options;
using Clock = std::chrono::steady_clock;

bool BenchArgs::parse(int argc, char** argv) {
  po::options_description d("autotp-bench options");
  // clang-format off
  d.add_options()
    ("help,h", "print this help")
    ("model", po::value(&model), "a preset (tiny, phi-4-mini, phi-4, phi-4-multimodal) or a "
        "config.json (randomly initialised), or a Hugging Face folder or autotp .h5 (loaded)")
    ("merge_lora", po::value(&merge_lora), "none | vision | speech: a Phi-4-multimodal "
        "folder's LoRA adapter merged into the weights")
    ("cache_dir", po::value(&cache_dir), "where a Hugging Face folder's conversion is kept "
        "(default autotp_run, autotp-train's --out_dir)")
    ("layers", po::value(&layers), "override num_hidden_layers (0 = the model's; another "
        "count starts from random weights)")
    ("seq_length", po::value(&seq_length), "tokens per sample")
    ("micro_batch_size", po::value(&micro_batch), "samples per micro-batch per DP rank")
    ("gradient_accumulation_steps", po::value(&grad_accum), "micro-batches per step")
    ("tp_size", po::value(&tp_size), "tensor-parallel size (default 1)")
    ("dp_size", po::value(&dp_size), "data-parallel size (default: the other ranks)")
    ("zero_stage", po::value(&zero_stage), "ZeRO stage 0, 1 or 2")
    ("steps", po::value(&steps), "timed steps")
    ("warmup", po::value(&warmup), "untimed steps first")
    ("profile", po::bool_switch(&profile), "then run --profile_steps more with timers on and "
        "print where the step time goes (per-op GPU times on the CUDA backend)")
    ("profile_steps", po::value(&profile_steps), "steps of the --profile breakdown")
    ("ds_config", po::value(&ds_config), "take the partition specs, optimizer and gradient "
        "clipping from this ds_config (default: Phi-3 AutoTP specs for the model's shape, AdamW "
        "lr 3e-4 wd 0.01)")
    ("grad_clip", po::value(&grad_clip), "gradient clipping when no --ds_config (0 = off)")
    ("device", po::value(&device), "auto | cpu | cuda")
    ("comm", po::value(&comm), "auto | mpi | nccl")
    ("peak_tflops", po::value(&peak_tflops), "peak TFLOP/s per rank for MFU (default: the "
        "device's nominal dense peak, 989 for an H100)")
    ("logits_chunk_rows", po::value(&logits_chunk_rows), "token rows per lm_head + "
        "cross-entropy chunk (0 = the model's default)")
    ("gemm_size", po::value(&gemm_size), "n of the n^3 backend matmul that measures the GEMM "
        "rate of the floor (default 4096 on a GPU, 512 on the CPU)")
    ("json", po::value(&json), "write the results as JSON to this file")
    ("seed", po::value(&seed), "seed of the initialisation and the token ids");
  // clang-format on
  add_activation_checkpointing_option(d, activation_checkpointing);
  po::variables_map vm;
  if (!parse_command_line(argc, argv, d, vm, "usage: mpirun -np N autotp-bench [options]\n"))
    return false;
  check(seq_length > 0 && micro_batch > 0 && grad_accum > 0,
        "--seq_length, --micro_batch_size and --gradient_accumulation_steps must be positive");
  check(steps > 0 && warmup >= 0 && profile_steps > 0,
        "--steps and --profile_steps must be positive and --warmup not negative");
  check(zero_stage >= 0 && zero_stage <= 2, "--zero_stage must be 0, 1 or 2, got ", zero_stage);
  check(layers >= 0, "--layers must not be negative");
  return true;
}

namespace {

// The partition specs of configs/phi-4-mini.json, with the qkv split written for this shape.
nlohmann::json phi3_tensor_parallel(const ModelConfig& mc, int64_t tp) {
  using J = nlohmann::json;
  J qkv_shape = J::array({J::array({mc.q_rows(), mc.kv_rows(), mc.kv_rows()}), -1});
  J specs =
      J::array({{{"patterns", {R"(.*\.self_attn\.qkv_proj\.weight$)"}},
                 {"partition_type", "column"},
                 {"shape", qkv_shape},
                 {"partition_dim", 0}},
                {{"patterns", {R"(.*\.self_attn\.o_proj\.weight$)"}}, {"partition_type", "row"}},
                {{"patterns", {R"(.*\.mlp\.gate_up_proj\.weight$)"}},
                 {"partition_type", "column"},
                 {"shape", {2, -1}},
                 {"partition_dim", 0}},
                {{"patterns", {R"(.*\.mlp\.down_proj\.weight$)"}}, {"partition_type", "row"}}});
  return {{"autotp_size", tp},
          {"partition_config",
           {{"use_default_specs", false},
            {"strict_mode", true},
            {"vocab_parallel", true},
            {"layer_specs", specs}}}};
}

double max_over(double x, MPI_Comm c) {
  MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_DOUBLE, MPI_MAX, c);
  return x;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

nlohmann::json run_bench(const BenchArgs& a, MPI_Comm world) {
  auto topo = Topology::create(world, a.tp_size ? a.tp_size : (a.dp_size ? 0 : 1), a.dp_size);
  const bool root = topo.world_rank == 0;
  ModelSource src = same_on_every_rank([&] { return resolve_model(a.model, a.merge_lora); });
  override_layers(src, a.layers, a.model);
  const ModelConfig mc = src.config;
  same_on_every_rank([&] {
    open_model_weights(src, a.cache_dir, uint64_t(a.seed), topo.world);
    return 0;
  });
  same_on_every_rank([&] {
    check_seq_length(a.seq_length, mc.max_position_embeddings);
    return 0;
  });
  // Without --ds_config: AdamW's defaults, --grad_clip, no checkpointing block.
  DsConfig ds;
  ds.source = "autotp-bench";
  ds.gradient_clipping = a.grad_clip;
  nlohmann::json tp_json = phi3_tensor_parallel(mc, topo.tp);
  std::string tp_source = "autotp-bench's Phi-3 specs";
  if (!a.ds_config.empty()) {
    ds = same_on_every_rank([&] { return DsConfig::from_file(a.ds_config); });
    tp_json = ds.tensor_parallel;
    tp_source = ds.source;
    if (root && !ds.has_optimizer)
      std::printf("autotp-bench: note: %s\n", ds.optimizer_defaults_note().c_str());
  }
  ds.zero_stage = int(a.zero_stage);
  const OptimizerConfig opt_cfg = ds.optimizer;
  const double clip = ds.gradient_clipping;
  PartitionPlan plan = same_on_every_rank(
      [&] { return build_plan(PartitionConfig::from_json(tp_json, tp_source), mc, topo.tp); });
  const bool recompute = ds.activation_checkpointing.on(a.activation_checkpointing);

  Device dev = make_device(a.device, a.comm, topo);
  Backend& be = *dev.backend;
  auto sync = [&be] { be.synchronize(); };
  auto* tp_comm = new TimedComm(std::move(dev.tp), sync);
  dev.tp.reset(tp_comm);
  auto* dp_comm = new TimedComm(std::move(dev.dp), sync);
  dev.dp.reset(dp_comm);
  const bool on_gpu = be.name() != "cpu";
#ifdef AUTOTP_WITH_CUDA
  auto* cuda = dynamic_cast<CudaBackend*>(&be);
#endif

  // The floor's two rates, measured before the model takes the memory.
  const int64_t gemm_n = a.gemm_size > 0 ? a.gemm_size : default_gemm_size(be);
  const double gemm_tflops = measure_gemm_tflops(be, gemm_n);
  // On the CPU the MFU denominator is this rate too (averaged over the ranks).
  const PeakRate peak_rate = mfu_peak(dev, a.peak_tflops, topo.world, gemm_n, gemm_tflops);
  // 256 MiB: well past any cache, and small beside the model's own peak memory.
  const double bandwidth_gbs = measure_bandwidth_gbs(be, size_t(on_gpu ? 256 : 64) << 20);
#ifdef AUTOTP_WITH_CUDA
  // The rate's 8192^3 operands grew the GEMM scratch past what training needs: the peak below
  // is the trainer's own.
  if (cuda) cuda->free_scratch();
#endif

  // The allocations the plan predicts, measured from here (the rates' buffers are freed).
  MemoryPlanArgs mem_args = same_on_every_rank([&] {
    return memory_plan_args(ds, mc, plan, topo.dp, a.micro_batch, a.seq_length, recompute,
                            DeviceSizes::matching(be));
  });
  mem_args.logits_chunk_rows = a.logits_chunk_rows;
  const RankMemory planned = plan_memory(mem_args);
  const RankMemory planned_here = plan_rank_memory(mem_args, topo.tp_rank, topo.dp_rank);
  be.reset_peak_bytes();

  auto t_init = Clock::now();
  Phi3Model model(mc, plan, topo.tp_rank, *tp_comm, be,
                  ZeroOptimizer::model_storage(int(a.zero_stage), topo.dp));
  model.set_logits_chunk_rows(a.logits_chunk_rows);
  model.set_activation_checkpointing(recompute,
                                     ds.activation_checkpointing.synchronize_checkpoint_boundary);
  if (src.file)
    model.load(*src.file);
  else
    model.init_random(uint64_t(a.seed));
  ZeroOptimizer opt(opt_cfg, int(a.zero_stage), clip, model.layout(), model.params(), model.grads(),
                    *dp_comm, *tp_comm, be);
  be.synchronize();
  const double init_s = seconds_since(t_init);

  const int64_t B = a.micro_batch, T = a.seq_length, accum = a.grad_accum;
  const int64_t tokens_per_rank = B * T * accum, tokens = tokens_per_rank * topo.dp;
  const StepFlops flops = count_step_flops(mc, T, tokens);
  const double peak = peak_rate.tflops;
  if (root) {
    std::printf(
        "autotp-bench: %s, %lld layers, %.1fM parameters | %s | TP %d x DP %d, ZeRO-%lld\n"
        "autotp-bench: seq %lld x micro %lld x accum %lld x dp %d = %lld tokens per step; "
        "%lld warmup + %lld timed steps; init %.1f s\n"
        "autotp-bench: weights: %s\n"
        "autotp-bench: MFU against %.4g TFLOP/s per rank: %s\n",
        a.model.c_str(), (long long)mc.num_hidden_layers, mc.num_parameters() / 1e6,
        dev.description.c_str(), topo.tp, topo.dp, (long long)a.zero_stage, (long long)T,
        (long long)B, (long long)accum, topo.dp, (long long)tokens, (long long)a.warmup,
        (long long)a.steps, init_s, src.weights.c_str(), peak, peak_rate.source.c_str());
    for (auto& n : src.notes) std::printf("autotp-bench: note: %s\n", n.c_str());
    std::fflush(stdout);
  }

  // Random ids: the same on the ranks of a TP group (they compute one batch), different
  // across DP. The targets are the next ids, as the trainer's shifted samples are.
  std::mt19937_64 gen(uint64_t(a.seed) * 1000003u + uint64_t(topo.dp_rank));
  std::uniform_int_distribution<int32_t> token(0, int32_t(mc.vocab_size - 1));
  std::vector<int32_t> ids(size_t(B * T + 1)), targets(size_t(B * T));
  auto next_batch = [&] {
    for (auto& x : ids) x = token(gen);
    std::copy(ids.begin() + 1, ids.end(), targets.begin());
  };

  // Phase wall times, filled only while profiling (each phase ends with a synchronize).
  std::map<std::string, double> phase;
  bool timing_phases = false;
  auto phase_end = [&](const char* name, Clock::time_point& t) {
    if (!timing_phases) return;
    be.synchronize();
    auto now = Clock::now();
    phase[name] += std::chrono::duration<double>(now - t).count();
    t = now;
  };
  float last_loss = 0;
  GradLink grads(model, opt, accum);
  auto train_step = [&] {
    auto t = Clock::now();
    float loss = 0;
    for (int64_t m = 0; m < accum; ++m) {
      next_batch();
      // As the trainer (profiled, each DP sum completes at once and the phase includes it).
      grads.before_micro_batch(m);
      loss +=
          model.forward_backward(ids.data(), targets.data(), int(B), int(T), 1.0f / float(accum));
      phase_end("forward+backward", t);
    }
    StepStats st = opt.step(opt_cfg.lr);
    phase_end("optimizer step", t);
    model.params_changed();
    phase_end("params_changed", t);
    last_loss = loss / float(accum);
    if (!st.applied || !std::isfinite(last_loss))
      fail("the loss (", last_loss, ") or the gradient norm (", st.grad_norm,
           ") is not finite: the benchmark's model diverged");
  };

  for (int64_t s = 0; s < a.warmup; ++s) train_step();
  be.synchronize();
  MPI_Barrier(topo.world);
  std::vector<double> step_s;
  auto t_run = Clock::now();
  for (int64_t s = 0; s < a.steps; ++s) {
    auto t0 = Clock::now();
    train_step();
    be.synchronize();
    step_s.push_back(seconds_since(t0));
  }
  MPI_Barrier(topo.world);
  const double run_s = max_over(seconds_since(t_run), topo.world);
  // Each step as long as its slowest rank.
  MPI_Allreduce(MPI_IN_PLACE, step_s.data(), int(step_s.size()), MPI_DOUBLE, MPI_MAX, topo.world);
  const double mem_gib = max_over(dev.peak_memory_gib(), topo.world);
  // The card's count, every rank's buffers still held: the largest any rank sees (ranks on one
  // GPU see the same).
  const double device_used_gib = max_over(dev.device_used_gib(), topo.world);
  const double peak_bytes = max_over(double(be.peak_bytes()), topo.world);
  // What the plan does not predict: the backend's scratch slots (rank 0's, by slot), and on each
  // rank its peak less its own plan and its scratch, which should be nothing (the largest in
  // magnitude over the ranks, in bytes).
  std::map<std::string, size_t> scratch;
#ifdef AUTOTP_WITH_CUDA
  if (cuda) scratch = cuda->scratch_bytes();
#endif
  size_t scratch_total = 0;
  for (auto& [k, v] : scratch) scratch_total += v;
  const long long own =
      (long long)be.peak_bytes() - (long long)(planned_here.total() + scratch_total);
  long long unplanned[2] = {own, -own};  // the largest and, negated, the smallest
  MPI_Allreduce(MPI_IN_PLACE, unplanned, 2, MPI_LONG_LONG, MPI_MAX, topo.world);
  const long long unplanned_bytes = unplanned[0] >= unplanned[1] ? unplanned[0] : -unplanned[1];
  float loss = last_loss;
  dp_comm->all_reduce_sum(&loss, 1);
  loss /= float(topo.dp);

  const double step_mean = run_s / double(a.steps);
  std::sort(step_s.begin(), step_s.end());
  const double tok_s = double(tokens) / step_mean;
  const double tflops = flops.total / step_mean / 1e12;
  const double mfu = tflops / (peak * topo.world_size);

  // The floor of one rank: its share of the GEMM FLOPs at the measured matmul rate, half of the
  // attention FLOPs (causal) at that rate, and the memory-bound bytes at the copy bandwidth.
  const double ranks = double(topo.world_size);
  const double gemm_floor = flops.gemm / ranks / (gemm_tflops * 1e12);
  const double attn_floor = 0.5 * flops.attention / ranks / (gemm_tflops * 1e12);
  const size_t local = model.layout().total, state = opt.state_numel();
  const StepTraffic bytes32 = estimate_traffic(mc, tokens_per_rank, topo.tp, local, state, 4);
  const StepTraffic bytes16 = estimate_traffic(mc, tokens_per_rank, topo.tp, local, state, 2);
  const double mem_floor32 = bytes32.total() / (bandwidth_gbs * 1e9);
  const double mem_floor16 = bytes16.total() / (bandwidth_gbs * 1e9);

  nlohmann::json r = {{"impl", "autotp"},
                      {"model", a.model},
                      {"layers", mc.num_hidden_layers},
                      {"parameters", mc.num_parameters()},
                      {"seq_length", T},
                      {"micro_batch", B},
                      {"grad_accum", accum},
                      {"tp", topo.tp},
                      {"dp", topo.dp},
                      {"zero_stage", a.zero_stage},
                      {"device", dev.description},
                      {"tokens_per_step", tokens},
                      {"steps", a.steps},
                      {"warmup", a.warmup},
                      {"step_ms", step_mean * 1e3},
                      {"step_ms_min", step_s.front() * 1e3},
                      {"step_ms_median", step_s[step_s.size() / 2] * 1e3},
                      {"step_ms_max", step_s.back() * 1e3},
                      {"tokens_per_s", tok_s},
                      {"tflops", tflops},
                      {"mfu", mfu},
                      {"peak_tflops", peak},
                      {"peak_source", peak_rate.source},
                      {"peak_mem_gib", mem_gib},
                      {"peak_mem_bytes", peak_bytes},
                      {"device_used_gib", device_used_gib},
                      {"scratch_bytes", scratch},
                      {"unplanned_bytes", unplanned_bytes},
                      {"activation_checkpointing", recompute},
                      {"planned_mem",
                       {{"total", planned.total()},
                        {"weights", planned.weights},
                        {"gradients", planned.gradients},
                        {"optimizer", planned.optimizer},
                        {"activations", planned.activations},
                        {"grad_buckets", planned.grad_buckets}}},
                      {"loss", loss},
                      {"flops_per_step", flops.total},
                      {"floor",
                       {{"gemm_flops", flops.gemm},
                        {"attention_flops", flops.attention},
                        {"gemm_n", gemm_n},
                        {"gemm_tflops_measured", gemm_tflops},
                        {"bandwidth_gbs_measured", bandwidth_gbs},
                        {"gemm_ms", gemm_floor * 1e3},
                        {"gemm_ms_at_782", flops.gemm / ranks / 782e12 * 1e3},
                        {"attention_ms", attn_floor * 1e3},
                        {"bytes_fp32_act", bytes32.total()},
                        {"bytes_bf16_act", bytes16.total()},
                        {"bytes_optimizer", bytes32.optimizer},
                        {"memory_ms_fp32_act", mem_floor32 * 1e3},
                        {"memory_ms_bf16_act", mem_floor16 * 1e3}}}};

  if (root) {
    std::printf(
        "result: %.0f tokens/s | %.4g TFLOP/s | MFU %.1f%% of %.4g | peak memory %.2f GiB | "
        "step %.1f ms (min %.1f, max %.1f) | loss %.4f\n",
        tok_s, tflops, 100 * mfu, peak, mem_gib, step_mean * 1e3, step_s.front() * 1e3,
        step_s.back() * 1e3, loss);
    std::printf(
        "memory per rank: measured peak %s (%.0f bytes) | planned %s (%zu bytes: weights %s, "
        "gradients %s%s, optimizer %s, activations %s; activation checkpointing %s)\n",
        format_bytes(peak_bytes).c_str(), peak_bytes, format_bytes(double(planned.total())).c_str(),
        planned.total(), format_bytes(double(planned.weights)).c_str(),
        format_bytes(double(planned.gradients)).c_str(), planned.grad_buckets ? " bucketed" : "",
        format_bytes(double(planned.optimizer)).c_str(),
        format_bytes(double(planned.activations)).c_str(), recompute ? "on" : "off");
    if (!scratch.empty()) {
      std::printf("backend scratch slots (rank 0, in the measured peak, not in the plan): %s =",
                  format_bytes(double(scratch_total)).c_str());
      for (auto& [k, v] : scratch)
        std::printf(" %s %s", k.c_str(), format_bytes(double(v)).c_str());
      std::printf("\n");
    }
    std::printf("measured peak less the rank's plan and its backend scratch: %lld bytes%s\n",
                unplanned_bytes, unplanned_bytes ? " (the plan is wrong: a bug)" : "");
    if (device_used_gib >= 0)
      std::printf(
          "device memory in use after the steps: %.2f GiB (the GPU's own count: every rank on "
          "it, CUDA contexts and library workspaces included)\n",
          device_used_gib);
    const std::string at_782 =
        on_gpu ? ", " + std::to_string(std::lround(flops.gemm / ranks / 782e12 * 1e3)) +
                     " ms at anchors.md's 782"
               : "";
    std::printf(
        "floor: GEMM %.4g TFLOP/rank at %.4g TFLOP/s (backend matmul %lld^3, fp32 buffers) = "
        "%.1f ms%s; attention (causal half) %.1f ms; memory-bound %.2f GB (fp32 activations) / "
        "%.2f GB (bf16) at %.0f GB/s (backend copy) = %.1f / %.1f ms -> %.1f ms per step, "
        "%.0f tokens/s\n",
        flops.gemm / ranks / 1e12, gemm_tflops, (long long)gemm_n, gemm_floor * 1e3, at_782.c_str(),
        attn_floor * 1e3, bytes32.total() / 1e9, bytes16.total() / 1e9, bandwidth_gbs,
        mem_floor32 * 1e3, mem_floor16 * 1e3, (gemm_floor + attn_floor + mem_floor16) * 1e3,
        double(tokens) / (gemm_floor + attn_floor + mem_floor16));
    std::fflush(stdout);
  }

  if (a.profile) {
#ifdef AUTOTP_WITH_CUDA
    if (cuda) {
      cuda->reset_op_times();
      cuda->set_profiling(true);
    }
#endif
    tp_comm->reset();
    dp_comm->reset();
    tp_comm->set_enabled(true);
    dp_comm->set_enabled(true);
    timing_phases = true;
    be.synchronize();
    MPI_Barrier(topo.world);
    auto t0 = Clock::now();
    for (int64_t s = 0; s < a.profile_steps; ++s) train_step();
    be.synchronize();
    const double n = double(a.profile_steps);
    const double prof_ms = seconds_since(t0) / n * 1e3;
    timing_phases = false;
    tp_comm->set_enabled(false);
    dp_comm->set_enabled(false);
    std::map<std::string, double> ops;
#ifdef AUTOTP_WITH_CUDA
    if (cuda) {
      ops = cuda->op_times_ms();
      cuda->set_profiling(false);
    }
#endif
    nlohmann::json prof = {{"steps", a.profile_steps},
                           {"step_ms", prof_ms},
                           {"tp_comm_ms", tp_comm->seconds() / n * 1e3},
                           {"dp_comm_ms", dp_comm->seconds() / n * 1e3},
                           {"comm_calls", double(tp_comm->calls() + dp_comm->calls()) / n}};
    for (auto& [k, v] : phase) prof["phases_ms"][k] = v / n * 1e3;
    const double comm_ms = (tp_comm->seconds() + dp_comm->seconds()) / n * 1e3;
    if (root) {
      std::printf("profile (%lld steps, every phase and collective synchronized): step %.1f ms\n",
                  (long long)a.profile_steps, prof_ms);
      std::printf("  phases:");
      for (auto& [k, v] : phase) std::printf(" %s %.1f ms |", k.c_str(), v / n * 1e3);
      std::printf(" communication %.1f ms (TP %.1f, DP %.1f; %.0f calls)\n", comm_ms,
                  tp_comm->seconds() / n * 1e3, dp_comm->seconds() / n * 1e3,
                  prof["comm_calls"].get<double>());
    }
    if (!ops.empty()) {
      double gemm = 0, attention = 0, optimizer = 0, other = 0;
      for (auto& [k, v] : ops) {
        const double ms = v / n;
        prof["ops_ms"][k] = ms;
        (k == "gemm"        ? gemm
         : k == "attention" ? attention
         : k == "optimizer" ? optimizer
                            : other) += ms;
      }
      const double rest = prof_ms - gemm - attention - optimizer - other - comm_ms;
      prof["summary_ms"] = {{"gemm", gemm},           {"attention", attention},
                            {"other_kernels", other}, {"communication", comm_ms},
                            {"optimizer", optimizer}, {"unaccounted", rest}};
      if (root) {
        std::printf("  GPU time per op:");
        for (auto& [k, v] : ops) std::printf(" %s %.1f ms |", k.c_str(), v / n);
        std::printf(
            "\n  summary: gemm %.1f ms (%.0f TFLOP/s) | attention %.1f ms | other kernels "
            "%.1f ms | communication %.1f ms | optimizer %.1f ms | unaccounted (host, launch "
            "gaps, syncs) %.1f ms\n",
            gemm, gemm > 0 ? flops.gemm / ranks / (gemm * 1e-3) / 1e12 : 0.0, attention, other,
            comm_ms, optimizer, rest);
      }
    } else if (root) {
      std::printf("  (per-op times need the CUDA backend; this is wall time only)\n");
    }
    r["profile"] = prof;
    if (root) std::fflush(stdout);
  }

  if (root && !a.json.empty()) write_text_file_atomic(a.json, r.dump(2) + "\n");
  topo.free();
  return r;
}

}  // namespace autotp
