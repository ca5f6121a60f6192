"""Discriminators of the vocoder, with NVIDIA BigVGAN's module and parameter names.

* :class:`MultiPeriodDiscriminator` (MPD): HiFi-GAN's, Kong et al. 2020 — the waveform folded into
  ``(T / p, p)`` for the periods ``mpd_reshapes`` and 2-D convolutions over the first axis.
* :class:`MultiResolutionDiscriminator` (MRD): UnivNet's, Jang et al. 2021 — 2-D convolutions on
  linear STFT magnitudes at the ``resolutions`` ``[n_fft, hop, win]`` (BigVGAN v1).
* :class:`MultiScaleSubbandCQTDiscriminator` (CQTD): Gu et al. 2024 (multi-scale sub-band CQT
  discriminator), BigVGAN v2's default (``use_cqtd_instead_of_mrd``) — 2-D convolutions on the complex
  constant-Q transform (nnAudio's ``CQT2010v2``) of the waveform upsampled to twice the rate.

Every discriminator maps ``(y, y_hat)``, both ``(B, 1, T)``, to four lists with one entry per
sub-discriminator: real logits, generated logits, real feature maps, generated feature maps.

Checkpoint compatibility: the module tree, parameter names and buffer names are NVIDIA's, and weight
norm is the *legacy* ``torch.nn.utils.weight_norm`` (keys ``…weight_g`` / ``…weight_v``; spectral norm:
``…weight_orig`` / ``…weight_u`` / ``…weight_v``), as in the official ``discriminators.py``. So the
``mpd`` and ``mrd`` state_dicts of an official ``do_XXXXXXXX`` / ``bigvgan_discriminator_optimizer.pt``
load with ``strict=True``. For the CQTD this includes nnAudio's persistent buffers (``cqt_transform.*``,
whose shapes depend on the nnAudio version: checked with 0.3.4) and the resampler's ``resample.kernel``
(torchaudio's ``Resample`` buffer in the official code; here :class:`SincResample`, no torchaudio).

The design follows NVIDIA BigVGAN (MIT) and HiFi-GAN (MIT); the code is written anew.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from BigVGAN.bigvgan import weight_norm
from binaural_core.audio import BadInputError

LRELU_SLOPE = 0.1

# (real logits, generated logits, real feature maps, generated feature maps), one entry per sub-discriminator
DiscriminatorOutput = tuple[
    list[torch.Tensor], list[torch.Tensor], list[list[torch.Tensor]], list[list[torch.Tensor]]
]

# BigVGAN's defaults for the CQT discriminator's config keys (the v2 configs set most of them).
CQTD_DEFAULTS: dict[str, Any] = {
    "cqtd_filters": 32,
    "cqtd_max_filters": 1024,
    "cqtd_filters_scale": 1,
    "cqtd_dilations": [1, 2, 4],
    "cqtd_in_channels": 1,
    "cqtd_out_channels": 1,
    "cqtd_hop_lengths": [512, 256, 256],
    "cqtd_n_octaves": [9, 9, 9],
    "cqtd_bins_per_octaves": [24, 36, 48],
    "cqtd_normalize_volume": False,
}


def get_padding(kernel_size: int, dilation: int = 1) -> int:
    """'Same' padding of a stride-1 convolution."""
    return (kernel_size * dilation - dilation) // 2


def _norm(use_spectral_norm: bool):
    return spectral_norm if use_spectral_norm else weight_norm


class _MultiDiscriminator(nn.Module):
    """Runs each of ``self.discriminators`` on the real and on the generated waveform."""

    discriminators: nn.ModuleList

    def forward(self, y: torch.Tensor, y_hat: torch.Tensor) -> DiscriminatorOutput:
        """y, y_hat: (B, 1, T) real and generated waveforms."""
        y_d_rs, y_d_gs, fmap_rs, fmap_gs = [], [], [], []
        for d in self.discriminators:
            logit_r, fmap_r = d(y)
            logit_g, fmap_g = d(y_hat)
            y_d_rs.append(logit_r)
            y_d_gs.append(logit_g)
            fmap_rs.append(fmap_r)
            fmap_gs.append(fmap_g)
        return y_d_rs, y_d_gs, fmap_rs, fmap_gs


# --------------------------------------------------------------------------------------------------
# Multi-period discriminator (HiFi-GAN, Kong et al. 2020)
# --------------------------------------------------------------------------------------------------
class DiscriminatorP(nn.Module):
    """One period: (B, 1, T) → reflect-pad T to a multiple of p → (B, 1, T/p, p) → 5 strided convs.

    Channels 32, 128, 512, 1024, 1024 (× ``discriminator_channel_mult``), kernel (5, 1).
    """

    def __init__(
        self,
        h: Mapping[str, Any],
        period: int,
        kernel_size: int = 5,
        stride: int = 3,
        use_spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        self.period = period
        self.d_mult = h.get("discriminator_channel_mult", 1)
        norm = _norm(use_spectral_norm)
        ch = [1] + [int(c * self.d_mult) for c in (32, 128, 512, 1024)]
        pad = (get_padding(5, 1), 0)
        self.convs = nn.ModuleList(
            [norm(nn.Conv2d(ch[i], ch[i + 1], (kernel_size, 1), (stride, 1), padding=pad)) for i in range(4)]
            + [norm(nn.Conv2d(ch[4], ch[4], (kernel_size, 1), 1, padding=(2, 0)))]
        )
        self.conv_post = norm(nn.Conv2d(ch[4], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x: (B, 1, T) → (logits (B, N), 6 feature maps)."""
        b, c, t = x.shape
        if t % self.period:
            x = F.pad(x, (0, self.period - t % self.period), mode="reflect")
        x = x.view(b, c, -1, self.period)
        fmap = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmap.append(x)
        x = self.conv_post(x)
        fmap.append(x)
        return torch.flatten(x, 1, -1), fmap


class MultiPeriodDiscriminator(_MultiDiscriminator):
    """One :class:`DiscriminatorP` per period of ``h["mpd_reshapes"]`` (BigVGAN: [2, 3, 5, 7, 11])."""

    def __init__(self, h: Mapping[str, Any]) -> None:
        super().__init__()
        self.mpd_reshapes = list(h["mpd_reshapes"])
        sn = bool(h.get("use_spectral_norm", False))
        self.discriminators = nn.ModuleList(
            DiscriminatorP(h, p, use_spectral_norm=sn) for p in self.mpd_reshapes
        )


# --------------------------------------------------------------------------------------------------
# Multi-resolution discriminator (UnivNet, Jang et al. 2021)
# --------------------------------------------------------------------------------------------------
class DiscriminatorR(nn.Module):
    """One STFT resolution ``[n_fft, hop, win]``: linear magnitude (B, 1, F, frames) → 6 convs.

    As in the official code, the STFT has no window argument, i.e. a rectangular window of ``win``
    samples (zero-padded to ``n_fft``), on the input reflect-padded by ``(n_fft - hop) / 2`` per side.
    Norm and width follow ``use_spectral_norm`` / ``discriminator_channel_mult``, overridden by
    ``mrd_use_spectral_norm`` / ``mrd_channel_mult`` when present.
    """

    def __init__(self, h: Mapping[str, Any], resolution: Sequence[int]) -> None:
        super().__init__()
        if len(resolution) != 3:
            raise BadInputError(None, f"each MRD resolution is [n_fft, hop, win], got {list(resolution)}")
        self.resolution = [int(v) for v in resolution]
        norm = _norm(bool(h.get("mrd_use_spectral_norm", h.get("use_spectral_norm", False))))
        self.d_mult = h.get("mrd_channel_mult", h.get("discriminator_channel_mult", 1))
        c = int(32 * self.d_mult)
        self.convs = nn.ModuleList(
            [
                norm(nn.Conv2d(1, c, (3, 9), padding=(1, 4))),
                norm(nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4))),
                norm(nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4))),
                norm(nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4))),
                norm(nn.Conv2d(c, c, (3, 3), padding=(1, 1))),
            ]
        )
        self.conv_post = norm(nn.Conv2d(c, 1, (3, 3), padding=(1, 1)))

    def spectrogram(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, T) → (B, n_fft / 2 + 1, frames) STFT magnitude."""
        n_fft, hop, win = self.resolution
        pad = (n_fft - hop) // 2
        x = F.pad(x, (pad, pad), mode="reflect").squeeze(1)
        rectangular = torch.ones(
            win, device=x.device, dtype=x.dtype
        )  # = torch.stft's window=None, without its warning
        spec = torch.stft(
            x,
            n_fft=n_fft,
            hop_length=hop,
            win_length=win,
            window=rectangular,
            center=False,
            return_complex=True,
        )
        return torch.linalg.vector_norm(torch.view_as_real(spec), dim=-1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x: (B, 1, T) → (logits (B, N), 6 feature maps)."""
        x = self.spectrogram(x).unsqueeze(1)
        fmap = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmap.append(x)
        x = self.conv_post(x)
        fmap.append(x)
        return torch.flatten(x, 1, -1), fmap


class MultiResolutionDiscriminator(_MultiDiscriminator):
    """One :class:`DiscriminatorR` per ``h["resolutions"]`` entry.

    BigVGAN v1: (1024, 120, 600), (2048, 240, 1200), (512, 50, 240).
    """

    def __init__(self, h: Mapping[str, Any]) -> None:
        super().__init__()
        self.resolutions = [list(r) for r in h["resolutions"]]
        if not self.resolutions:
            raise BadInputError(None, '"resolutions" of the multi-resolution discriminator is empty')
        self.discriminators = nn.ModuleList(DiscriminatorR(h, r) for r in self.resolutions)


# --------------------------------------------------------------------------------------------------
# Multi-scale sub-band CQT discriminator (Gu et al. 2024; BigVGAN v2)
# --------------------------------------------------------------------------------------------------
class SincResample(nn.Module):
    """Band-limited resampling by a rational factor with a Hann-windowed sinc FIR bank.

    The algorithm of ``torchaudio.transforms.Resample(orig, new)`` with its defaults
    (``sinc_interp_hann``, ``lowpass_filter_width`` 6, ``rolloff`` 0.99), written anew so that torchaudio
    is not needed: the ratio is reduced to ``orig : new`` by their gcd, output phase ``j`` of each block
    of ``new`` outputs is an FIR filter over input offsets ``[-width, width + orig)``, and the bank is the
    persistent buffer ``kernel`` of shape ``(new, 1, 2 * width + orig)`` (float32), the name and shape
    that torchaudio's module stores in NVIDIA's CQTD checkpoints.
    """

    def __init__(
        self, orig_freq: int, new_freq: int, lowpass_filter_width: int = 6, rolloff: float = 0.99
    ) -> None:
        super().__init__()
        g = math.gcd(int(orig_freq), int(new_freq))
        self.orig, self.new = int(orig_freq) // g, int(new_freq) // g
        # cut-off in cycles per block of `orig` input samples: just below the lower of the two Nyquists
        cutoff = min(self.orig, self.new) * rolloff
        self.width = math.ceil(lowpass_filter_width * self.orig / cutoff)
        offsets = torch.arange(-self.width, self.width + self.orig, dtype=torch.float64) / self.orig
        phases = -torch.arange(self.new, dtype=torch.float64)[:, None] / self.new
        t = ((phases + offsets) * cutoff).clamp(-lowpass_filter_width, lowpass_filter_width)  # (new, taps)
        hann = torch.cos(t * math.pi / (2 * lowpass_filter_width)) ** 2
        kernel = torch.sinc(t) * hann * (cutoff / self.orig)  # torch.sinc(t) = sin(pi t) / (pi t)
        self.register_buffer("kernel", kernel.unsqueeze(1).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., T) → (..., ceil(T · new / orig))."""
        lead, n = x.shape[:-1], x.shape[-1]
        flat = F.pad(x.reshape(-1, 1, n), (self.width, self.width + self.orig))
        y = F.conv1d(flat, self.kernel.to(x.dtype), stride=self.orig)  # (N, new, blocks)
        y = y.transpose(1, 2).reshape(flat.shape[0], -1)[:, : math.ceil(self.new * n / self.orig)]
        return y.reshape(*lead, y.shape[-1])


def _cqt_transform(sr: int, hop: int, n_bins: int, bins_per_octave: int) -> nn.Module:
    try:
        from nnAudio.features.cqt import CQT2010v2
    except ImportError as err:
        raise BadInputError(
            None,
            'the CQT discriminator ("use_cqtd_instead_of_mrd": true) needs nnAudio: '
            '`pip install nnAudio` (or the extra: pip install "diffbinaural[train]"), or set "use_cqtd_instead_of_mrd": false and give '
            f'"resolutions" to use the multi-resolution discriminator ({err})',
        ) from None
    return CQT2010v2(
        sr=sr,
        hop_length=hop,
        n_bins=n_bins,
        bins_per_octave=bins_per_octave,
        output_format="Complex",
        pad_mode="constant",
        verbose=False,
    )


def _same_padding_2d(kernel: tuple[int, int], dilation: tuple[int, int] = (1, 1)) -> tuple[int, int]:
    return (kernel[0] - 1) * dilation[0] // 2, (kernel[1] - 1) * dilation[1] // 2


class DiscriminatorCQT(nn.Module):
    """One CQT scale of the CQTD.

    (B, 1, T) → 2× resample → complex CQT as (B, 2, frames, bins) (real, imaginary) → per-octave
    2→2 conv (``conv_pres``) → 5 convs (``convs``) → ``conv_post`` logits (B, 1, frames', bins').

    ``convs[0]`` and ``conv_pres`` carry no weight norm, the other convs do, as in the official code.
    Five feature maps (after each of ``convs``); the logits are not a feature map and not flattened.
    """

    def __init__(self, h: Mapping[str, Any], hop_length: int, n_octaves: int, bins_per_octave: int) -> None:
        super().__init__()
        cfg = {k: h.get(k, v) for k, v in CQTD_DEFAULTS.items()}
        filters, max_filters, scale = cfg["cqtd_filters"], cfg["cqtd_max_filters"], cfg["cqtd_filters_scale"]
        self.dilations = list(cfg["cqtd_dilations"])
        self.in_channels, self.out_channels = cfg["cqtd_in_channels"], cfg["cqtd_out_channels"]
        self.fs = int(h["sampling_rate"])
        self.hop_length, self.n_octaves, self.bins_per_octave = hop_length, n_octaves, bins_per_octave
        self.normalize_volume = bool(cfg["cqtd_normalize_volume"])
        k = (3, 9)

        self.cqt_transform = _cqt_transform(
            2 * self.fs, hop_length, n_octaves * bins_per_octave, bins_per_octave
        )
        c_in = 2 * self.in_channels  # real and imaginary part
        self.conv_pres = nn.ModuleList(
            nn.Conv2d(c_in, c_in, kernel_size=k, padding=_same_padding_2d(k)) for _ in range(n_octaves)
        )
        self.convs = nn.ModuleList([nn.Conv2d(c_in, filters, kernel_size=k, padding=_same_padding_2d(k))])
        # Channel plan of the official code (it assumes scale 1 between convs[0] and convs[1]).
        in_chs = min(scale * filters, max_filters)
        for i, d in enumerate(self.dilations):
            out_chs = min(scale ** (i + 1) * filters, max_filters)
            self.convs.append(
                weight_norm(
                    nn.Conv2d(
                        in_chs,
                        out_chs,
                        kernel_size=k,
                        stride=(1, 2),
                        dilation=(d, 1),
                        padding=_same_padding_2d(k, (d, 1)),
                    )
                )
            )
            in_chs = out_chs
        out_chs = min(scale ** (len(self.dilations) + 1) * filters, max_filters)
        k_sq = (k[0], k[0])
        self.convs.append(
            weight_norm(nn.Conv2d(in_chs, out_chs, kernel_size=k_sq, padding=_same_padding_2d(k_sq)))
        )
        self.conv_post = weight_norm(
            nn.Conv2d(out_chs, self.out_channels, kernel_size=k_sq, padding=_same_padding_2d(k_sq))
        )
        self.activation = nn.LeakyReLU(negative_slope=LRELU_SLOPE)
        self.resample = SincResample(self.fs, 2 * self.fs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x: (B, 1, T) → (logits (B, 1, frames', bins'), 5 feature maps)."""
        if self.normalize_volume:  # DC removal and peak normalisation to 0.8
            x = x - x.mean(dim=-1, keepdim=True)
            x = 0.8 * x / (x.abs().amax(dim=-1, keepdim=True) + 1e-9)
        z = self.cqt_transform(self.resample(x))  # (B, bins, frames, 2)
        z = z.permute(0, 3, 2, 1)  # (B, 2 = real/imaginary, frames, bins)
        bpo = self.bins_per_octave
        z = torch.cat(
            [conv(z[..., o * bpo : (o + 1) * bpo]) for o, conv in enumerate(self.conv_pres)], dim=-1
        )
        fmap = []
        for conv in self.convs:
            z = self.activation(conv(z))
            fmap.append(z)
        return self.conv_post(z), fmap


class MultiScaleSubbandCQTDiscriminator(_MultiDiscriminator):
    """One :class:`DiscriminatorCQT` per (hop, octaves, bins per octave) of ``cqtd_hop_lengths`` /
    ``cqtd_n_octaves`` / ``cqtd_bins_per_octaves`` (v2: (512, 9, 24), (256, 9, 36), (256, 9, 48))."""

    def __init__(self, h: Mapping[str, Any]) -> None:
        super().__init__()
        hops, octaves, bpos = (
            list(h.get(k, CQTD_DEFAULTS[k]))
            for k in ("cqtd_hop_lengths", "cqtd_n_octaves", "cqtd_bins_per_octaves")
        )
        if not len(hops) == len(octaves) == len(bpos) or not hops:
            raise BadInputError(
                None,
                "cqtd_hop_lengths, cqtd_n_octaves and cqtd_bins_per_octaves must be non-empty "
                f"lists of equal length, got {hops}, {octaves}, {bpos}",
            )
        self.discriminators = nn.ModuleList(
            DiscriminatorCQT(h, hop, o, b) for hop, o, b in zip(hops, octaves, bpos)
        )


def build_discriminators(h: Mapping[str, Any]) -> nn.ModuleDict:
    """``{"mpd": MPD, "mrd": CQTD or MRD}`` from a BigVGAN config.

    As in NVIDIA's ``train.py`` the second discriminator keeps the key ``mrd`` (checkpoint key, log
    names) whichever kind it is: the CQTD when ``use_cqtd_instead_of_mrd`` (needs nnAudio), else the MRD
    over ``resolutions``. The MBD (``use_mbd_instead_of_mrd``) is not implemented.
    """
    if h.get("use_mbd_instead_of_mrd", False):
        raise BadInputError(
            None,
            '"use_mbd_instead_of_mrd" (multi-band discriminator) is not supported: use the '
            'CQT discriminator ("use_cqtd_instead_of_mrd": true) or the MRD ("resolutions")',
        )
    if h.get("use_cqtd_instead_of_mrd", False):
        second: nn.Module = MultiScaleSubbandCQTDiscriminator(h)
    elif "resolutions" in h:
        second = MultiResolutionDiscriminator(h)
    else:
        raise BadInputError(
            None,
            'the config has neither "use_cqtd_instead_of_mrd": true nor "resolutions" '
            "for the multi-resolution discriminator",
        )
    return nn.ModuleDict({"mpd": MultiPeriodDiscriminator(h), "mrd": second})
