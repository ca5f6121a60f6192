"""Reverse-process samplers (DDIM, DPM-Solver++) over diffusers schedulers, with visual guidance.

The sampler knows the schedule (from a :class:`GaussianDiffusion`) and how to call a network, but no
architecture. The update rules themselves are diffusers' (``DDIMScheduler.step``: Song et al. 2021,
eqs. 12 and 16; ``DPMSolverMultistepScheduler``: Lu et al. 2022, "DPM-Solver++", data prediction,
2nd-order multistep).

Timestep spacing: ``"trailing"`` (Lin et al. 2024, "Common diffusion noise schedules and sample steps
are flawed", Table 2). For T = 1000 and 25 steps it gives 999, 959, …, 39, and DDIM's last step goes to
"t = -1" with ᾱ = 1 (``set_alpha_to_one``), i.e. it returns the clipped x̂_0. This is exactly the
original code's grid (the integers of linspace(-1, 999, 26), paired (999, 959) … (39, -1)). Steps
that do not divide T give slightly inconsistent DDIM pairs in diffusers (a warning is logged).

x̂_0 clipping: DDIM uses ``clip_sample`` (clamp to [-r, r], r = ``clip_range``, 1 as the original).
DPM-Solver++ has no ``clip_sample``; its dynamic thresholding with ``sample_max_value=r`` clamps the
percentile to exactly r, which is the same plain clamp of x̂_0 to [-r, r].

Classifier-free guidance on the visual condition (Ho & Salimans 2022, eq. 6, with s = 1 + w):
ε̃ = ε_uncond + s · (ε_cond - ε_uncond), where "uncond" means ``drop_visual=True`` (the mono condition
is kept). The combination is linear in the network output, so it is applied to v the same way.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

import torch
from diffusers import DDIMScheduler
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from .diffusion import GaussianDiffusion

if TYPE_CHECKING:  # imported where it is used: it pulls in scipy.stats, a second of every script's start
    from diffusers import DPMSolverMultistepScheduler

__all__ = ["Sampler"]

logger = logging.getLogger(__name__)

Generator = torch.Generator | list[torch.Generator] | None


class Sampler:
    """Draw x_0 ~ p_θ(x_0 | conditions) by integrating the reverse process from pure noise.

    Args:
        diffusion: the training process; gives T, the schedule and the prediction type.
        kind: ``"ddim"`` (the original's, η = 0 deterministic) or ``"dpmsolver++"`` (2nd-order multistep).
        num_inference_steps: number of network evaluations per sample (twice the batch under guidance).
        eta: DDIM η (0 = deterministic DDIM, 1 = DDPM-like); must be 0 for DPM-Solver++.
        clip_sample: clamp x̂_0 to [-clip_range, clip_range] at every step (the original did, with 1).
        clip_range: the bound of x_0 (1 for mels normalised to [-1, 1]; wider for a scaled residual).
        guidance_scale: s of classifier-free guidance on the visual condition; 1 = a single conditional pass.
    """

    def __init__(
        self,
        *,
        diffusion: GaussianDiffusion,
        kind: Literal["ddim", "dpmsolver++"] = "ddim",
        num_inference_steps: int = 25,
        eta: float = 0.0,
        clip_sample: bool = True,
        clip_range: float = 1.0,
        guidance_scale: float = 1.0,
    ) -> None:
        if kind not in ("ddim", "dpmsolver++"):
            raise ValueError(f"kind must be 'ddim' or 'dpmsolver++', got {kind!r}")
        if not 1 <= num_inference_steps <= diffusion.num_train_timesteps:
            raise ValueError(f"num_inference_steps must be in [1, {diffusion.num_train_timesteps}]")
        if kind == "dpmsolver++" and eta != 0.0:
            raise ValueError("eta applies to DDIM only; DPM-Solver++ here is the deterministic ODE solver")
        if eta < 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        if kind == "ddim" and diffusion.num_train_timesteps % num_inference_steps != 0:
            logger.warning(
                "DDIM with %d steps does not divide T=%d: diffusers' previous-timestep rule is then off by "
                "up to one step; prefer a divisor (e.g. 10, 20, 25, 50).",
                num_inference_steps,
                diffusion.num_train_timesteps,
            )
        self.diffusion = diffusion
        self.kind = kind
        self.num_inference_steps = num_inference_steps
        self.eta = eta
        self.clip_sample = clip_sample
        if not clip_range > 0:
            raise ValueError(f"clip_range must be positive, got {clip_range}")
        self.clip_range = float(clip_range)
        self.guidance_scale = guidance_scale

    def make_scheduler(self) -> DDIMScheduler | DPMSolverMultistepScheduler:
        """A fresh scheduler with its timesteps set (schedulers are stateful: one per ``sample`` call)."""
        common = dict(self.diffusion.scheduler_config(), timestep_spacing="trailing")
        if self.kind == "ddim":
            sched: DDIMScheduler | DPMSolverMultistepScheduler = DDIMScheduler(
                **common, clip_sample=self.clip_sample, clip_sample_range=self.clip_range, set_alpha_to_one=True
            )
        else:
            from diffusers import DPMSolverMultistepScheduler

            sched = DPMSolverMultistepScheduler(
                **common,
                algorithm_type="dpmsolver++",
                solver_order=2,
                thresholding=self.clip_sample,
                sample_max_value=self.clip_range,
                final_sigmas_type="zero",
            )
        sched.set_timesteps(self.num_inference_steps)
        return sched

    @property
    def timesteps(self) -> torch.Tensor:
        """The (num_inference_steps,) long timesteps visited, in order (first ≈ T-1)."""
        return self.make_scheduler().timesteps.clone()

    def model_output(
        self, model: nn.Module, x_t: torch.Tensor, t: torch.Tensor, model_kwargs: dict[str, Any]
    ) -> torch.Tensor:
        """Network output at (x_t, t), guided on the visual condition when ``guidance_scale != 1``.

        Shapes: x_t (B, 2, M, F), t (B,) long; returns (B, 2, M, F) float32.
        """
        if self.guidance_scale == 1.0:
            return model(x_t, t, **model_kwargs).float()
        b = x_t.shape[0]
        kwargs = {k: v for k, v in model_kwargs.items() if k != "drop_visual"}
        cond_drop = model_kwargs.get("drop_visual")
        if cond_drop is None:
            cond_drop = torch.zeros(b, dtype=torch.bool, device=x_t.device)
        doubled = {k: _repeat2(v, b) for k, v in kwargs.items()}
        drop_visual = torch.cat(
            [cond_drop.to(x_t.device, torch.bool), torch.ones_like(cond_drop, dtype=torch.bool)]
        )
        out = model(torch.cat([x_t, x_t]), torch.cat([t, t]), **doubled, drop_visual=drop_visual).float()
        cond, uncond = out[:b], out[b:]
        return uncond + self.guidance_scale * (cond - uncond)

    @torch.no_grad()
    def sample(
        self,
        model: nn.Module,
        shape: tuple[int, ...] | torch.Size,
        *,
        model_kwargs: dict[str, Any],
        generator: Generator = None,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """Run the reverse process from x_T ~ N(0, I).

        Args:
            model: the network, already in eval mode (typically ``EMA.module``).
            shape: (B, 2, M, F).
            model_kwargs: conditions with batch B (``mono_mel``, ``context``, ``context_mask``, optionally
                ``drop_visual`` / ``drop_mono`` to sample without a condition).
            generator: one generator, or a list of B (one per sample, e.g. per overlap-add window);
                a CPU generator works for any device. Same seed -> identical output.
            device: where x_t lives.
        Returns:
            x_0 of ``shape``, float32, clamped to [-clip_range, clip_range].
        """
        device = torch.device(device)
        sched = self.make_scheduler()
        x = randn_tensor(tuple(shape), generator=generator, device=device, dtype=torch.float32)
        x = x * sched.init_noise_sigma
        b = x.shape[0]
        for step_t in sched.timesteps:
            t = torch.full((b,), int(step_t), device=device, dtype=torch.long)
            out = self.model_output(model, sched.scale_model_input(x, step_t), t, model_kwargs)
            if self.kind == "ddim":
                x = sched.step(out, int(step_t), x, eta=self.eta, generator=generator).prev_sample
            else:
                x = sched.step(out, step_t, x).prev_sample
        return x.clamp(-self.clip_range, self.clip_range)

    def __repr__(self) -> str:
        return (
            f"Sampler(kind={self.kind!r}, steps={self.num_inference_steps}, eta={self.eta}, "
            f"clip_sample={self.clip_sample}, clip_range={self.clip_range}, guidance_scale={self.guidance_scale}, {self.diffusion!r})"
        )


def _repeat2(v: Any, b: int) -> Any:
    """Stack a batch-B tensor twice along dim 0; anything else (None, scalars, non-batch tensors) as is."""
    if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == b:
        return torch.cat([v, v])
    return v
