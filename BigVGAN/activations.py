"""Snake activations and BigVGAN's anti-aliased ``Activation1d`` (x2 upsample -> Snake -> x2 downsample).

Design after NVIDIA BigVGAN (MIT) and alias-free-torch; code written anew. Parameter and buffer names
match the official ones (``act.alpha``, ``act.beta``, ``upsample.filter``, ``downsample.lowpass.filter``)
so checkpoints are interchangeable.

Computation: the official upsampler zero-stuffs the signal through a transposed convolution and
crops it, so half of its multiply-adds hit zeros, and then pads and filters the 2T-long signal. Here
the two polyphase components of the upsampled signal (6-tap filters f[0::2] and f[1::2] of the 12-tap
Kaiser-sinc filter) are activated and decimated separately, without interleaving them. The result
equals the reference formula (tested to 1e-5); measured speed is in ``bench/vocoder.py``.
"""

from __future__ import annotations

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
    """x2 band-limited upsampling (B, C, T) -> (B, C, 2T); official result, polyphase computation."""

    def __init__(self, ratio: int = 2, kernel_size: int | None = None) -> None:
        super().__init__()
        if ratio != 2:
            raise ValueError("only ratio 2 is implemented (the one BigVGAN uses)")
        self.ratio = ratio
        self.kernel_size = kernel_size or int(6 * ratio // 2) * 2
        if self.kernel_size % 4:
            raise ValueError("kernel_size must be a multiple of 4 for the polyphase form")
        self.register_buffer("filter", kaiser_sinc_filter1d(0.5 / ratio, 0.6 / ratio, self.kernel_size))

    def polyphase_weight(self, channels: int) -> torch.Tensor:
        """(2C, 1, K/2 + 1) depthwise weights: per channel [even phase, 0] and [0, odd phase].

        Output sample 2i is Σ_p 2 f[2p] x[i - K/4 + p], sample 2i + 1 is Σ_p 2 f[2p + 1] x[i - K/4 + 1 + p]
        (derived from the zero-stuffed transposed convolution with its 15-sample crop; f is symmetric).
        """
        f = self.ratio * self.filter.view(-1)
        zero = f.new_zeros(1)
        even = torch.cat([f[0::2], zero])
        odd = torch.cat([zero, f[1::2]])
        return torch.stack([even, odd]).repeat(channels, 1).unsqueeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape
        pad = self.kernel_size // 4  # 3 for 12 taps: the polyphase filters reach 3 samples out
        xp = F.pad(x, (pad, pad), mode="replicate")
        y = F.conv1d(xp, self.polyphase_weight(c).to(x.dtype), groups=c)  # (B, 2C, T): [even, odd] per channel
        return y.view(b, c, 2, t).transpose(2, 3).reshape(b, c, 2 * t)


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
    """Anti-aliased activation: upsample x2, Snake/SnakeBeta, low-pass and decimate x2 (B, C, T) -> (B, C, T)."""

    def __init__(self, activation: Snake, *, up_ratio: int = 2, down_ratio: int = 2, up_kernel_size: int = 12,
                 down_kernel_size: int = 12) -> None:
        super().__init__()
        self.act = activation
        self.upsample = UpSample1d(up_ratio, up_kernel_size)
        self.downsample = DownSample1d(down_ratio, down_kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Polyphase path (ratio 2, 12 taps); other sizes take the plain module chain.

        Same result as upsample -> snake -> downsample, without building the 2T-long interleaved
        signal: both phases of the upsampled signal are filtered, activated and decimated separately.
        Half the multiply-adds of the zero-stuffed transposed convolution, and no 2T-long copies.
        """
        a, inv = self.act.coefficients()
        if self.upsample.kernel_size != 12 or self.downsample.kernel_size != 12 or self.downsample.ratio != 2:
            return self.downsample(snake(self.upsample(x), a, inv))
        b, c, t = x.shape
        f_up = self.upsample.ratio * self.upsample.filter.view(-1).to(x.dtype)
        f_dn = self.downsample.lowpass.filter.view(-1).to(x.dtype)
        # 1) x2 upsampling (replicate-padded by 3): y_even[i] = Σ_p 2f[2p] x[i-3+p], y_odd[i] = Σ_p 2f[2p+1] x[i-2+p]
        xp = _edge_pad(x, 3, 3)
        y = torch.stack([_fir(xp, f_up[0::2], 0, t), _fir(xp, f_up[1::2], 1, t)], dim=2)  # (B, C, 2, T)
        # 2) Snake on both phases at once
        sn = torch.mul(y, a.unsqueeze(2))
        sn.sin_()
        sn.square_()
        out = torch.addcmul(y, sn, inv.unsqueeze(2))
        # 3) The official replicate padding of the interleaved 2T signal, per phase: e0 (its first
        # sample, an even one) on the left, oT (its last, an odd one) on the right.
        first = out[:, :, 0:1, 0:1].expand(b, c, 2, 3)
        last = out[:, :, 1:2, t - 1:t].expand(b, c, 2, 3)
        padded = torch.cat([first, out, last], dim=-1)  # (B, C, 2, T + 6)
        # 4) low-pass + decimate by 2, straight from the phases:
        # z[i] = Σ_q f[2q+1] even[i-2+q] + Σ_q f[2q] odd[i-3+q], q = 0..5
        z = _fir(padded[:, :, 0], f_dn[1::2], 1, t)
        return z + _fir(padded[:, :, 1], f_dn[0::2], 0, t)


def _edge_pad(x: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """Replicate padding of the last axis (faster than F.pad(mode="replicate") on CPU)."""
    lead = x.shape[:-1]
    return torch.cat([x[..., :1].expand(*lead, left), x, x[..., -1:].expand(*lead, right)], dim=-1)


def _fir(x: torch.Tensor, taps: torch.Tensor, start: int, length: int) -> torch.Tensor:
    """Σ_p taps[p] · x[..., start + p : start + p + length]: the same short correlation on every
    channel of ``x`` (..., C, T'), as one depthwise convolution."""
    c, n = x.shape[-2], length + len(taps) - 1
    flat = x[..., start:start + n].reshape(-1, c, n)
    out = F.conv1d(flat, taps.view(1, 1, -1).expand(c, 1, -1), groups=c)
    return out.view(*x.shape[:-1], length)


def reference_activation1d(x: torch.Tensor, module: Activation1d) -> torch.Tensor:
    """The official formula, written plainly (zero-stuffed transposed conv), for tests and benchmarks."""
    c = x.shape[1]
    up = module.upsample
    pad = up.kernel_size // up.ratio - 1
    crop_l = pad * up.ratio + (up.kernel_size - up.ratio) // 2
    crop_r = pad * up.ratio + (up.kernel_size - up.ratio + 1) // 2
    y = F.pad(x, (pad, pad), mode="replicate")
    y = up.ratio * F.conv_transpose1d(y, up.filter.expand(c, -1, -1), stride=up.ratio, groups=c)
    y = y[..., crop_l:-crop_r]
    a, inv = module.act.coefficients()
    y = y + inv * torch.sin(a * y) ** 2
    return module.downsample(y)
