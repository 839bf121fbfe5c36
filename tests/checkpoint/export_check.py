"""Compares transformers' logits for an exported checkpoint with autotp's own.

usage: export_check.py CHECKPOINT_LOGITS MODEL.h5 HF_DIR WORK_DIR
Prints the max absolute and relative difference (relative = max |a - b| / max |b|) and exits 1
when the relative one is above 1e-4.
"""
import subprocess
import sys

import numpy as np
import torch
from transformers import Phi3ForCausalLM

TOLERANCE = 1e-4


def main():
    helper, model_h5, hf_dir, work = sys.argv[1:5]
    model = Phi3ForCausalLM.from_pretrained(hf_dir, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    vocab = model.config.vocab_size
    ids = np.random.default_rng(0).integers(0, vocab, size=48).astype(np.int32)
    ids.tofile(f"{work}/ids.bin")
    subprocess.run([helper, model_h5, f"{work}/ids.bin", f"{work}/logits.bin"], check=True)
    ours = np.fromfile(f"{work}/logits.bin", dtype=np.float32).reshape(len(ids), vocab)
    with torch.no_grad():
        ref = model(torch.tensor(ids[None, :].astype(np.int64))).logits[0].double().numpy()
    diff = np.abs(ours.astype(np.float64) - ref)
    rel = diff.max() / np.abs(ref).max()
    print(f"export check: {len(ids)} tokens x {vocab} logits: max abs diff {diff.max():.3e}, "
          f"max rel diff {rel:.3e} (tolerance {TOLERANCE:g})")
    if not np.isfinite(rel) or rel > TOLERANCE:
        print("export check: FAILED")
        return 1
    print("export check: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
