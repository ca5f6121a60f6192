"""Vocoder losses: least-squares GAN (Mao et al. 2017), feature matching (HiFi-GAN), (multi-scale) mel L1
(BigVGAN v2), and a silence-aware mel term. Design after NVIDIA BigVGAN / HiFi-GAN (MIT); code anew.

Silence-aware term (the original binaural code's idea, made to work): frames whose ground-truth level
is below ``silence_threshold_db`` get ``silence_weight`` times the mel-L1 weight, so that the vocoder
does not fill quiet passages with hiss. The level of a frame is the RMS of the ground-truth waveform
over that frame's hop-aligned samples, in dB re full scale: 20 log10(rms). (The original took
20 log10 of the natural-log mel itself, a quantity that is mostly negative, marked almost every frame
silent, and never ran.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from BigVGAN.meldataset import MelConfig, mel_spectrogram


def discriminator_loss(real: list[torch.Tensor], fake: list[torch.Tensor]):
    """Σ_k mean((1 - D_k(y))²) + mean(D_k(ŷ)²); returns (total, per-k real losses, per-k fake losses)."""
    total, r_losses, g_losses = 0.0, [], []
    for dr, dg in zip(real, fake):
        r = torch.mean((1 - dr) ** 2)
        g = torch.mean(dg**2)
        total = total + r + g
        r_losses.append(r.item())
        g_losses.append(g.item())
    return total, r_losses, g_losses


def generator_loss(fake: list[torch.Tensor]):
    """Σ_k mean((1 - D_k(ŷ))²); returns (total, per-k losses)."""
    losses = [torch.mean((1 - dg) ** 2) for dg in fake]
    return sum(losses), losses


def feature_loss(fmap_r: list[list[torch.Tensor]], fmap_g: list[list[torch.Tensor]]) -> torch.Tensor:
    """2 · Σ over sub-discriminators and layers of mean |f(y) - f(ŷ)| (HiFi-GAN's feature matching)."""
    loss = 0.0
    for dr, dg in zip(fmap_r, fmap_g):
        for r, g in zip(dr, dg):
            loss = loss + torch.mean(torch.abs(r - g))
    return 2 * loss


class MultiScaleMelSpectrogramLoss(nn.Module):
    """BigVGAN v2's mel loss: Σ over 7 scales of L1 between log10 mels of clamp(|STFT|, 1e-5).

    Windows 32 ... 2048 with hop = window / 4, Hann, centred STFT, n_mels 5 ... 320, fmin 0, fmax sr/2
    (after DAC, Kumar et al. 2023).
    """

    def __init__(self, sampling_rate: int, *, n_mels: tuple = (5, 10, 20, 40, 80, 160, 320),
                 window_lengths: tuple = (32, 64, 128, 256, 512, 1024, 2048)) -> None:
        super().__init__()
        import librosa

        self.scales = list(zip(n_mels, window_lengths))
        for i, (m, w) in enumerate(self.scales):
            basis = librosa.filters.mel(sr=sampling_rate, n_fft=w, n_mels=m, fmin=0.0, fmax=sampling_rate / 2)
            self.register_buffer(f"basis{i}", torch.from_numpy(basis).float(), persistent=False)
            self.register_buffer(f"window{i}", torch.hann_window(w), persistent=False)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B, 1, T) generated and real waveforms -> scalar."""
        loss = 0.0
        for i, (_, w) in enumerate(self.scales):
            basis, window = getattr(self, f"basis{i}"), getattr(self, f"window{i}")
            mels = []
            for x in (y_hat, y):
                spec = torch.stft(x.squeeze(1), n_fft=w, hop_length=w // 4, win_length=w, window=window,
                                  center=True, return_complex=True).abs()
                mels.append(torch.log10(torch.clamp(basis @ spec, min=1e-5)))
            loss = loss + F.l1_loss(mels[0], mels[1])
        return loss


def frame_level_db(y: torch.Tensor, hop: int) -> torch.Tensor:
    """(B, 1, T) waveform -> (B, T // hop) RMS level of each hop-aligned frame in dB re full scale."""
    b = y.shape[0]
    frames = y[..., : (y.shape[-1] // hop) * hop].reshape(b, -1, hop)
    return 10 * torch.log10(frames.pow(2).mean(-1) + 1e-12)


def silence_mask(y: torch.Tensor, hop: int, threshold_db: float = -50.0) -> torch.Tensor:
    """(B, T // hop) bool: frames of the ground truth quieter than ``threshold_db`` dBFS."""
    return frame_level_db(y, hop) < threshold_db


def silence_aware_mel_loss(mel_hat: torch.Tensor, mel: torch.Tensor, silent: torch.Tensor,
                           weight: float) -> torch.Tensor:
    """Mean |mel_hat - mel| with frames marked ``silent`` (B, F) weighted ``weight`` and others 1."""
    f = min(mel.shape[-1], mel_hat.shape[-1], silent.shape[-1])
    w = 1.0 + (weight - 1.0) * silent[:, None, :f].to(mel.dtype)
    return torch.mean(torch.abs(mel_hat[..., :f] - mel[..., :f]) * w)


class GeneratorLoss(nn.Module):
    """The generator's total loss from the config: adversarial + feature matching (MPD and MRD) +
    λ_mel · mel L1 (multi-scale when ``use_multiscale_melloss``, else the single-scale 80-band ln-mel),
    + λ_mel · silence-aware single-scale term when ``use_silence_aware_loss``."""

    def __init__(self, h, mel_cfg: MelConfig) -> None:
        super().__init__()
        self.lambda_mel = h.get("lambda_melloss", 45.0)
        self.multiscale = MultiScaleMelSpectrogramLoss(mel_cfg.sampling_rate) if h.get("use_multiscale_melloss") else None
        fmax_loss = h.get("fmax_for_loss")
        self.loss_mel_cfg = MelConfig(**{**mel_cfg.to_dict(), "fmax": fmax_loss})
        self.silence = h.get("use_silence_aware_loss", False)
        self.silence_db = h.get("silence_threshold_db", -50.0)
        self.silence_weight = h.get("silence_weight", 2.0)

    def forward(self, y: torch.Tensor, y_hat: torch.Tensor, feats: dict, *, adversarial: bool = True):
        """y, y_hat: (B, 1, T); feats: {name: (real logits, fake logits, real fmaps, fake fmaps)}."""
        parts: dict[str, torch.Tensor] = {}
        mel_single = None
        if self.multiscale is not None:
            parts["mel"] = self.multiscale(y_hat, y)
        else:
            mel_single = (mel_spectrogram(y_hat.squeeze(1), self.loss_mel_cfg), mel_spectrogram(y.squeeze(1), self.loss_mel_cfg))
            parts["mel"] = F.l1_loss(*mel_single)
        total = self.lambda_mel * parts["mel"]
        if self.silence:
            if mel_single is None:
                mel_single = (mel_spectrogram(y_hat.squeeze(1), self.loss_mel_cfg), mel_spectrogram(y.squeeze(1), self.loss_mel_cfg))
            silent = silence_mask(y, self.loss_mel_cfg.hop_size, self.silence_db)
            parts["silence_mel"] = silence_aware_mel_loss(*mel_single, silent, self.silence_weight)
            parts["silent_fraction"] = silent.float().mean()
            total = total + self.lambda_mel * parts["silence_mel"]
        if adversarial:
            for name, (_, fake, fmap_r, fmap_g) in feats.items():
                parts[f"adv_{name}"], _ = generator_loss(fake)
                parts[f"fm_{name}"] = feature_loss(fmap_r, fmap_g)
                total = total + parts[f"adv_{name}"] + parts[f"fm_{name}"]
        return total, {k: v.detach() for k, v in parts.items()}
