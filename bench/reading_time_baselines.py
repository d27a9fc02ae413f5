"""Natural Stories (10,256 words): raw r vs the held-out gain over the token-count baseline, for a pure token
counter (a uniform next-token model: surprisal = n_tokens * log2 50257) and a word-bigram model of the training
corpus (english_prose, add-0.1 smoothing; a real, if weak, contextual predictor).

    python bench/reading_time_baselines.py     # ~50 s on a 2-core CPU; prints one line per surprisal
"""
import math
from collections import Counter

import numpy as np

from genprune_nb.alignment import behavior
from genprune_nb.alignment.behavior import WORD
from genprune_nb.alignment.reading_times import natural_stories, story_words
from genprune_nb.alignment.surprisal import tokenize_words
from genprune_nb.data.catalog import text_files

rts = natural_stories()
counts = behavior.corpus_word_counts()
n_tokens = np.concatenate([np.bincount(tokenize_words(w, s)[1], minlength=len(w)) for _, w, s in story_words(rts)])
counter = rts.copy(data=n_tokens * math.log2(50257)).rename("surprisal")
counter = counter.assign_coords(n_tokens=("presentation", n_tokens))

pairs: Counter = Counter()
for path in text_files("english_prose"):
    toks = WORD.findall(path.read_text(encoding="utf-8", errors="replace").lower())
    pairs.update(zip(toks, toks[1:]))
vocab, k = len(counts), 0.1
words = [behavior.normalize_word(w) for w in rts["word"].values]
prev = ["<s>"] + words[:-1]
bits = np.array([-math.log2((pairs.get((a, b), 0) + k * (counts.get(b, 0) + 1) / (sum(counts.values()) + vocab))
                            / (counts.get(a, 0) + k)) for a, b in zip(prev, words)])
bigram = counter.copy(data=bits)

old = ("length", "log_frequency", "position", "previous_surprisal")
for label, s in (("token counter", counter), ("word bigram", bigram)):
    rows = {r["metric"]: r["value"] for r in behavior.score(s, rts, counts=counts, ceiling_value=0.858, n_boot=1000)}
    insample_old = behavior.regress(behavior.predictors(rts, s, counts), old).delta_loglik
    print(f"{label}: r = {rows['pearson_r']:.3f}; in-sample dLL over the old baseline = {insample_old:.1f}; "
          f"held-out dLL over the new baseline = {rows['delta_loglik']:.1f} "
          f"[{rows['delta_loglik_low']:.1f}, {rows['delta_loglik_high']:.1f}], dR2 = {rows['delta_r2']:.4f} "
          f"[{rows['delta_r2_low']:.4f}, {rows['delta_r2_high']:.4f}]")
