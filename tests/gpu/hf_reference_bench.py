#!/usr/bin/env python3
"""The transformers reference of autotp-bench: Phi3ForCausalLM of the same shape, trained on
random token ids the way anchors.md measured it (fp32 master weights, bf16 autocast, SDPA
attention, torch.optim.AdamW(fused=True)), eager or torch.compile'd. Prints the same `result:`
line and writes the same JSON keys as autotp-bench, so tests/gpu/run_bench.sh can put the two
side by side.

  python3 hf_reference_bench.py --model phi-4-mini --layers 8 --seq_length 2048 \
      --micro_batch_size 4 --mode compile --json out.json
  python3 hf_reference_bench.py --mode gemm   # cuBLAS bf16 n^3 rate and copy bandwidth

FLOPs per step (anchors.md) = 6 * params * tokens + 12 * layers * hidden * seq * tokens, params
counted once each (the tied embedding once). Peak memory = torch.cuda.max_memory_allocated over
the whole run (model, optimizer state, activations). Gradient clipping at --grad_clip (1.0, as
autotp-bench's default), weight decay on the 2-D weights only (as autotp's ZeRO optimizer).
Exit code 3 = out of memory (run_bench.sh tries a smaller micro-batch).
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch

OOM_EXIT = 3

# The presets of lib/config/model_presets.cpp that the benchmark uses.
PHI4_MINI_LONG_FACTOR = [
    1, 1.118320672, 1.250641126, 1.398617824, 1.564103225, 1.74916897, 1.956131817, 2.187582649,
    2.446418898, 2.735880826, 3.059592084, 3.421605075, 3.826451687, 4.279200023, 4.785517845,
    5.351743533, 5.984965424, 6.693110555, 7.485043894, 8.370679318, 9.36110372, 10.4687158,
    11.70738129, 13.09260651, 14.64173252, 16.37415215, 18.31155283, 20.47818807, 22.90118105,
    25.61086418, 28.64115884, 32.03, 32.1, 32.13, 32.23, 32.6, 32.61, 32.64, 32.66, 32.7, 32.71,
    32.93, 32.97, 33.28, 33.49, 33.5, 44.16, 47.77]
PRESETS = {
    "phi-4-mini": dict(vocab_size=200064, hidden_size=3072, intermediate_size=8192,
                       num_hidden_layers=32, num_attention_heads=24, num_key_value_heads=8,
                       max_position_embeddings=131072, original_max_position_embeddings=4096,
                       rope_theta=10000.0, partial_rotary_factor=0.75,
                       short_factor=[1.0] * 48, long_factor=PHI4_MINI_LONG_FACTOR, token=199999),
    "tiny": dict(vocab_size=2048, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                 num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=1024,
                 original_max_position_embeddings=1024, rope_theta=10000.0,
                 partial_rotary_factor=0.75, short_factor=None, long_factor=None, token=0),
}


def make_config(name, layers):
    from transformers import Phi3Config
    p = dict(PRESETS[name])
    if layers:
        p["num_hidden_layers"] = layers
    rope = {"rope_type": "default", "rope_theta": p["rope_theta"],
            "partial_rotary_factor": p["partial_rotary_factor"]}
    if p["long_factor"]:
        rope.update(rope_type="longrope", short_factor=p["short_factor"],
                    long_factor=p["long_factor"],
                    original_max_position_embeddings=p["original_max_position_embeddings"])
    return Phi3Config(
        vocab_size=p["vocab_size"], hidden_size=p["hidden_size"],
        intermediate_size=p["intermediate_size"], num_hidden_layers=p["num_hidden_layers"],
        num_attention_heads=p["num_attention_heads"],
        num_key_value_heads=p["num_key_value_heads"],
        max_position_embeddings=p["max_position_embeddings"],
        original_max_position_embeddings=p["original_max_position_embeddings"],
        rms_norm_eps=1e-5, rope_parameters=rope,
        partial_rotary_factor=p["partial_rotary_factor"], tie_word_embeddings=True,
        bos_token_id=p["token"], eos_token_id=p["token"], pad_token_id=p["token"],
        use_cache=False, attn_implementation="sdpa")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device):
    if device.type == "cuda":
        return "%s (%s), torch %s" % (device, torch.cuda.get_device_name(device),
                                      torch.__version__)
    return "cpu, torch %s" % torch.__version__


def write_json(path, obj):
    if not path:
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def time_per_call(fn, device, budget=0.3):
    fn()
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    once = time.perf_counter() - t0
    reps = int(min(500, max(3, budget / max(once, 1e-6))))
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / reps


def measure_gemm(args, device):
    """The matmul ceiling anchors.md quotes (cuBLAS bf16 n^3) and a copy's bandwidth."""
    n = args.gemm_size
    dtype = torch.bfloat16
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    s = time_per_call(lambda: torch.matmul(a, b), device)
    tflops = 2.0 * n ** 3 / s / 1e12
    del a, b
    nbytes = (1 << 30) if device.type == "cuda" else (64 << 20)
    x = torch.empty(nbytes, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    s = time_per_call(lambda: y.copy_(x), device)
    gbs = 2.0 * nbytes / s / 1e9
    print("gemm: bf16 %d^3 matmul %.4g TFLOP/s | copy bandwidth %.0f GB/s (read + write) | %s"
          % (n, tflops, gbs, device_name(device)))
    write_json(args.json, {"impl": "torch-gemm", "device": device_name(device), "gemm_n": n,
                           "gemm_tflops": tflops, "bandwidth_gbs": gbs})


def run(args, device):
    from transformers import Phi3ForCausalLM
    cfg = make_config(args.model, args.layers)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(args.seed)
    with torch.device(device):
        model = Phi3ForCausalLM(cfg)  # fp32 master weights, transformers' _init_weights
    model.train()
    if args.activation_checkpointing == "true":  # autotp's full layer recompute
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    n_params = sum(p.numel() for p in model.parameters())  # the tied embedding once
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": args.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)
    step_model = torch.compile(model) if args.mode == "compile" else model

    B, T, accum = args.micro_batch_size, args.seq_length, args.gradient_accumulation_steps
    tokens = B * T * accum
    L, H = cfg.num_hidden_layers, cfg.hidden_size
    flops = 6.0 * n_params * tokens + 12.0 * L * H * T * tokens
    gen = torch.Generator(device=device).manual_seed(args.seed + 1)
    last_loss = [0.0]

    def train_step():
        loss_sum = None
        for _ in range(accum):
            ids = torch.randint(0, cfg.vocab_size, (B, T), device=device, generator=gen)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = step_model(input_ids=ids, labels=ids).loss
            (loss / accum).backward()
            loss_sum = loss.detach() if loss_sum is None else loss_sum + loss.detach()
        if args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss_sum

    print("reference: transformers Phi3ForCausalLM %s, %d layers, %.1fM parameters | %s | %s"
          % (args.model, L, n_params / 1e6, device_name(device), args.mode))
    print("reference: seq %d x micro %d x accum %d = %d tokens per step; %d warmup + %d timed "
          "steps" % (T, B, accum, tokens, args.warmup, args.steps))
    sys.stdout.flush()
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        train_step()
    sync(device)
    warm_s = time.perf_counter() - t0
    times = []
    t_run = time.perf_counter()
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = train_step()
        sync(device)
        times.append(time.perf_counter() - t0)
    run_s = time.perf_counter() - t_run
    loss = float(loss) / accum
    step = run_s / args.steps
    mem = (torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda"
           else float("nan"))
    peak = args.peak_tflops or (989.0 if device.type == "cuda" else 0.05)
    tflops = flops / step / 1e12
    times.sort()
    result = {
        "impl": "torch-" + args.mode, "model": args.model, "layers": L, "parameters": n_params,
        "seq_length": T, "micro_batch": B, "grad_accum": accum, "tp": 1, "dp": 1,
        "zero_stage": None, "device": device_name(device), "tokens_per_step": tokens,
        "steps": args.steps, "warmup": args.warmup, "warmup_s": warm_s,
        "step_ms": step * 1e3, "step_ms_min": times[0] * 1e3,
        "step_ms_median": statistics.median(times) * 1e3, "step_ms_max": times[-1] * 1e3,
        "tokens_per_s": tokens / step, "tflops": tflops, "mfu": tflops / peak,
        "peak_tflops": peak, "peak_mem_gib": mem, "loss": loss, "flops_per_step": flops,
        "activation_checkpointing": args.activation_checkpointing == "true",
        "versions": {"torch": torch.__version__,
                     "transformers": __import__("transformers").__version__},
    }
    print("result: %.0f tokens/s | %.4g TFLOP/s | MFU %.1f%% of %.4g | peak memory %.2f GiB | "
          "step %.1f ms (min %.1f, max %.1f) | loss %.4f | warmup %.0f s"
          % (result["tokens_per_s"], tflops, 100 * result["mfu"], peak, mem, step * 1e3,
             times[0] * 1e3, times[-1] * 1e3, loss, warm_s))
    if not math.isfinite(loss):
        sys.exit("reference: the loss is not finite")
    write_json(args.json, result)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="phi-4-mini", choices=sorted(PRESETS))
    ap.add_argument("--layers", type=int, default=0, help="num_hidden_layers (0 = preset's)")
    ap.add_argument("--seq_length", type=int, default=2048)
    ap.add_argument("--micro_batch_size", type=int, default=4)
    ap.add_argument("--gradient_accumulation_steps", type=int, default=1)
    ap.add_argument("--mode", default="eager", choices=["eager", "compile", "gemm"])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--peak_tflops", type=float, default=0.0,
                    help="for MFU (default 989, an H100's dense bf16 peak)")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--weight_decay", type=float, default=0.01)
    ap.add_argument("--grad_clip", type=float, default=1.0, help="0 = off")
    ap.add_argument("--gemm_size", type=int, default=8192, help="n of --mode gemm")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--activation_checkpointing", nargs="?", const="true", default="false",
                    choices=["true", "false"], help="gradient checkpointing of every layer")
    ap.add_argument("--json", default="", help="write the results as JSON here")
    args = ap.parse_args()
    if args.steps <= 0 or args.warmup < 0:
        ap.error("--steps must be positive and --warmup not negative")
    device = torch.device(args.device)
    try:
        if args.mode == "gemm":
            measure_gemm(args, device)
        else:
            run(args, device)
    except torch.OutOfMemoryError as e:
        print("reference: out of memory (%s)" % str(e).split("\n")[0], file=sys.stderr)
        sys.exit(OOM_EXIT)


if __name__ == "__main__":
    main()
