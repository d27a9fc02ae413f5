"""The authors' GPT (DESIGN.md §2): RoPE, parameter-free RMSNorm, no biases, untied head.

Parameter names and shapes match the released checkpoints (``transformer.wte.weight``,
``transformer.h.{i}.attn.c_attn.weight`` [3C, C], ... ``lm_head.weight``), so their state dicts load as they are.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .chunked_loss import linear_cross_entropy


def rms_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Parameter-free RMSNorm computed in fp32 and cast back to the input dtype."""
    return F.rms_norm(x.float(), (x.size(-1),), eps=eps).type_as(x)


class Rotary(nn.Module):
    """Rotary position embedding on the two halves of each head: y1 = x1 cos + x2 sin, y2 = -x1 sin + x2 cos."""

    def __init__(self, head_dim: int, max_len: int, base: float):
        super().__init__()
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
        angles = torch.outer(torch.arange(max_len, dtype=torch.float64), inv_freq)
        # buffers are not in the state dict (the authors' model stores inv_freq; loading checks it against this one)
        self.register_buffer("inv_freq", inv_freq.float(), persistent=False)
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, T, H, D] -> same shape, rotated by position: 0 .. T-1, or ``positions`` [B, T] if given."""
        T, half = x.size(1), x.size(-1) // 2
        if positions is None:
            cos, sin = self.cos[None, :T, None, :], self.sin[None, :T, None, :]
        else:
            cos, sin = self.cos[positions][:, :, None, :], self.sin[positions][:, :, None, :]
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat((x1 * cos + x2 * sin, -x1 * sin + x2 * cos), dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        self.rotary = Rotary(cfg.head_dim, cfg.block_size, cfg.rope_base)

    def forward(
        self, x: torch.Tensor, positions: torch.Tensor | None = None, attn_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Causal attention; or, with ``attn_mask`` [B, T, T] bool (True: query t may read key s), that mask, and
        rotary positions ``positions`` [B, T] (default 0 .. T-1)."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head) for t in (q, k, v))
        q, k = self.rotary(q, positions), self.rotary(k, positions)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if attn_mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask[:, None])
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))  # exact (erf) GELU


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.eps = cfg.norm_eps
        self.attn_scale = 1.0 / math.sqrt(2 * cfg.n_layer)
        self.attn = CausalSelfAttention(cfg)
        self.mlp = MLP(cfg)

    def forward(
        self, x: torch.Tensor, positions: torch.Tensor | None = None, attn_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = x + self.attn_scale * self.attn(rms_norm(x, self.eps), positions, attn_mask)
        return x + self.mlp(rms_norm(x, self.eps))


class GPT(nn.Module):
    """Decoder-only transformer. ``forward(idx, targets)`` -> ``(logits, loss)``."""

    def __init__(self, cfg: ModelConfig, seed: int | None = None):
        """``seed`` makes the init independent of the global RNG: GPT(cfg, seed=s) is the same for every s."""
        super().__init__()
        self.config = cfg
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
                h=nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer)),
            )
        )
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.transformer.wte.weight
        self.reset_parameters(None if seed is None else torch.Generator().manual_seed(seed))

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """normal(0, 0.02) everywhere; ``*.c_proj.weight`` gets 0.02 / sqrt(2 n_layer)."""
        for name, p in self.named_parameters():
            p.normal_(0.0, init_std(self.config, name), generator=generator)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        return_hidden: bool = False,
        loss_chunk: int = 0,
    ):
        """Logits [B, T, V] (fp32) and the mean cross-entropy if ``targets`` is given (-1 entries ignored).

        With ``return_hidden=True`` a third element lists the residual stream after the embedding and after
        every block (``n_layer + 1`` tensors [B, T, C]; the last one precedes the final norm). With ``targets`` and
        ``loss_chunk`` > 0 the loss is taken ``loss_chunk`` positions at a time (``chunked_loss``) and the logits,
        never made whole, are None.
        """
        hidden = self.hidden_states(idx)
        x = rms_norm(hidden[-1], self.config.norm_eps)
        if targets is not None and loss_chunk:
            logits, loss = None, linear_cross_entropy(x, self.lm_head.weight, targets, loss_chunk)
        else:
            logits = self.head(x)
            loss = None if targets is None else F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1),
                                                                ignore_index=-1)
        return (logits, loss, hidden) if return_hidden else (logits, loss)

    def hidden_states(
        self, idx: torch.Tensor, positions: torch.Tensor | None = None, attn_mask: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """The residual stream after the embedding and after every block (no final norm, no vocabulary head).

        By default token t sits at position t and reads tokens 0 .. t. Packed sequences give their own ``positions``
        [B, T] (each below ``block_size``; the sequence itself may be longer) and ``attn_mask`` [B, T, T] (bool, True
        where query t may read key s; every query must read at least one key), e.g. a shared context followed by
        several continuations that each read the context and themselves, at the positions they would have alone.
        Keeping the list costs no memory in training: each block's output is saved for backward anyway.
        """
        if (positions is None) != (attn_mask is None):
            raise ValueError("packed sequences need both positions and attn_mask")
        if positions is None and idx.size(1) > self.config.block_size:
            raise ValueError(f"sequence length {idx.size(1)} exceeds the model's block_size {self.config.block_size}")
        if positions is not None and positions.numel() and not (
                0 <= int(positions.min()) and int(positions.max()) < self.config.block_size):
            raise ValueError(f"positions must lie in 0 .. block_size - 1 = {self.config.block_size - 1}")
        hidden = [self.transformer.wte(idx)]
        for block in self.transformer.h:
            hidden.append(block(hidden[-1], positions, attn_mask))
        return hidden

    def final_hidden(
        self, idx: torch.Tensor, positions: torch.Tensor | None = None, attn_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The normed last residual stream [B, T, C], what the vocabulary head reads (``head``); arguments as in
        ``hidden_states``. ``head(final_hidden(idx))`` are ``forward``'s logits."""
        return rms_norm(self.hidden_states(idx, positions, attn_mask)[-1], self.config.norm_eps)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Logits (fp32) of final hidden states ``h`` [..., C] -> [..., V]: apply it only to the rows that are read."""
        return self.lm_head(h).float()

    def num_params(self, count_embedding: bool = True) -> int:
        """Unique parameters; without the input embedding if ``count_embedding`` is False (tied heads stay)."""
        n = sum(p.numel() for p in self.parameters())
        if not count_embedding and not self.config.tie_embeddings:
            n -= self.transformer.wte.weight.numel()
        return n


def init_std(cfg: ModelConfig, param_name: str) -> float:
    """The init standard deviation of a parameter (DESIGN.md §2)."""
    if param_name.endswith("c_proj.weight"):
        return cfg.init_std / math.sqrt(2 * cfg.n_layer)
    return cfg.init_std


def flops_per_token(cfg: ModelConfig, seq_len: int | None = None) -> float:
    """Training FLOPs per token: 6 x (matmul weights) + 12 x n_layer x n_embd x seq_len (attention scores).

    The input embedding is a lookup, not a matmul, so it is excluded; the lm_head is counted (also when tied).
    """
    T = seq_len or cfg.block_size
    return 6.0 * matmul_weights(cfg) + 12.0 * cfg.n_layer * cfg.n_embd * T


def matmul_weights(cfg: ModelConfig) -> int:
    """Weights a token meets in a matmul: 12 C^2 per block (c_attn 3C^2, c_proj C^2, MLP 8C^2) and the lm_head."""
    return cfg.n_layer * 12 * cfg.n_embd ** 2 + cfg.vocab_size * cfg.n_embd


def forward_flops_per_token(cfg: ModelConfig, seq_len: int | None = None) -> float:
    """Forward-only FLOPs per token (a teacher's, an evaluation's): a third of ``flops_per_token`` (the backward
    pass costs twice the forward): 2 x (matmul weights) + 4 x n_layer x n_embd x seq_len."""
    return flops_per_token(cfg, seq_len) / 3.0


# Peak dense bf16 tensor-core FLOP/s of common accelerators, for MFU.
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12, "4090": 165e12}


def peak_flops(device: torch.device) -> float | None:
    """Peak bf16 FLOP/s of a CUDA device if known (None on CPU or unknown GPUs)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)
