"""Knowledge distillation (Hinton et al. 2015): a frozen teacher's softened predictions as a second training target.

The student's objective is ``(1 - alpha) CE + alpha T^2 KL(p_teacher^T || p_student^T)`` with ``p^T = softmax(logits
/ T)``, the KL averaged over the tokens: T^2 keeps the soft term's gradients at the scale of the hard one whatever T.
The teacher's logits are computed on the fly for every micro-batch (eval mode, no grad, nothing cached on disk);
``Teacher`` counts their cost.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..config import ModelConfig
from ..model.gpt import GPT, forward_flops_per_token
from .checkpoint import Checkpoint


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, cross_entropy: torch.Tensor,
                      alpha: float, temperature: float) -> torch.Tensor:
    """``(1 - alpha) cross_entropy + alpha T^2 KL(softmax(teacher / T) || softmax(student / T))``, the KL a mean over
    tokens (logits [..., V]); ``alpha = 0`` returns ``cross_entropy`` itself."""
    if alpha == 0:
        return cross_entropy
    vocab = student_logits.size(-1)
    student = F.log_softmax(student_logits.float().reshape(-1, vocab) / temperature, dim=-1)
    teacher = F.log_softmax(teacher_logits.float().reshape(-1, vocab) / temperature, dim=-1)
    kl = F.kl_div(student, teacher, reduction="batchmean", log_target=True)
    return (1 - alpha) * cross_entropy + alpha * temperature ** 2 * kl


@dataclass
class Teacher:
    """A frozen model whose logits enter the student's loss (``distillation_loss``), with the cost it adds: forward
    FLOPs per token (``model.gpt.forward_flops_per_token``) and the seconds its forwards took in this process."""

    model: GPT
    alpha: float
    temperature: float
    digest: str  # Checkpoint.fingerprint of its weights: what a run distilled from it records as its start
    seconds: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self.model.eval().requires_grad_(False)

    def flops_per_token(self, seq_len: int) -> float:
        return forward_flops_per_token(self.model.config, seq_len)

    def objective(self, idx: torch.Tensor, student_logits: torch.Tensor, cross_entropy: torch.Tensor) -> torch.Tensor:
        """The student's loss on the micro-batch ``idx`` (the teacher runs here, timed)."""
        if self.alpha == 0:
            return cross_entropy
        start = time.perf_counter()
        with torch.no_grad():
            logits, _ = self.model(idx)
        self.seconds += time.perf_counter() - start
        return distillation_loss(student_logits, logits, cross_entropy, self.alpha, self.temperature)

    def to(self, device: torch.device) -> "Teacher":
        self.model.to(device)
        return self


def load_teacher(ckpt: Checkpoint, student: ModelConfig, alpha: float, temperature: float) -> Teacher:
    """The teacher of ``ckpt``; refused unless it predicts the student's vocabulary (same tokenizer and size)."""
    model = ckpt.load_model()
    cfg = model.config
    if (cfg.tokenizer, cfg.vocab_size) != (student.tokenizer, student.vocab_size):
        raise ValueError(f"teacher {ckpt.path} predicts {cfg.vocab_size} ids of tokenizer {cfg.tokenizer!r}, the "
                         f"student {student.vocab_size} of {student.tokenizer!r}: a teacher must share the vocabulary")
    return Teacher(model, alpha, temperature, ckpt.fingerprint())
