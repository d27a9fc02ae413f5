"""How many rows should meet the vocabulary head at once when scoring: items/s of the scorer on the same HellaSwag
items for several ``lm.HEAD_CHUNK_LOGITS`` (logits per chunk; "all" = one [rows, V] tensor per forward).

    python bench/head_rows.py --presets tiny,cpu --limit 100 --threads 2

Each chunk's logits are reduced (log-softmax at the target, argmax) right after they are made; on a CPU a chunk that
fits the last-level cache saves writing and re-reading a [rows, 50k] fp32 tensor through memory, which matters
where the head's matmul is cheap per logit (a narrow model). Per-item scores must not change beyond rounding.
"""
from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scoring_reads import timed  # noqa: E402

from genprune_nb.config import get_preset  # noqa: E402
from genprune_nb.evals import hellaswag  # noqa: E402
from genprune_nb.evals.scorer import score  # noqa: E402
from genprune_nb.model import lm  # noqa: E402
from genprune_nb.model.gpt import GPT  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="tiny,cpu", help="model shapes (random init), comma separated")
    ap.add_argument("--chunks", default="all,21,22,23,24,25", help="log2 of logits per chunk, or 'all'")
    ap.add_argument("--limit", type=int, default=100, help="HellaSwag items")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each setting (the best counts)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} "
          f"threads; {args.limit} HellaSwag items, best of {args.repeats}")
    default = lm.HEAD_CHUNK_LOGITS["cpu"]
    for name in args.presets.split(","):
        cfg = get_preset(name).model
        model = GPT(cfg, seed=0).eval()
        groups = [hellaswag.question(item, "authors", cfg.tokenizer).requests
                  for item in hellaswag.load(limit=args.limit)]
        print(f"\n{name}: L={cfg.n_layer} C={cfg.n_embd} V={cfg.vocab_size}")
        baseline = None
        for chunk in args.chunks.split(","):
            logits = 2**62 if chunk == "all" else int(2 ** float(chunk))
            lm.HEAD_CHUNK_LOGITS["cpu"] = logits
            score(model, groups[:2])  # warm-up
            scores, dt = timed(lambda: score(model, groups), device, args.repeats)
            values = torch.tensor([s.logprob for g in scores for s in g], dtype=torch.float64)
            baseline = values if baseline is None else baseline
            rows = "all" if chunk == "all" else lm.head_rows(device, cfg.vocab_size)
            print(f"  chunk {chunk:>4s} ({rows:>5} rows): {len(groups) / dt:7.1f} items/s; max |dlogprob| vs first "
                  f"{(values - baseline).abs().max().item():.2e}{'  <- default' if logits == default else ''}")
        lm.HEAD_CHUNK_LOGITS["cpu"] = default


if __name__ == "__main__":
    main()
