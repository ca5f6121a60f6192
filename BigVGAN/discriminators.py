"""Discriminators of the vocoder: multi-period (HiFi-GAN, Kong et al. 2020) and multi-resolution
(UnivNet, Jang et al. 2021), with NVIDIA BigVGAN's module and parameter names (design after NVIDIA
BigVGAN / HiFi-GAN, MIT; code written anew), so their ``mpd`` / ``mrd`` state_dicts load strictly.

Every discriminator maps (y (B, 1, T), y_hat (B, 1, T)) to four lists, one entry per
sub-discriminator: real logits, fake logits, real feature maps, fake feature maps.

BigVGAN v2's CQT discriminator (``use_cqtd_instead_of_mrd``) is not included: it needs nnAudio's CQT
at twice the sampling rate; a config asking for it is refused with a clear message (use the MRD,
``use_cqtd_instead_of_mrd: false`` with ``resolutions``, as BigVGAN v1 does).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from BigVGAN.audio import BadInputError
from BigVGAN.bigvgan import weight_norm

LRELU_SLOPE = 0.1


def _padding(kernel_size: int, dilation: int = 1) -> int:
    return (kernel_size * dilation - dilation) // 2


def _conv_stack(x: torch.Tensor, convs: nn.ModuleList, conv_post: nn.Module) -> tuple[torch.Tensor, list]:
    """Leaky-ReLU conv stack: (flattened logits, every layer's output as feature maps)."""
    fmap = []
    for conv in convs:
        x = F.leaky_relu(conv(x), LRELU_SLOPE)
        fmap.append(x)
    x = conv_post(x)
    fmap.append(x)
    return torch.flatten(x, 1, -1), fmap


class DiscriminatorP(nn.Module):
    """Period-p discriminator: the waveform folded to (T / p, p) and 2-D convs over the first axis."""

    def __init__(self, h, period: int, *, kernel_size: int = 5, stride: int = 3, use_spectral_norm: bool = False):
        super().__init__()
        self.period = period
        m = h.get("discriminator_channel_mult", 1)
        norm = spectral_norm if use_spectral_norm else weight_norm
        chans = [1, int(32 * m), int(128 * m), int(512 * m), int(1024 * m)]
        self.convs = nn.ModuleList(
            [norm(nn.Conv2d(chans[i], chans[i + 1], (kernel_size, 1), (stride, 1), padding=(_padding(5), 0)))
             for i in range(4)]
            + [norm(nn.Conv2d(chans[4], chans[4], (kernel_size, 1), 1, padding=(2, 0)))])
        self.conv_post = norm(nn.Conv2d(chans[4], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, c, t = x.shape
        if t % self.period:
            x = F.pad(x, (0, self.period - t % self.period), "reflect")
        return _conv_stack(x.view(b, c, -1, self.period), self.convs, self.conv_post)


class DiscriminatorR(nn.Module):
    """Discriminator on one STFT magnitude resolution (n_fft, hop, win); rectangular window, as the official."""

    def __init__(self, h, resolution: list[int]):
        super().__init__()
        if len(resolution) != 3:
            raise BadInputError(None, f"each MRD resolution is [n_fft, hop, win], got {resolution}")
        self.resolution = resolution
        sn = h.get("mrd_use_spectral_norm", h.get("use_spectral_norm", False))
        norm = spectral_norm if sn else weight_norm
        m = h.get("mrd_channel_mult", h.get("discriminator_channel_mult", 1))
        c = int(32 * m)
        self.convs = nn.ModuleList([
            norm(nn.Conv2d(1, c, (3, 9), padding=(1, 4))),
            norm(nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4))),
            norm(nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4))),
            norm(nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4))),
            norm(nn.Conv2d(c, c, (3, 3), padding=(1, 1))),
        ])
        self.conv_post = norm(nn.Conv2d(c, 1, (3, 3), padding=(1, 1)))

    def spectrogram(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, T) -> (B, n_fft/2 + 1, frames) magnitude."""
        n_fft, hop, win = self.resolution
        x = F.pad(x, ((n_fft - hop) // 2, (n_fft - hop) // 2), mode="reflect").squeeze(1)
        rect = torch.ones(win, device=x.device, dtype=x.dtype)  # the official passes no window: rectangular
        spec = torch.stft(x, n_fft=n_fft, hop_length=hop, win_length=win, window=rect, center=False,
                          return_complex=True)
        return spec.abs()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return _conv_stack(self.spectrogram(x).unsqueeze(1), self.convs, self.conv_post)


class _Ensemble(nn.Module):
    """Runs every sub-discriminator on the real and the generated waveform."""

    discriminators: nn.ModuleList

    def forward(self, y: torch.Tensor, y_hat: torch.Tensor):
        y_d_rs, y_d_gs, fmap_rs, fmap_gs = [], [], [], []
        for d in self.discriminators:
            r, fr = d(y)
            g, fg = d(y_hat)
            y_d_rs.append(r)
            y_d_gs.append(g)
            fmap_rs.append(fr)
            fmap_gs.append(fg)
        return y_d_rs, y_d_gs, fmap_rs, fmap_gs


class MultiPeriodDiscriminator(_Ensemble):
    def __init__(self, h):
        super().__init__()
        self.discriminators = nn.ModuleList(
            DiscriminatorP(h, p, use_spectral_norm=h.get("use_spectral_norm", False)) for p in h.mpd_reshapes)


class MultiResolutionDiscriminator(_Ensemble):
    def __init__(self, h):
        super().__init__()
        self.discriminators = nn.ModuleList(DiscriminatorR(h, r) for r in h.resolutions)


def build_discriminators(h) -> nn.ModuleDict:
    """``{"mpd": MultiPeriodDiscriminator, "mrd": MultiResolutionDiscriminator}`` from the config."""
    if h.get("use_cqtd_instead_of_mrd", False):
        raise BadInputError(None, "this config asks for BigVGAN v2's CQT discriminator, which is not part of this "
                                  "code; set \"use_cqtd_instead_of_mrd\": false and give \"resolutions\" (MRD)")
    if "resolutions" not in h:
        raise BadInputError(None, "the config has no \"resolutions\" for the multi-resolution discriminator")
    return nn.ModuleDict({"mpd": MultiPeriodDiscriminator(h), "mrd": MultiResolutionDiscriminator(h)})
