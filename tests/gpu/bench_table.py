#!/usr/bin/env python3
"""Writes OUT_DIR/bench.md from the JSON files of tests/gpu/run_bench.sh: per case, autotp and
the transformers runs side by side, each with its ratio to torch.compile of the same case; then
autotp's floor and step breakdown, and the GEMM ceiling measured in the same session.

  python3 bench_table.py OUT_DIR

Files: OUT_DIR/<case>__<impl>.json (autotp-bench --json or hf_reference_bench.py --json),
OUT_DIR/<case>__<impl>.failed holding one line on why a run gave no result, gemm.json.
"""
import glob
import json
import os
import sys

IMPL_ORDER = ["autotp", "torch-eager", "torch-compile"]


def load(out):
    cases = {}
    for path in sorted(glob.glob(os.path.join(out, "*__*.json")) +
                       glob.glob(os.path.join(out, "*__*.failed"))):
        stem, ext = os.path.splitext(os.path.basename(path))
        case, impl = stem.split("__", 1)
        if ext == ".json":
            with open(path) as f:
                cases.setdefault(case, {})[impl] = json.load(f)
        else:
            with open(path) as f:
                cases.setdefault(case, {}).setdefault(impl, {"failed": f.read().strip()})
    return cases


def fmt(x, spec):
    return "n/a" if x is None or x != x else format(x, spec)


def autotp_details(impl, a):
    """The floor and the step breakdown of one autotp run."""
    lines = []
    if "floor" in a:
        f = a["floor"]
        lines.append(
            "%s floor: GEMM %.1f ms at the measured %.4g TFLOP/s (backend matmul %d^3) / "
            "%.1f ms at 782; attention (causal half) %.1f ms; memory-bound %.1f GB = %.1f ms "
            "(fp32 activations) or %.1f GB = %.1f ms (bf16) at %.0f GB/s." % (
                impl, f["gemm_ms"], f["gemm_tflops_measured"], f["gemm_n"], f["gemm_ms_at_782"],
                f["attention_ms"], f["bytes_fp32_act"] / 1e9, f["memory_ms_fp32_act"],
                f["bytes_bf16_act"] / 1e9, f["memory_ms_bf16_act"],
                f["bandwidth_gbs_measured"]))
    p = a.get("profile")
    if p:
        parts = ["%s %.1f" % (k, v) for k, v in p.get("phases_ms", {}).items()]
        lines.append("%s profile (%d steps, synchronized, %.1f ms/step): phases ms: %s; "
                     "communication %.1f ms." % (impl, p["steps"], p["step_ms"], ", ".join(parts),
                                                 p["tp_comm_ms"] + p["dp_comm_ms"]))
        if "summary_ms" in p:
            lines.append("%s step breakdown ms: " % impl + ", ".join(
                "%s %.1f" % (k, v) for k, v in p["summary_ms"].items()) + ".")
        if "ops_ms" in p:
            lines.append("%s GPU time per op category ms: " % impl + ", ".join(
                "%s %.1f" % (k, v) for k, v in sorted(p["ops_ms"].items())) + ".")
    return lines


def case_table(case, runs):
    lines = ["### " + case, "",
             "| run | tokens/step | tokens/s | TFLOP/s | MFU | peak GiB | planned GiB | "
             "GPU in use GiB | step ms | vs torch.compile |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    compiled = runs.get("torch-compile", {}).get("tokens_per_s")
    for impl in sorted(runs, key=lambda i: (IMPL_ORDER.index(i) if i in IMPL_ORDER else 9, i)):
        r = runs[impl]
        if "failed" in r:
            lines.append("| %s | | %s | | | | | | | |" % (impl, r["failed"]))
            continue
        ratio = "%.2fx" % (r["tokens_per_s"] / compiled) if compiled else "n/a"
        label = "%s (micro %d)" % (impl, r["micro_batch"])
        planned = r.get("planned_mem", {}).get("total")
        planned = fmt(planned / 2 ** 30, ".2f") if planned else ""
        if r.get("planned_mem", {}).get("grad_buckets"):
            planned += " (bucketed)"
        used = r.get("device_used_gib", -1)
        used = fmt(used, ".2f") if used is not None and used >= 0 else ""
        if "dp" in r and r.get("dp", 1) * r.get("tp", 1) > 1 and used:
            used += " (%d ranks)" % (r["dp"] * r["tp"])
        lines.append("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            label, r["tokens_per_step"], fmt(r["tokens_per_s"], ",.0f"),
            fmt(r["tflops"], ".1f"), fmt(100 * r["mfu"], ".1f") + "%",
            fmt(r["peak_mem_gib"], ".2f"), planned, used, fmt(r["step_ms"], ".1f"), ratio))
    lines.append("")
    for impl in sorted(i for i in runs if i.startswith("autotp")):
        lines += autotp_details(impl, runs[impl])
    lines.append("")
    return lines


def main():
    out = sys.argv[1]
    cases = load(out)
    lines = ["# autotp-bench vs transformers", "",
             "Written by tests/gpu/run_bench.sh. tokens/s, TFLOP/s and MFU as anchors.md counts "
             "them (6 N tokens + 12 L H T tokens; MFU of the dense bf16 peak). Peak memory: "
             "autotp's device high-water mark, torch.cuda.max_memory_allocated for transformers.",
             ""]
    gemm = os.path.join(out, "gemm.json")
    if os.path.exists(gemm):
        with open(gemm) as f:
            g = json.load(f)
        lines += ["Same session: torch bf16 %d^3 matmul %.4g TFLOP/s (anchors.md: 782); copy "
                  "bandwidth %.0f GB/s; %s." % (g["gemm_n"], g["gemm_tflops"],
                                                g["bandwidth_gbs"], g["device"]), ""]
    for case in sorted(cases):
        lines += case_table(case, cases[case])
    tmp = os.path.join(out, "bench.md.tmp")
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, os.path.join(out, "bench.md"))


if __name__ == "__main__":
    main()
