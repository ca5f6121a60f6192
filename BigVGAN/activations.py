"""Snake activations and BigVGAN's anti-aliased ``Activation1d`` (x2 upsample -> Snake -> x2 downsample).

Design after NVIDIA BigVGAN (MIT) and alias-free-torch; code written anew. Parameter and buffer names
match the official ones (``act.alpha``, ``act.beta``, ``upsample.filter``, ``downsample.lowpass.filter``)
so checkpoints are interchangeable.

Computation: in eager mode the official chain (transposed convolution, Snake, strided low-pass),
which is the fastest eager form on CPU. ``BigVGAN.compile_activations()`` switches every activation to
:func:`polyphase_activation` under ``torch.compile``: the two polyphase components of the upsampled
signal are filtered, activated and decimated in one fused pass (half the multiply-adds, no 2T-long
intermediates). Both equal the official outputs (tested to 1e-5); speed in ``bench/vocoder.py``.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

SNAKE_EPS = 1e-9  # the official epsilon in 1 / (beta + eps)


class Snake(nn.Module):
    """y = x + sin²(αx) / α, per channel (Ziyin et al. 2020). ``alpha_logscale``: α stored as log α."""

    def __init__(self, channels: int, *, alpha: float = 1.0, alpha_trainable: bool = True,
                 alpha_logscale: bool = False) -> None:
        super().__init__()
        self.alpha_logscale = alpha_logscale
        init = torch.zeros(channels) if alpha_logscale else torch.ones(channels) * alpha
        self.alpha = nn.Parameter(init, requires_grad=alpha_trainable)

    def coefficients(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(α, 1 / (α + eps)) as (1, C, 1), computed once per forward."""
        a = self.alpha.exp() if self.alpha_logscale else self.alpha
        a = a.view(1, -1, 1)
        return a, 1.0 / (a + SNAKE_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, inv = self.coefficients()
        return snake(x, a, inv)


class SnakeBeta(Snake):
    """y = x + sin²(αx) / β with separate magnitude β (Lee et al. 2023, BigVGAN)."""

    def __init__(self, channels: int, *, alpha: float = 1.0, alpha_trainable: bool = True,
                 alpha_logscale: bool = False) -> None:
        super().__init__(channels, alpha=alpha, alpha_trainable=alpha_trainable, alpha_logscale=alpha_logscale)
        init = torch.zeros(channels) if alpha_logscale else torch.ones(channels) * alpha
        self.beta = nn.Parameter(init, requires_grad=alpha_trainable)

    def coefficients(self) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = (self.alpha.exp(), self.beta.exp()) if self.alpha_logscale else (self.alpha, self.beta)
        return a.view(1, -1, 1), 1.0 / (b.view(1, -1, 1) + SNAKE_EPS)


def snake(x: torch.Tensor, a: torch.Tensor, inv: torch.Tensor) -> torch.Tensor:
    """x + inv · sin²(a·x) with three fused-in-place passes after the first multiply."""
    s = torch.sin(x * a)
    s.square_()
    return torch.addcmul(x, s, inv)


def kaiser_sinc_filter1d(cutoff: float, half_width: float, kernel_size: int) -> torch.Tensor:
    """Kaiser-windowed sinc low-pass, unit DC gain, shape (1, 1, kernel_size).

    Kaiser's design formulas (Oppenheim & Schafer): attenuation A = 2.285 (N/2 - 1) π Δf + 7.95 with
    Δf = 4 · half_width, and β from A; taps at half-integer times for even sizes.
    """
    half = kernel_size // 2
    delta_f = 4 * half_width
    att = 2.285 * (half - 1) * math.pi * delta_f + 7.95
    if att > 50.0:
        beta = 0.1102 * (att - 8.7)
    elif att >= 21.0:
        beta = 0.5842 * (att - 21) ** 0.4 + 0.07886 * (att - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(kernel_size, beta=beta, periodic=False)
    t = (torch.arange(-half, half) + 0.5) if kernel_size % 2 == 0 else (torch.arange(kernel_size) - half)
    taps = 2 * cutoff * window * torch.sinc(2 * cutoff * t)
    return (taps / taps.sum()).view(1, 1, kernel_size)


class UpSample1d(nn.Module):
    """x2 band-limited upsampling (B, C, T) -> (B, C, 2T), the official computation.

    Zero-stuffing transposed convolution of the replicate-padded signal, cropped. Half of its
    multiply-adds hit zeros, but on CPU this single depthwise call is still the fastest eager form
    (measured against a polyphase form with two 6-tap convolutions: ~2x slower in eager PyTorch,
    because of the extra calls and copies); the polyphase form pays off once fused, see
    :func:`polyphase_activation`.
    """

    def __init__(self, ratio: int = 2, kernel_size: int | None = None) -> None:
        super().__init__()
        self.ratio = ratio
        self.kernel_size = kernel_size or int(6 * ratio // 2) * 2
        self.pad = self.kernel_size // ratio - 1
        self.crop_left = self.pad * ratio + (self.kernel_size - ratio) // 2
        self.crop_right = self.pad * ratio + (self.kernel_size - ratio + 1) // 2
        self.register_buffer("filter", kaiser_sinc_filter1d(0.5 / ratio, 0.6 / ratio, self.kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        y = F.pad(x, (self.pad, self.pad), mode="replicate")
        y = self.ratio * F.conv_transpose1d(y, self.filter.to(x.dtype).expand(c, -1, -1), stride=self.ratio, groups=c)
        return y[..., self.crop_left:-self.crop_right]


class LowPassFilter1d(nn.Module):
    """Low-pass + decimation (stride) with replicate padding, as the official ``DownSample1d.lowpass``."""

    def __init__(self, *, cutoff: float = 0.5, half_width: float = 0.6, stride: int = 1, kernel_size: int = 12) -> None:
        super().__init__()
        self.stride, self.kernel_size = stride, kernel_size
        self.pad_left = kernel_size // 2 - int(kernel_size % 2 == 0)
        self.pad_right = kernel_size // 2
        self.register_buffer("filter", kaiser_sinc_filter1d(cutoff, half_width, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        x = F.pad(x, (self.pad_left, self.pad_right), mode="replicate")
        return F.conv1d(x, self.filter.to(x.dtype).expand(c, -1, -1), stride=self.stride, groups=c)


class DownSample1d(nn.Module):
    """x2 band-limited decimation (B, C, 2T) -> (B, C, T)."""

    def __init__(self, ratio: int = 2, kernel_size: int | None = None) -> None:
        super().__init__()
        self.ratio = ratio
        self.kernel_size = kernel_size or int(6 * ratio // 2) * 2
        self.lowpass = LowPassFilter1d(cutoff=0.5 / ratio, half_width=0.6 / ratio, stride=ratio,
                                       kernel_size=self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lowpass(x)


class Activation1d(nn.Module):
    """Anti-aliased activation: upsample x2, Snake/SnakeBeta, low-pass and decimate x2 (B, C, T) -> (B, C, T).

    ``fused = True`` (set by ``BigVGAN.compile_activations()``) computes the same function with
    :func:`polyphase_activation` compiled (:func:`compiled_fused_activation`), one fused pass instead
    of five tensor-sized passes.
    """

    def __init__(self, activation: Snake, *, up_ratio: int = 2, down_ratio: int = 2, up_kernel_size: int = 12,
                 down_kernel_size: int = 12) -> None:
        super().__init__()
        self.act = activation
        self.upsample = UpSample1d(up_ratio, up_kernel_size)
        self.downsample = DownSample1d(down_ratio, down_kernel_size)
        self.fused = False

    def can_fuse(self) -> bool:
        """The polyphase formula is written for BigVGAN's sizes: ratio 2 both ways, 12 taps."""
        return (self.upsample.ratio, self.upsample.kernel_size, self.downsample.ratio,
                self.downsample.kernel_size) == (2, 12, 2, 12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, inv = self.act.coefficients()
        if self.fused:
            f_up = self.upsample.ratio * self.upsample.filter.view(-1).to(x.dtype)
            f_dn = self.downsample.lowpass.filter.view(-1).to(x.dtype)
            return compiled_fused_activation()(x, f_up, f_dn, a.to(x.dtype), inv.to(x.dtype))
        return self.downsample(snake(self.upsample(x), a, inv))


def polyphase_activation(x: torch.Tensor, f_up: torch.Tensor, f_dn: torch.Tensor, a: torch.Tensor,
                         inv: torch.Tensor) -> torch.Tensor:
    """Upsample x2 -> Snake -> low-pass + decimate x2 for 12-tap filters, from the two polyphase
    components of the upsampled signal, never interleaving them. Equal to the module chain.

    x (B, C, T); f_up = 2 · upsampling taps (12,); f_dn = low-pass taps (12,); a, inv (1, C, 1).
    Written as sums of shifted slices so that ``torch.compile`` fuses everything into one loop
    (eager PyTorch runs it slower than the chain: one pass per tap).

    Derivation (f symmetric): the transposed convolution of the 3-sample replicate-padded x, cropped
    by 15, gives y[2i] = Σ_p f_up[2p] xp[i + p] and y[2i+1] = Σ_p f_up[2p+1] xp[i + 1 + p] (p = 0..5).
    The low-pass pads the 2T signal by 5 left / 6 right with its edge values and keeps every second
    output: z[i] = Σ_q f_dn[2q+1] e[i + 1 + q] + Σ_q f_dn[2q] o[i + q], with e, o the even and odd
    phases each padded by 3 with y[0] (left) and y[2T-1] (right).
    """
    t = x.shape[-1]
    lead = x.shape[:-1]
    xp = torch.cat([x[..., :1].expand(*lead, 3), x, x[..., -1:].expand(*lead, 3)], dim=-1)
    even = sum(f_up[2 * p] * xp[..., p:p + t] for p in range(6))
    odd = sum(f_up[2 * p + 1] * xp[..., 1 + p:1 + p + t] for p in range(6))
    even = even + inv * torch.sin(a * even) ** 2
    odd = odd + inv * torch.sin(a * odd) ** 2
    first, last = even[..., :1].expand(*lead, 3), odd[..., -1:].expand(*lead, 3)
    e = torch.cat([first, even, last], dim=-1)
    o = torch.cat([first, odd, last], dim=-1)
    return (sum(f_dn[2 * q + 1] * e[..., 1 + q:1 + q + t] for q in range(6))
            + sum(f_dn[2 * q] * o[..., q:q + t] for q in range(6)))


@functools.cache
def compiled_fused_activation():
    """:func:`polyphase_activation` through ``torch.compile``, built once (dynamic shapes: one
    compilation serves every layer and input length). Inductor needs a C++ compiler on CPU, Triton on CUDA."""
    return torch.compile(polyphase_activation, dynamic=True)

