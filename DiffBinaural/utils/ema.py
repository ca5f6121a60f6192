"""Exponential moving average of model weights (sample from ``EMA.module``).

After each optimiser step: θ_ema ← d · θ_ema + (1 - d) · θ (Polyak averaging as used by DDPM / DiT).
Floating-point parameters are averaged; buffers (e.g. BatchNorm statistics, integer counters) are
copied from the live model, since averaging them is either meaningless or not what the model saw.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["EMA", "unwrap_model"]


def unwrap_model(model: nn.Module) -> nn.Module:
    """Strip DistributedDataParallel / DataParallel (``.module``) and torch.compile (``._orig_mod``) wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


class EMA:
    """A frozen, eval-mode shadow copy of a model whose weights track an exponential moving average.

    Args:
        model: the live model (may be DDP- or torch.compile-wrapped; the unwrapped module is copied).
        decay: d, the weight of the old average per update (0.999 ≈ a horizon of 1000 steps).
        warmup_steps: for the first ``warmup_steps`` updates the shadow is a plain copy of the model
            (d = 0), so early, random-init weights do not linger in the average (DiT's
            ``update_ema(ema, model, decay=0)`` at the start, extended over a few steps).
        ramp: after warm-up use d_n = min(decay, (1 + n) / (10 + n)) for update n (the num_updates
            rule of TensorFlow's ExponentialMovingAverage), so that a short run's average is not
            dominated by the random initial weights; the decay reaches 0.999 after ~9000 updates.
    """

    def __init__(self, model: nn.Module, *, decay: float = 0.999, warmup_steps: int = 0, ramp: bool = True) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must lie in [0, 1], got {decay}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.decay = decay
        self.warmup_steps = warmup_steps
        self.ramp = ramp
        self.num_updates = 0
        self.module = copy.deepcopy(unwrap_model(model))
        self.module.requires_grad_(False)
        self.module.eval()

    def current_decay(self) -> float:
        """The d used by the next :meth:`update` (0 during warm-up)."""
        if self.num_updates < self.warmup_steps:
            return 0.0
        if self.ramp:
            return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        return self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """θ_ema ← d · θ_ema + (1 - d) · θ for float parameters; buffers and non-float tensors copied."""
        src = unwrap_model(model)
        d = self.current_decay()
        src_params = dict(src.named_parameters())
        ema_params = dict(self.module.named_parameters())
        if src_params.keys() != ema_params.keys():
            raise ValueError("EMA.update: the model's parameters do not match the shadow's (names differ)")
        avg_ema, avg_src = [], []
        for name, p_ema in ema_params.items():
            p = src_params[name].detach()
            if p_ema.is_floating_point():
                avg_ema.append(p_ema)
                avg_src.append(p.to(device=p_ema.device, dtype=p_ema.dtype))
            else:
                p_ema.copy_(p)
        if avg_ema:
            # lerp(a, b, w) = a + w (b - a) = (1 - w) a + w b, with w = 1 - d.
            torch._foreach_lerp_(avg_ema, avg_src, 1.0 - d)
        src_buffers = dict(src.named_buffers())
        for name, b_ema in self.module.named_buffers():
            b_ema.copy_(src_buffers[name])
        self.num_updates += 1

    def state_dict(self) -> dict[str, Any]:
        """``{"decay", "warmup_steps", "num_updates", "module"}`` (the shadow's state_dict)."""
        return {
            "decay": self.decay,
            "warmup_steps": self.warmup_steps,
            "num_updates": self.num_updates,
            "module": self.module.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the shadow weights and ``num_updates`` (decay / warmup stay as constructed)."""
        self.module.load_state_dict(state["module"])
        self.num_updates = int(state["num_updates"])

    def to(self, device: torch.device | str) -> EMA:
        self.module.to(device)
        return self

    def __repr__(self) -> str:
        return f"EMA(decay={self.decay}, warmup_steps={self.warmup_steps}, num_updates={self.num_updates})"
