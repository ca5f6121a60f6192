"""Stage-1 networks: the denoising UNet, the visual token encoder and their building blocks."""

from .unet import UNet, UNetConfig, build_unet, count_parameters
from .visual_encoder import BACKBONES, DEFAULT_PRETRAINED, VisualEncoder

__all__ = [
    "BACKBONES",
    "DEFAULT_PRETRAINED",
    "UNet",
    "UNetConfig",
    "VisualEncoder",
    "build_unet",
    "count_parameters",
]
