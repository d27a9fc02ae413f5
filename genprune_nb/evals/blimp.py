"""BLiMP (Warstadt et al. 2020): 67 paradigms x 1000 minimal pairs of English grammar.

Each whole sentence is scored after ``<|endoftext|>`` (a document start), under one of two conventions:

* ``BABYLM`` (DESIGN.md §5, the paper's figures): the sentence's own tokens, right iff log P(good) > log P(bad);
* ``LMEVAL`` (lm-eval's ``blimp_*`` tasks): ``" " + sentence`` (its target delimiter), a tie counts as right (>=).

Rows: accuracy per paradigm, per phenomenon (the files' ``linguistics_term``, 13 groups; unweighted mean over
its paradigms) and overall = unweighted mean over paradigms (the BabyLM convention; lm-eval's group mean over the 67
equal-sized paradigms is the same number).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..data import catalog
from ..model.lm import model_tokenizer
from ..tokenizer import Tokenizer
from .datafile import DataFormatError, LimitRule, check_limit, per_subset_cap, read_jsonl, take
from .scorer import BATCH_SIZE, Request, score

FIELDS = ("sentence_good", "sentence_bad", "UID", "linguistics_term")


@dataclass(frozen=True)
class Convention:
    """How a pair is scored: the text before each sentence (after ``<|endoftext|>``) and whether a tie is right."""

    separator: str
    tie_is_right: bool

    def right(self, good: float, bad: float) -> bool:
        return good >= bad if self.tie_is_right else good > bad


BABYLM = Convention(separator="", tie_is_right=False)
LMEVAL = Convention(separator=" ", tie_is_right=True)


@dataclass(frozen=True)
class Pair:
    paradigm: str
    phenomenon: str
    good: str
    bad: str


def read_paradigm(path: str | Path, limit: int | None = None) -> list[Pair]:
    """The pairs (the first ``limit``, or all) of one ``<paradigm>.jsonl`` file; each row's UID must be its paradigm."""
    path = Path(path)
    pairs: list[Pair] = []
    for line, rec in read_jsonl(path, FIELDS):
        if limit is not None and len(pairs) == limit:
            break
        if rec["UID"] != path.stem:
            raise DataFormatError(path, line, f"UID {rec['UID']!r} differs from the file's paradigm {path.stem!r}")
        good, bad = rec["sentence_good"], rec["sentence_bad"]
        if not (isinstance(good, str) and isinstance(bad, str) and good.strip() and bad.strip()):
            raise DataFormatError(path, line, "sentence_good and sentence_bad must be non-empty strings")
        if pairs and rec["linguistics_term"] != pairs[0].phenomenon:
            raise DataFormatError(path, line, f"linguistics_term {rec['linguistics_term']!r} differs from the "
                                              f"paradigm's {pairs[0].phenomenon!r}")
        pairs.append(Pair(path.stem, rec["linguistics_term"], good, bad))
    if not pairs:
        raise DataFormatError(path, 1, "no pairs")
    return pairs


def paradigm_files(root: str | Path | None = None) -> list[Path]:
    """The ``<paradigm>.jsonl`` files in alphabetical order (default folder: the catalog's BLiMP)."""
    folder = Path(root) if root is not None else catalog.locate("blimp")
    paths = sorted(folder.glob("*.jsonl"))
    if not paths:
        raise FileNotFoundError(f"no BLiMP files {folder}/<paradigm>.jsonl")
    return paths


def load(root: str | Path | None = None) -> dict[str, list[Pair]]:
    """Paradigm -> all its pairs."""
    return {p.stem: read_paradigm(p) for p in paradigm_files(root)}


def pairs(limit: int | None = None, root: str | Path | None = None,
          rule: LimitRule = "round_robin") -> dict[str, list[Pair]]:
    """The pairs to evaluate: all, or those a ``limit`` picks under ``rule`` (``round_robin``: ``limit`` in all, in
    turn over paradigms; ``per_subset``: the first ``limit`` of each paradigm), reading no more than needed."""
    check_limit(limit)
    paths = paradigm_files(root)
    cap = per_subset_cap(limit, len(paths), rule)
    return take({p.stem: read_paradigm(p, cap) for p in paths}, limit, rule)


def requests(by_paradigm: dict[str, list[Pair]], convention: Convention = BABYLM,
             tokenizer: Tokenizer | str = "gpt2") -> list[tuple[Request, Request]]:
    """(good, bad) sentence requests of every pair, paradigm after paradigm, encoded by ``tokenizer`` (the model's)."""
    sep = convention.separator
    return [(Request.sentence(p.good, sep, tokenizer), Request.sentence(p.bad, sep, tokenizer))
            for ps in by_paradigm.values() for p in ps]


def evaluate(
    model: nn.Module,
    by_paradigm: dict[str, list[Pair]],
    convention: Convention = BABYLM,
    *,
    batch_size: int = BATCH_SIZE,
    progress: bool = False,
    encoded: list[tuple[Request, Request]] | None = None,
) -> list[dict[str, Any]]:
    """Rows ``acc`` under ``convention``: overall (mean over paradigms), per phenomenon, per paradigm.

    ``encoded``: the pairs' :func:`requests` under the model's tokenizer, if already built (default: built here)."""
    groups = requests(by_paradigm, convention, model_tokenizer(model)) if encoded is None else encoded
    scores = score(model, groups, batch_size=batch_size, progress=progress, desc="blimp")
    correct = iter(convention.right(good.logprob, bad.logprob) for good, bad in scores)
    paradigm_rows = []
    for paradigm, ps in by_paradigm.items():
        hits = sum(next(correct) for _ in ps)
        paradigm_rows.append({"metric": "acc", "value": hits / len(ps), "n": len(ps), "paradigm": paradigm,
                              "phenomenon": ps[0].phenomenon})
    phenomena: dict[str, list[dict[str, Any]]] = {}
    for row in paradigm_rows:
        phenomena.setdefault(row["phenomenon"], []).append(row)
    rows = [_mean(paradigm_rows)]
    rows += [{**_mean(rs), "phenomenon": ph} for ph, rs in sorted(phenomena.items())]
    return rows + paradigm_rows


def _mean(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Unweighted mean of paradigm accuracies; ``n`` counts their pairs."""
    return {"metric": "acc", "value": sum(r["value"] for r in rows) / len(rows), "n": sum(r["n"] for r in rows)}
