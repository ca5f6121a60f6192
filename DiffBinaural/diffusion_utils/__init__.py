"""Diffusion process (schedule, training loss) and samplers for Stage 1, built on diffusers."""

from .diffusion import GaussianDiffusion, bucket_losses
from .sampler import Sampler

__all__ = ["GaussianDiffusion", "Sampler", "bucket_losses"]
