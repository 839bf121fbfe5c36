#include "train/trainer.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>

#include "checkpoint/train_checkpoint.hpp"
#include "config/ds_config.hpp"
#include "core/error.hpp"
#include "core/strings.hpp"
#include "data/corpus.hpp"
#include "data/sampler.hpp"
#include "data/token_file.hpp"
#include "data/tokenizer.hpp"
#include "dist/comm.hpp"
#include "dist/mpi_main.hpp"
#include "dist/topology.hpp"
#include "io/file_util.hpp"
#include "io/model_file.hpp"
#include "io/model_source.hpp"
#include "model/phi3_model.hpp"
#include "optim/lr_schedule.hpp"
#include "optim/zero_optimizer.hpp"
#include "partition/partition_config.hpp"
#include "partition/plan.hpp"
#include "train/device.hpp"
#include "train/flops.hpp"
#include "train/grad_link.hpp"
#include "train/memory_plan.hpp"
#include "train/metrics.hpp"
#include "train/stop_signal.hpp"

namespace autotp {

namespace fs = std::filesystem;

namespace {

// A .txt corpus is tokenized once by world rank 0 into out_dir/<stem>.tok; the others wait.
std::string prepare_tokens(const TrainArgs& a, const Tokenizer& tok, const Topology& topo) {
  if (ends_with(a.data, ".tok")) return a.data;
  const std::string out = a.out_dir + "/" + fs::path(a.data).stem().string() + ".tok";
  return on_rank0(topo.world, [&] {
    bool fresh = fs::exists(out) && fs::last_write_time(out) >= fs::last_write_time(a.data);
    if (fresh) {
      TokenFile existing(out, false);
      fresh = existing.info().tokenizer_hash == tok.fingerprint();
    }
    if (!fresh) tokenize_corpus(tok, a.data, out, DocumentSplit::BlankLine);
    return out;
  });
}

// The same message on every rank, said once by rank 0 (the caller checked a collective value).
[[noreturn]] void stop_run(const std::string& msg) {
  throw CollectiveError(msg);
}

// What a checkpoint records of the run besides the model and optimizer.
nlohmann::json training_json(const TrainArgs& a, const DsConfig& ds) {
  const auto& o = ds.optimizer;
  const auto& sc = ds.scheduler;
  nlohmann::json resolved = {{"zero_stage", ds.zero_stage},
                             {"train_batch_size", ds.train_batch_size},
                             {"train_micro_batch_size_per_gpu", ds.train_micro_batch_size_per_gpu},
                             {"gradient_accumulation_steps", ds.gradient_accumulation_steps},
                             {"gradient_clipping", ds.gradient_clipping},
                             {"optimizer",
                              {{"type", o.type},
                               {"lr", o.lr},
                               {"betas", {o.beta1, o.beta2}},
                               {"eps", o.eps},
                               {"weight_decay", o.weight_decay}}},
                             {"scheduler",
                              {{"type", sc.type},
                               {"warmup_num_steps", sc.warmup_num_steps},
                               {"total_num_steps", sc.total_num_steps},
                               {"warmup_min_ratio", sc.warmup_min_ratio},
                               {"cos_min_ratio", sc.cos_min_ratio},
                               {"warmup_type", sc.warmup_type}}}};
  return {{"ds_config", ds.raw},
          {"tensor_parallel", ds.tensor_parallel},
          {"resolved", resolved},
          {"args", a.to_json()}};
}

// A resumed run keeps the metrics of the steps its checkpoint covers and appends the rest.
void trim_metrics(const std::string& path, int64_t last_step) {
  if (!fs::exists(path)) return;
  std::ifstream in(path);
  std::string line, kept;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.value("step", int64_t(0)) <= last_step) kept += line + "\n";
  }
  write_text_file_atomic(path, kept);
}

}  // namespace

TrainResult run_training(const TrainArgs& a, MPI_Comm world) {
  install_stop_handlers();
  DsConfig ds = same_on_every_rank([&] { return DsConfig::from_file(a.ds_config); });
  auto topo = Topology::create(world, a.tp_size ? a.tp_size : ds.autotp_size,
                               a.dp_size ? a.dp_size : ds.data_parallel_size);
  const bool root = topo.world_rank == 0;
  if (a.micro_batch) ds.train_micro_batch_size_per_gpu = a.micro_batch;
  if (a.grad_accum) ds.gradient_accumulation_steps = a.grad_accum;
  if (a.micro_batch || a.grad_accum) ds.train_batch_size = 0;  // re-derived from the flags
  same_on_every_rank([&] {
    ds.resolve_batch(topo.dp);
    return 0;
  });
  if (a.lr > 0) ds.optimizer.lr = a.lr;
  if (root && !ds.has_optimizer)
    std::printf("autotp: note: %s\n", ds.optimizer_defaults_note().c_str());
  if (a.zero_stage >= 0) ds.zero_stage = int(a.zero_stage);
  const uint64_t seed = uint64_t(a.seed >= 0 ? a.seed : ds.seed);
  if (ds.scheduler.total_num_steps <= 0) ds.scheduler.total_num_steps = a.num_steps;
  fs::create_directories(a.out_dir);

  ModelSource src = same_on_every_rank([&] { return resolve_model(a.model_name, a.merge_lora); });
  same_on_every_rank([&] {
    open_model_weights(src, a.out_dir, seed, topo.world);
    return 0;
  });
  if (root)
    for (auto& n : src.notes) std::printf("autotp: note: %s\n", n.c_str());
  const ModelConfig& mc = src.config;
  std::unique_ptr<ModelFileReader>& file = src.file;
  PartitionPlan plan = same_on_every_rank([&] {
    return build_plan(PartitionConfig::from_json(ds.tensor_parallel, ds.source), mc, topo.tp);
  });
  if (root) {
    for (auto& n : plan.notes) std::printf("autotp: note: %s\n", n.c_str());
    if (!plan.unmatched.empty())
      std::printf(
          "autotp: %zu weights match no partition spec and are replicated on every TP "
          "rank (autotp-plan lists them)\n",
          plan.unmatched.size());
  }

  Device dev = make_device(a.device, a.comm, topo);
  Backend& backend = *dev.backend;
  Comm* tp_comm = dev.tp.get();
  Comm* dp_comm = dev.dp.get();

  // What each rank will allocate, against what its device has, before a weight is read.
  same_on_every_rank([&] {
    check_seq_length(a.seq_length, mc.max_position_embeddings);
    return 0;
  });
  const bool recompute = ds.activation_checkpointing.on(a.activation_checkpointing);
  const MemoryPlanArgs mem_args = same_on_every_rank([&] {
    return memory_plan_args(ds, mc, plan, topo.dp, ds.train_micro_batch_size_per_gpu, a.seq_length,
                            recompute, DeviceSizes::matching(backend));
  });
  const RankMemory need = plan_memory(mem_args);
  unsigned long long have = dev.memory_bytes;
  MPI_Allreduce(MPI_IN_PLACE, &have, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, topo.world);
  const std::string missing = memory_shortfall(mem_args, need, size_t(have), dev.memory_what);
  if (!missing.empty()) stop_run(missing);
  if (root)
    std::printf(
        "autotp: memory per rank: %s planned (weights %s, gradients %s%s, optimizer %s, "
        "activations %s), activation checkpointing %s\n",
        format_bytes(double(need.total())).c_str(), format_bytes(double(need.weights)).c_str(),
        format_bytes(double(need.gradients)).c_str(), need.grad_buckets ? " bucketed" : "",
        format_bytes(double(need.optimizer)).c_str(),
        format_bytes(double(need.activations)).c_str(), recompute ? "on" : "off");

  Phi3Model model(mc, plan, topo.tp_rank, *tp_comm, backend,
                  ZeroOptimizer::model_storage(ds.zero_stage, topo.dp));
  model.set_activation_checkpointing(recompute,
                                     ds.activation_checkpointing.synchronize_checkpoint_boundary);
  if (file)
    model.load(*file);
  else
    model.init_random(seed);

  ZeroOptimizer opt(ds.optimizer, ds.zero_stage, ds.gradient_clipping, model.layout(),
                    model.params(), model.grads(), *dp_comm, *tp_comm, backend);
  LrSchedule schedule(ds.scheduler, ds.optimizer.lr);

  Tokenizer tok = Tokenizer::load(a.tokenizer);
  check(tok.vocab_size() <= mc.vocab_size, a.tokenizer, ": the tokenizer has ", tok.vocab_size(),
        " tokens but the model's vocab_size is ", mc.vocab_size,
        ": use the model's own tokenizer (--tokenizer)");
  TokenFile tokens(prepare_tokens(a, tok, topo));
  tokens.check_vocab(mc.vocab_size);

  SamplerConfig sc;
  sc.seq_length = a.seq_length;
  sc.micro_batch = ds.train_micro_batch_size_per_gpu;
  sc.grad_accum = ds.gradient_accumulation_steps;
  sc.dp = topo.dp;
  sc.dp_rank = topo.dp_rank;
  sc.seed = seed;
  Sampler sampler(tokens.num_tokens(), sc);

  TrainResult result;
  std::string ckpt = a.load;
  if (a.resume) {
    ckpt = same_on_every_rank([&] { return latest_checkpoint(a.save_dir); });
    if (ckpt.empty() && root)
      std::printf("autotp: --resume: no checkpoint in %s yet; starting from step 0\n",
                  a.save_dir.c_str());
  }
  if (!ckpt.empty()) {
    Manifest m = load_checkpoint(ckpt, model, opt, topo, a.model_name);
    same_on_every_rank([&] {
      try {
        sampler.restore(m.json.at("sampler"));
      } catch (const Error& e) {
        fail(ckpt, ": ", e.what());
      }
      return 0;
    });
    result.start_step = m.step;
    if (root)
      std::printf("autotp: resumed from %s at step %lld (saved at TP %d x DP %d, ZeRO-%d%s)\n",
                  ckpt.c_str(), (long long)m.step, m.tp, m.dp, m.zero_stage,
                  m.tp != topo.tp || m.dp != topo.dp ? "; resharded on load" : "");
  }
  const RunState run_state_base{training_json(a, ds), nullptr, {{"seed", seed}}};

  const int64_t B = sc.micro_batch, T = a.seq_length, accum = sc.grad_accum;
  const int64_t tokens_per_step = sc.global_batch() * T;
  // FLOPs of one step, the whole job, as anchors.md counts them.
  const double flops_per_step = count_step_flops(mc, T, tokens_per_step).total;
  const PeakRate peak_rate = mfu_peak(dev, a.peak_tflops, topo.world);
  const double peak = peak_rate.tflops;

  if (root) {
    std::printf("autotp: %s model, %.2fM parameters, %s, TP %d x DP %d, ZeRO-%d\n",
                mc.model_type.c_str(), mc.num_parameters() / 1e6, dev.description.c_str(), topo.tp,
                topo.dp, ds.zero_stage);
    std::printf("autotp: weights: %s\n", src.weights.c_str());
    std::printf("autotp: MFU against %.4g TFLOP/s per rank: %s\n", peak, peak_rate.source.c_str());
    std::printf(
        "autotp: %lld tokens in %s, %lld samples of %lld tokens, global batch %lld "
        "(micro %lld x accum %lld x dp %d)\n",
        (long long)tokens.num_tokens(), a.data.c_str(), (long long)sampler.num_samples(),
        (long long)T, (long long)sc.global_batch(), (long long)B, (long long)accum, topo.dp);
  }
  std::unique_ptr<MetricsLog> log;
  if (root) {
    const std::string metrics = a.out_dir + "/metrics.jsonl";
    if (result.start_step > 0) trim_metrics(metrics, result.start_step);
    log = std::make_unique<MetricsLog>(metrics, result.start_step > 0);
  }

  std::vector<int32_t> inputs(B * T), targets(B * T);
  GradLink grads(model, opt, accum);
  auto run_start = std::chrono::steady_clock::now();
  for (int64_t step = result.start_step; step < a.num_steps; ++step) {
    auto t0 = std::chrono::steady_clock::now();
    auto batches = sampler.next();
    if (step == result.start_step) check_tp_identical(*tp_comm, topo.dp_rank, batches);
    float loss_sum = 0;
    for (int64_t m = 0; m < accum; ++m) {
      fill_batch(tokens, T, batches[m], inputs.data(), targets.data());
      grads.before_micro_batch(m);
      loss_sum += model.forward_backward(inputs.data(), targets.data(), int(B), int(T),
                                         1.0f / float(accum));
    }
    float loss = loss_sum / float(accum);
    dp_comm->all_reduce_sum(&loss, 1);
    loss /= float(topo.dp);
    const double lr = schedule.lr(opt.step_count());
    StepStats st = opt.step(lr);
    model.params_changed();
    if (!std::isfinite(loss) || !st.applied) {
      std::string ids;
      for (auto& mb : batches)
        for (auto s : mb) ids += (ids.empty() ? "" : ",") + std::to_string(s);
      stop_run("step " + std::to_string(step + 1) + ": " +
               (!std::isfinite(loss) ? "the loss is " + std::to_string(loss)
                                     : "the gradient norm is " + std::to_string(st.grad_norm)) +
               " (epoch " + std::to_string(sampler.state().epoch) + ", DP rank 0's samples " + ids +
               "); the run stops: lower the learning rate or check the data");
    }
    result.losses.push_back(loss);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double mem = dev.peak_memory_gib();
    MPI_Allreduce(MPI_IN_PLACE, &mem, 1, MPI_DOUBLE, MPI_MAX, topo.world);
    if (root && (step % a.log_interval == 0 || step + 1 == a.num_steps)) {
      StepRecord r;
      r.step = step + 1;
      r.loss = loss;
      r.lr = lr;
      r.grad_norm = st.grad_norm;
      r.step_ms = secs * 1e3;
      r.tokens_per_s = double(tokens_per_step) / secs;
      r.tflops = flops_per_step / secs / 1e12;
      r.mfu = r.tflops / (peak * topo.world_size);
      r.peak_mem_gib = mem;
      r.epoch = sampler.state().epoch;
      r.sample = sampler.state().position;
      log->write(r);
      double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
      double eta = elapsed / double(step + 1 - result.start_step) * double(a.num_steps - step - 1);
      std::printf(
          "step %5lld/%lld | loss %.4f | lr %.3e | grad norm %.3f | %.0f tok/s | "
          "%.3f TFLOP/s | MFU %.1f%% | mem %.2f GiB | %.0f ms | eta %.0fs\n",
          (long long)r.step, (long long)a.num_steps, r.loss, r.lr, r.grad_norm, r.tokens_per_s,
          r.tflops, 100.0 * r.mfu, r.peak_mem_gib, r.step_ms, eta);
      std::fflush(stdout);
    }
    // Step boundary: one all-reduce tells every rank whether any rank was asked to stop.
    const bool stop = stop_requested(topo.world);
    const bool due = (a.save_interval > 0 && (step + 1) % a.save_interval == 0) ||
                     step + 1 == a.num_steps || stop;
    if (!a.save_dir.empty() && due) {
      RunState st = run_state_base;
      st.sampler = sampler.state_json();
      result.checkpoint = save_checkpoint(a.save_dir, step + 1, a.keep_last, model, opt, topo, st);
      if (root) std::printf("autotp: saved checkpoint %s\n", result.checkpoint.c_str());
    }
    if (stop) {
      result.stopped = true;
      if (root) {
        std::printf(
            "autotp: stop signal received after step %lld: %s; exiting with code %d "
            "(requeue)\n",
            (long long)(step + 1),
            a.save_dir.empty() ? "no checkpoint written (no --save_dir)"
                               : ("checkpoint " + result.checkpoint).c_str(),
            kExitRequeue);
        std::fflush(stdout);
      }
      break;
    }
  }
  if (!result.losses.empty()) result.final_loss = result.losses.back();
  if (root) {
    log.reset();
    if (plot_loss(a.out_dir + "/metrics.jsonl", a.out_dir + "/loss.png"))
      std::printf("autotp: wrote %s/metrics.jsonl and %s/loss.png\n", a.out_dir.c_str(),
                  a.out_dir.c_str());
  }
  topo.free();
  return result;
}

}  // namespace autotp
