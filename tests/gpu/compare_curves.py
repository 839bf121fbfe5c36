#!/usr/bin/env python3
"""Compares two training runs' loss curves (metrics.jsonl: one JSON object per logged step with
"step" and "loss").

A bf16 run "follows" an fp32 run when, step by step on the same batches, the losses differ by
at most --max-rel relative (default 2e-2: bf16 rounding moves the weights a little every step,
so the curves wander apart slightly but never by a visible amount) and the final losses by at
most --final-rel relative (default 1e-2: the run ends where the reference ends).

usage: compare_curves.py NAME A/metrics.jsonl B/metrics.jsonl [--max-rel X] [--final-rel Y]
Prints one line (PASS or FAIL with the numbers); exit 0 on PASS, 1 on FAIL, 2 on unreadable input.
"""
import argparse
import json
import sys


def read_losses(path):
    losses = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
                losses[int(rec["step"])] = float(rec["loss"])
            except (ValueError, KeyError) as e:
                raise SystemExit(f"{path}:{n}: not a metrics record ({e})")
    return losses


def main():
    p = argparse.ArgumentParser()
    p.add_argument("name")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--max-rel", type=float, default=2e-2)
    p.add_argument("--final-rel", type=float, default=1e-2)
    args = p.parse_args()
    try:
        a, b = read_losses(args.a), read_losses(args.b)
    except (OSError, SystemExit) as e:
        print(f"FAIL {args.name}: {e}")
        return 2
    steps = sorted(set(a) & set(b))
    if not steps or len(steps) != len(a) or len(steps) != len(b):
        print(f"FAIL {args.name}: the runs logged different steps ({len(a)} vs {len(b)} records, "
              f"{len(steps)} in common)")
        return 1
    abs_d = {s: abs(a[s] - b[s]) for s in steps}
    rel_d = {s: abs_d[s] / max(abs(b[s]), 1e-12) for s in steps}
    worst_abs = max(steps, key=lambda s: abs_d[s])
    worst_rel = max(steps, key=lambda s: rel_d[s])
    last = steps[-1]
    final_rel = rel_d[last]
    mean_rel = sum(rel_d.values()) / len(steps)
    ok = rel_d[worst_rel] <= args.max_rel and final_rel <= args.final_rel
    print(f"{'PASS' if ok else 'FAIL'} {args.name}: {len(steps)} steps, "
          f"max abs diff {abs_d[worst_abs]:.4g} (step {worst_abs}), "
          f"max relative {rel_d[worst_rel]:.3g} (step {worst_rel}; limit {args.max_rel:g}), "
          f"mean relative {mean_rel:.3g}, final loss {a[last]:.5f} vs {b[last]:.5f} "
          f"(relative {final_rel:.3g}; limit {args.final_rel:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
