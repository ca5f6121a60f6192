"""The image encoders a :class:`~DiffBinaural.modules.visual_encoder.VisualEncoder` can use: the small CNN
trained from scratch, and transformers' ResNet-18 and CLIP vision models (pretrained or random)."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import group_norm

BACKBONES = ("cnn", "resnet18", "clip")
# Recommended hub ids (pass them as ``pretrained``; a local folder made by save_pretrained works too).
DEFAULT_PRETRAINED = {"resnet18": "microsoft/resnet-18", "clip": "openai/clip-vit-base-patch32"}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
# ResNet-18 layout for a random init without a download (matches microsoft/resnet-18).
_RESNET18 = dict(embedding_size=64, hidden_sizes=[64, 128, 256, 512], depths=[2, 2, 2, 2], layer_type="basic")


class SmallCNN(nn.Module):
    """From-scratch image encoder: (N, 3, H, W) -> (N, channels[-1]).

    Each stage halves the resolution (stride-2 3×3 conv, GroupNorm, SiLU); a global average pool
    makes it size-agnostic.
    """

    def __init__(self, *, channels: tuple[int, ...] = (32, 64, 128, 256), groups: int = 8) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), group_norm(c, groups), nn.SiLU()]
            c_in = c
        self.net = nn.Sequential(*layers)
        self.out_dim = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).mean(dim=(2, 3))


def _from_pretrained(cls, name: str):
    """transformers' from_pretrained (a hub id, cached, or a save_pretrained folder); offline without the
    weights, one line saying what to pass."""
    from binaural_core.audio import BadInputError
    from binaural_core.hub import offline_hint

    try:
        return cls.from_pretrained(name)
    except OSError as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise BadInputError(name, f"cannot load the image encoder ({reason}); pass --pretrained_frame FOLDER (a "
                                  f"save_pretrained folder) or 'none' for random weights; {offline_hint(name)}") from None


def build_backbone(
    backbone: str, pretrained: str | None, backbone_config: dict | None
) -> tuple[nn.Module, int, int | None]:
    """The image encoder of ``backbone`` -> (module, feature size, native image size or None); ``pretrained``
    loads weights (hub id or local folder), else a random init from ``backbone_config`` or the default layout."""
    if backbone == "cnn":
        if pretrained is not None:
            raise ValueError("the cnn backbone is trained from scratch; pretrained must be None")
        cfg = dict(backbone_config or {})
        net = SmallCNN(channels=tuple(cfg.pop("channels", (32, 64, 128, 256))), **cfg)
        return net, net.out_dim, None
    # Imported lazily: transformers is heavy and the cnn path does not need it.
    from binaural_core.extras import need

    need("transformers", f"the {backbone} image encoder")
    if backbone == "resnet18":
        from transformers import ResNetConfig, ResNetModel

        if pretrained is not None:
            net = _from_pretrained(ResNetModel, pretrained)
        else:
            net = ResNetModel(
                ResNetConfig(**(backbone_config if backbone_config is not None else _RESNET18))
            )
        return net, net.config.hidden_sizes[-1], None
    from transformers import CLIPVisionConfig, CLIPVisionModel

    if pretrained is not None:
        net = _from_pretrained(CLIPVisionModel, pretrained)
    else:
        net = CLIPVisionModel(CLIPVisionConfig(**(backbone_config or {})))
    size = net.config.image_size
    return net, net.config.hidden_size, int(size if isinstance(size, int) else size[0])


__all__ = ["BACKBONES", "DEFAULT_PRETRAINED", "SmallCNN", "build_backbone"]
