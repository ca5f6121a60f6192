"""Forward diffusion process and training loss for Stage 1 (left/right log-mels).

The network, this process and the sampler are three separate objects: :class:`GaussianDiffusion`
knows the noise schedule and the training objective but no architecture, and
:class:`~DiffBinaural.diffusion_utils.sampler.Sampler` runs the reverse process.

Notation (variable name -> paper symbol):

- ``x0``              -> x_0, normalised log-mels in [-1, 1], shape (B, C, M, F), channel 0 = left
                         (C = 2; 4 with the interaural phase channels, DiffBinaural.model.to_target)
- ``t``               -> t ∈ {0, …, T-1}, one integer timestep per sample, shape (B,)
- ``alphas_cumprod``  -> ᾱ_t = ∏_{s≤t} (1 - β_s), shape (T,)
- ``noise``           -> ε ~ N(0, I), shape of ``x0``
- ``x_t``             -> sample of q(x_t | x_0)

Equations:

- Forward process, Ho et al. 2020 ("DDPM") eq. 4:
  q(x_t | x_0) = N(√ᾱ_t x_0, (1 - ᾱ_t) I), i.e. x_t = √ᾱ_t x_0 + √(1 - ᾱ_t) ε.
- ε-prediction target (DDPM eq. 14, "L_simple"): ε.
- v-prediction target, Salimans & Ho 2022 ("Progressive distillation", §4 / App. D):
  v = √ᾱ_t ε - √(1 - ᾱ_t) x_0, so that x_0 = √ᾱ_t x_t - √(1 - ᾱ_t) v.
- Cosine schedule, Nichol & Dhariwal 2021 ("Improved DDPM") eq. 17:
  ᾱ(t) = f(t)/f(0), f(t) = cos²(((t/T) + s)/(1 + s) · π/2), s = 0.008, and
  β_t = min(1 - ᾱ(t+1)/ᾱ(t), 0.999). diffusers calls this ``"squaredcos_cap_v2"``; the cap at 0.999
  only binds at the last step (β_999 = 0.999, so ᾱ_999 ≈ 2.4e-9, not exactly 0).

Condition dropout for classifier-free guidance (Ho & Salimans 2022): each sample independently
drops its visual condition with probability ``p_drop_visual`` and its mono condition with
``p_drop_mono``; the network replaces a dropped condition by its learned null embedding.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from diffusers import DDPMScheduler
from torch import nn

from binaural_core.audio import LEFT, RIGHT

__all__ = ["GaussianDiffusion", "bucket_losses"]

_SCHEDULES = {"cosine": "squaredcos_cap_v2", "linear": "linear"}


def bucket_losses(
    t: torch.Tensor, loss_per_sample: torch.Tensor, *, num_train_timesteps: int, num_buckets: int = 4
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Group per-sample losses into ``num_buckets`` equal timestep ranges (guided-diffusion quartiles).

    Args:
        t: (B,) integer timesteps in [0, num_train_timesteps).
        loss_per_sample: (B,) losses.
    Returns:
        ``{"loss_q0": (sum, count), …}`` of 0-dim float tensors on ``loss_per_sample.device``, ready to be
        all-reduced (sum) across ranks; the bucket mean is sum / count (skip buckets with count 0).
    """
    bucket = (
        (t.long() * num_buckets // num_train_timesteps).clamp_(0, num_buckets - 1).to(loss_per_sample.device)
    )
    losses = loss_per_sample.detach().float()
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for i in range(num_buckets):
        mask = bucket == i
        out[f"loss_q{i}"] = (losses[mask].sum(), mask.sum().to(losses.dtype))
    return out


PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")  # diffusers' names


class GaussianDiffusion:
    """DDPM forward process and training loss over diffusers' :class:`DDPMScheduler`.

    Args:
        num_train_timesteps: T, number of training timesteps (the original used 1000).
        schedule: ``"cosine"`` (Nichol & Dhariwal 2021, the original's) or ``"linear"`` (DDPM β 1e-4…0.02).
        prediction_type: what the network predicts, ``"epsilon"`` (ε, the original's), ``"v_prediction"``
            or ``"sample"`` (x_0 itself; robust for short trainings, whose ε errors would be amplified by
            1/√ᾱ_t into noisy samples).
        loss_type: ``"l1"`` (the original's) or ``"l2"``; mean over (2, M, F) per sample, then over the batch.
        p_drop_visual: per-sample probability of dropping the visual condition during training.
        p_drop_mono: per-sample probability of dropping the mono condition, drawn independently.
        side_weight: λ of an interaural term added to the loss, λ · mean |e_L − e_R| (squared for ``l2``),
            e the error of the two mel channels (:data:`binaural_core.audio.LEFT` / ``RIGHT``). The
            spatial metrics score L − R, but the per-ear loss is led by the part common to both ears
            (with a room, the mono's coherent sum is quieter than either ear); the term weighs the
            difference more. 0 (the default) is the plain per-ear loss.
    """

    def __init__(
        self,
        *,
        num_train_timesteps: int = 1000,
        schedule: Literal["cosine", "linear"] = "cosine",
        prediction_type: Literal["epsilon", "v_prediction", "sample"] = "epsilon",
        loss_type: Literal["l1", "l2"] = "l1",
        p_drop_visual: float = 0.1,
        p_drop_mono: float = 0.1,
        side_weight: float = 0.0,
    ) -> None:
        if schedule not in _SCHEDULES:
            raise ValueError(f"schedule must be one of {sorted(_SCHEDULES)}, got {schedule!r}")
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
        if loss_type not in ("l1", "l2"):
            raise ValueError(f"loss_type must be 'l1' or 'l2', got {loss_type!r}")
        for name, p in (("p_drop_visual", p_drop_visual), ("p_drop_mono", p_drop_mono)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {p}")
        if side_weight < 0:
            raise ValueError(f"side_weight must be >= 0, got {side_weight}")
        self.num_train_timesteps = num_train_timesteps
        self.schedule = schedule
        self.prediction_type = prediction_type
        self.loss_type = loss_type
        self.p_drop_visual = p_drop_visual
        self.p_drop_mono = p_drop_mono
        self.side_weight = side_weight
        self.scheduler = DDPMScheduler(**self.scheduler_config())
        # ᾱ_t in float64 on CPU: the master copy used for targets (moved and cast per call).
        self._alphas_cumprod = self.scheduler.alphas_cumprod.double()

    def scheduler_config(self) -> dict[str, Any]:
        """Schedule settings shared by every diffusers scheduler built for this process (the sampler's too)."""
        return {
            "num_train_timesteps": self.num_train_timesteps,
            "beta_schedule": _SCHEDULES[self.schedule],
            "prediction_type": self.prediction_type,
        }

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """ᾱ_t for t = 0…T-1, shape (T,), float64 on CPU."""
        return self._alphas_cumprod

    def _coef(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(√ᾱ_t, √(1-ᾱ_t)) for (B,) timesteps, broadcastable against ``like`` (B, …)."""
        a = self._alphas_cumprod.to(like.device)[t.to(like.device).long()]
        shape = (-1,) + (1,) * (like.dim() - 1)
        return a.sqrt().to(like.dtype).view(shape), (1.0 - a).sqrt().to(like.dtype).view(shape)

    def q_sample(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε (DDPM eq. 4), via diffusers' ``add_noise``. Shapes: (B, …), (B,)."""
        return self.scheduler.add_noise(x0, noise, t.to(x0.device))

    def velocity(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """v = √ᾱ_t ε - √(1-ᾱ_t) x_0 (Salimans & Ho 2022), via diffusers' ``get_velocity``."""
        return self.scheduler.get_velocity(x0, noise, t.to(x0.device))

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The regression target of the network for ``prediction_type``: ε, v or x_0, shape of ``x0``."""
        if self.prediction_type == "sample":
            return x0
        return noise if self.prediction_type == "epsilon" else self.velocity(x0, noise, t)

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, model_output: torch.Tensor) -> torch.Tensor:
        """x̂_0 from a network output (unclipped): ε: (x_t - √(1-ᾱ)ε̂)/√ᾱ (DDIM eq. 9); v: √ᾱ x_t - √(1-ᾱ) v̂."""
        if self.prediction_type == "sample":
            return model_output
        sa, s1a = self._coef(t, x_t)
        if self.prediction_type == "epsilon":
            return (x_t - s1a * model_output) / sa
        return sa * x_t - s1a * model_output

    def sample_drop_masks(
        self, batch_size: int, *, device: torch.device, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Independent per-sample Bernoulli masks (drop_visual, drop_mono), each (B,) bool on ``device``."""
        u = _rand((2, batch_size), generator, device)
        return u[0] < self.p_drop_visual, u[1] < self.p_drop_mono

    def training_losses(
        self,
        model: nn.Module,
        x0: torch.Tensor,
        *,
        model_kwargs: dict[str, Any],
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """One Monte-Carlo estimate of the simplified DDPM loss (Ho et al. 2020 eq. 14, L1 or L2).

        Steps: t ~ U{0…T-1}; ε ~ N(0, I); x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε; drop masks ~ Bernoulli;
        output = model(x_t, t, **model_kwargs, drop_visual, drop_mono); loss = |output - target|
        (+ side_weight · |e_L − e_R|).

        Args:
            model: the network (see the module docstring of ``DiffBinaural.modules.unet`` for the contract).
            x0: (B, C, M, F) clean diffusion variable (normalised log-mels, C = 2, plus phase channels with
                ``interaural_phase``, C = 4).
            model_kwargs: conditions, e.g. ``mono_mel`` (B, 1, M, F), ``context`` (B, K, D),
                ``context_mask`` (B, K) bool. Must not contain ``drop_visual`` / ``drop_mono``.
            generator: draws t, ε and the masks (a CPU generator works for any device).
        Returns:
            ``loss`` (scalar, mean over the batch), ``loss_per_sample`` (B,), ``t`` (B,) long,
            ``drop_visual`` (B,) bool and ``drop_mono`` (B,) bool.
        """
        if "drop_visual" in model_kwargs or "drop_mono" in model_kwargs:
            raise ValueError(
                "training_losses draws drop_visual / drop_mono itself; remove them from model_kwargs"
            )
        b, device = x0.shape[0], x0.device
        t = _randint(self.num_train_timesteps, (b,), generator, device)
        noise = _randn(x0.shape, generator, device, x0.dtype)
        drop_visual, drop_mono = self.sample_drop_masks(b, device=device, generator=generator)

        x_t = self.q_sample(x0, noise, t)
        out = model(x_t, t, **model_kwargs, drop_visual=drop_visual, drop_mono=drop_mono)
        if out.shape != x0.shape:
            raise ValueError(f"model output has shape {tuple(out.shape)}, expected {tuple(x0.shape)}")
        err = out.float() - self.target(x0, noise, t).float()
        penalty = (lambda e: e.abs()) if self.loss_type == "l1" else (lambda e: e.square())
        loss_per_sample = penalty(err).flatten(1).mean(dim=1)
        if self.side_weight:
            side = err[:, LEFT] - err[:, RIGHT]  # the error of L − R, (B, M, F)
            loss_per_sample = loss_per_sample + self.side_weight * penalty(side).flatten(1).mean(dim=1)
        return {
            "loss": loss_per_sample.mean(),
            "loss_per_sample": loss_per_sample,
            "t": t,
            "drop_visual": drop_visual,
            "drop_mono": drop_mono,
        }

    def bucket_losses(
        self, t: torch.Tensor, loss_per_sample: torch.Tensor, num_buckets: int = 4
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per-timestep-bucket ``(sum, count)`` of losses; see :func:`bucket_losses`."""
        return bucket_losses(
            t, loss_per_sample, num_train_timesteps=self.num_train_timesteps, num_buckets=num_buckets
        )

    def __repr__(self) -> str:
        return (
            f"GaussianDiffusion(T={self.num_train_timesteps}, schedule={self.schedule!r}, "
            f"prediction_type={self.prediction_type!r}, loss_type={self.loss_type!r}, "
            f"p_drop_visual={self.p_drop_visual}, p_drop_mono={self.p_drop_mono}, side_weight={self.side_weight})"
        )


def _gen_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    return generator.device if generator is not None else device


def _rand(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=_gen_device(generator, device)).to(device)


def _randn(
    shape: torch.Size | tuple[int, ...],
    generator: torch.Generator | None,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=_gen_device(generator, device), dtype=dtype).to(
        device
    )


def _randint(
    high: int, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    return torch.randint(0, high, shape, generator=generator, device=_gen_device(generator, device)).to(
        device
    )
