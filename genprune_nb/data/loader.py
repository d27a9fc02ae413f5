"""Distributed-aware sequential loader over token shards (llm.c / modded-nanogpt semantics).

Each step the whole world consumes ``B*T*world`` consecutive tokens of the current shard: rank ``r`` reads the
``B*T + 1`` tokens at ``position + r*B*T`` (inputs and next-token targets), then ``position`` advances by
``B*T*world``. When the next step would run past the shard end the loader moves to the next shard at position 0;
after the last shard it wraps to the first and ``epoch`` increases. The state (shard, position, epoch) is the same
on every rank, so one rank's :meth:`TokenLoader.state_dict` restores all of them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .shards import check_vocab, read_header, read_shard, require_tokenizer


def tokens_per_step(batch_size: int, seq_len: int, world_size: int = 1) -> int:
    """Tokens consumed by the whole world in one step (``B*T*world``)."""
    return batch_size * seq_len * world_size


def steps_per_epoch(shard_tokens: Sequence[int], step_tokens: int) -> int:
    """Steps of ``step_tokens`` that shards of these token counts give before a loader wraps (a step reads one token
    past its end, as the next-token target, and never crosses a shard's end)."""
    return sum((n - 1) // step_tokens for n in shard_tokens)


class TokenLoader:
    """Yields ``(x, y)`` int64 tensors of shape ``[batch_size, seq_len]`` for one rank; ``y`` is ``x`` shifted by one.

    With ``shuffle_seed`` the step-sized blocks of each shard are visited in a permuted order drawn from
    (seed, epoch, shard): seeds see the same tokens per epoch in different orders, still deterministic and
    resumable. Without it the order is sequential (DESIGN.md §4).

    With ``vocab_size`` each shard is checked once, when first opened, for token ids the model cannot embed; with
    ``tokenizer`` (the model's) a shard whose header records another tokenizer is refused up front.
    """

    def __init__(
        self,
        files: Sequence[str | os.PathLike],
        batch_size: int,
        seq_len: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle_seed: int | None = None,
        vocab_size: int | None = None,
        tokenizer: str | None = None,
    ):
        if not files:
            raise ValueError("TokenLoader needs at least one shard file")
        if batch_size < 1 or seq_len < 1:
            raise ValueError(f"batch_size and seq_len must be >= 1, got {batch_size} and {seq_len}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.files = [Path(f) for f in files]
        self.shuffle_seed = shuffle_seed
        self.vocab_size = vocab_size
        self._in_vocab: set[int] = set()  # shards already checked against vocab_size
        self.batch_size, self.seq_len, self.rank, self.world_size = batch_size, seq_len, rank, world_size
        self.step_tokens = tokens_per_step(batch_size, seq_len, world_size)
        # headers are checked up front (cheap), so a bad or short shard fails now, not hours into training
        self._n_tokens = [read_header(f).n_tokens for f in self.files]
        if tokenizer is not None:
            require_tokenizer(self.files, tokenizer)
        for f, n in zip(self.files, self._n_tokens):
            if n < self.step_tokens + 1:
                raise ValueError(
                    f"shard {f} holds {n} tokens, fewer than one step of the whole world needs "
                    f"(B*T*world + 1 = {batch_size}*{seq_len}*{world_size} + 1 = {self.step_tokens + 1})"
                )
        self._open: tuple[int, np.ndarray] | None = None
        self.reset()

    def steps_per_epoch(self) -> int:
        """Steps of the whole world before the loader wraps around to the first shard."""
        return steps_per_epoch(self._n_tokens, self.step_tokens)

    def reset(self) -> None:
        """Go back to the start of the first shard, epoch 0."""
        self.shard, self.position, self.epoch = 0, 0, 0

    def _tokens(self) -> np.ndarray:
        if self._open is None or self._open[0] != self.shard:
            tokens = read_shard(self.files[self.shard])
            if self.vocab_size is not None and self.shard not in self._in_vocab:
                check_vocab(self.files[self.shard], tokens, self.vocab_size)
                self._in_vocab.add(self.shard)
            self._open = (self.shard, tokens)  # the previous map is released
        return self._open[1]

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's next ``(x, y)``, CPU int64 tensors of shape ``[B, T]``."""
        if self.position + self.step_tokens + 1 > self._n_tokens[self.shard]:
            self.shard, self.position = self.shard + 1, 0
            if self.shard == len(self.files):
                self.shard, self.epoch = 0, self.epoch + 1
        n = self.batch_size * self.seq_len
        start = self._block_offset() + self.rank * n
        buf = torch.from_numpy(self._tokens()[start : start + n + 1].astype(np.int64))
        self.position += self.step_tokens
        return buf[:-1].view(self.batch_size, self.seq_len), buf[1:].view(self.batch_size, self.seq_len)

    def _block_offset(self) -> int:
        """Token offset of the current step's block: ``position``, or its permuted block when shuffling."""
        if self.shuffle_seed is None:
            return self.position
        n_blocks = (self._n_tokens[self.shard] - 1) // self.step_tokens
        perm = np.random.default_rng([self.shuffle_seed, self.epoch, self.shard]).permutation(n_blocks)
        return int(perm[self.position // self.step_tokens]) * self.step_tokens

    def state_dict(self) -> dict:
        """JSON-serialisable position in the token stream, plus the geometry it is valid for."""
        return {
            "shard": self.shard,
            "position": self.position,
            "epoch": self.epoch,
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
            "world_size": self.world_size,
            "shuffle_seed": self.shuffle_seed,
            "files": [f.name for f in self.files],
        }

    def stream_position(self) -> dict:
        """Where the whole world stands in the token stream (shard, position, epoch): what ``seek`` takes."""
        return {"shard": self.shard, "position": self.position, "epoch": self.epoch}

    def seek(self, state: Mapping[str, Any]) -> None:
        """Continue at the stream position ``state`` (``stream_position`` or ``state_dict``) of a loader over the
        same shards, whatever its batch geometry, provided the position is a step boundary of this loader's."""
        missing = sorted({"shard", "position", "epoch"} - set(state))
        if missing:
            raise ValueError(f"loader stream position lacks {missing}")
        if "files" in state and list(state["files"]) != [f.name for f in self.files]:
            raise ValueError(f"loader stream position is in the shards {list(state['files'])}, this loader reads "
                             f"{[f.name for f in self.files]}")
        shard, position, epoch = int(state["shard"]), int(state["position"]), int(state["epoch"])
        if not 0 <= shard < len(self.files):
            raise ValueError(f"loader state shard={shard} is outside [0, {len(self.files)})")
        if not 0 <= position <= self._n_tokens[shard] or position % self.step_tokens:
            raise ValueError(
                f"loader state position={position} is not a step boundary within shard {self.files[shard]} "
                f"({self._n_tokens[shard]} tokens, {self.step_tokens} tokens per step)"
            )
        if epoch < 0:
            raise ValueError(f"loader state epoch={epoch} is negative")
        self.shard, self.position, self.epoch = shard, position, epoch

    def load_state_dict(self, state: dict) -> None:
        """Continue exactly where :meth:`state_dict` was taken; the geometry and shard names must match."""
        current = self.state_dict()
        missing = sorted(set(current) - set(state))
        if missing:
            raise ValueError(f"loader state lacks {missing}")
        for key in ("batch_size", "seq_len", "world_size", "shuffle_seed", "files"):
            if state[key] != current[key]:
                raise ValueError(
                    f"loader state has {key}={state[key]!r} but this loader has {current[key]!r}; "
                    "resuming would change the token stream"
                )
        self.seek(state)
