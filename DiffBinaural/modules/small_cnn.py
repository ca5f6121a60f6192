"""The small from-scratch image encoder (the ``cnn`` backbone of :mod:`.visual_encoder`), with its map
at a finer stride (à trous) and an earlier stage's map for fine attention scores."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import group_norm


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
        self.depth = len(channels)  # stride-2 stages: the map's native stride is 2 ** depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).mean(dim=(2, 3))

    def dense_map(self, x: torch.Tensor, *, stride: int) -> torch.Tensor:
        """(N, 3, H, W) -> (N, C, H / stride, W / stride): the last stage's map at a finer ``stride``
        than the native ``2 ** len(channels)``, with the same weights (à trous; Chen et al. 2017,
        DeepLab): the last convs run at stride 1, each one after the first of them dilated by the
        strides removed before it, so map pixel ``(i, j) * native / stride`` sees exactly what pixel
        ``(i, j)`` of the native map sees (up to GroupNorm's statistics over the denser map), and the
        pixels in between see the frame shifted by ``stride``.
        """
        return self.pyramid(x, stride=stride)[0]

    def pyramid(self, x: torch.Tensor, *, stride: int, fine: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`dense_map` at ``stride``, and (``fine`` given) the map of the earlier stage whose stride is
        ``fine`` (< ``stride``), (N, C_k, H / fine, W / fine): computed on the way, at no extra cost."""
        strides = [2 ** (self.depth - k) for k in range(self.depth + 1)]
        if stride not in strides:
            raise ValueError(f"the cnn's map stride must be one of {strides}, got {stride}")
        if fine is not None and (fine not in strides[:-1] or fine >= stride):
            raise ValueError(f"the fine map's stride must be one of {strides[:-1]} below {stride}, got {fine}")
        first_dense, kept = self.depth - strides.index(stride), None
        for k, (conv, norm, act) in enumerate(zip(self.net[0::3], self.net[1::3], self.net[2::3])):
            if k < first_dense:
                x = conv(x)
            else:
                dilation = 2 ** (k - first_dense)
                x = F.conv2d(x, conv.weight, conv.bias, stride=1, padding=dilation, dilation=dilation)
            x = act(norm(x))
            if fine == 2 ** (k + 1):  # stage k (before the dense ones) runs at its native stride 2^(k+1)
                kept = x
        return x, kept


__all__ = ["SmallCNN"]
