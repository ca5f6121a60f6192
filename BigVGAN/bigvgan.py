"""BigVGAN generator (Lee et al. 2023), checkpoint-compatible with NVIDIA's release.

Design after NVIDIA BigVGAN (MIT, itself after HiFi-GAN by Kong et al. 2020); code written anew.
Module names, registration order and weight-norm parameter names (``weight_g`` / ``weight_v``, the
legacy ``torch.nn.utils.weight_norm`` layout of the official checkpoints) are those of the official
generator, so ``bigvgan_generator.pt`` (``{"generator": state_dict}``) loads with ``strict=True`` and a
state_dict saved here loads into the official code.

Shapes: mel (B, num_mels, T) -> waveform (B, 1, T * prod(upsample_rates)) in [-1, 1].
"""

from __future__ import annotations

import json
import os
import warnings

import torch
from torch import nn
from torch.nn.utils import remove_weight_norm as _remove_wn
from torch.nn.utils import weight_norm as _weight_norm

from BigVGAN.activations import Activation1d, Snake, SnakeBeta
from BigVGAN.packed_conv import Conv1d, ConvTranspose1d, packing_available
from binaural_core.audio import BadInputError

# NVIDIA's hub snapshots: the generator (+ config) and, for fine-tuning, discriminators + optimizers
GENERATOR_FILES = ("config.json", "bigvgan_generator.pt")
DISCRIMINATOR_FILE = "bigvgan_discriminator_optimizer.pt"

REQUIRED_KEYS = ("resblock", "upsample_rates", "upsample_kernel_sizes", "upsample_initial_channel",
                 "resblock_kernel_sizes", "resblock_dilation_sizes", "num_mels", "activation", "snake_logscale")
# Every key NVIDIA's code or configs use (all nine official configs load), plus this project's own
# loss keys. Anything else is a typo that would silently fall back to a default: refused.
KNOWN_KEYS = frozenset(REQUIRED_KEYS) | {
    "num_gpus", "batch_size", "learning_rate", "adam_b1", "adam_b2", "lr_decay", "seed", "use_tanh_at_final",
    "use_bias_at_final", "use_cuda_kernel", "use_cqtd_instead_of_mrd", "use_mbd_instead_of_mrd", "cqtd_filters",
    "cqtd_max_filters", "cqtd_filters_scale", "cqtd_dilations", "cqtd_hop_lengths", "cqtd_n_octaves",
    "cqtd_bins_per_octaves", "cqtd_in_channels", "cqtd_out_channels", "cqtd_normalize_volume", "mbd_fft_sizes",
    "resolutions", "mpd_reshapes", "use_spectral_norm", "mrd_use_spectral_norm", "discriminator_channel_mult",
    "mrd_channel_mult", "use_multiscale_melloss", "lambda_melloss", "clip_grad_norm", "segment_size", "num_freq",
    "n_fft", "hop_size", "win_size", "sampling_rate", "fmin", "fmax", "fmax_for_loss", "num_workers",
    "dist_config", "use_silence_aware_loss", "silence_threshold_db", "silence_weight", "silence_loss_scale",
}


class AttrDict(dict):
    """A dict whose keys are also attributes (NVIDIA's ``env.AttrDict``): ``h.num_mels`` and ``h.get``."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key, value):
        self[key] = value


def load_config(path: str | os.PathLike) -> AttrDict:
    """Read a BigVGAN JSON config; a missing required key is one line naming the file and the key."""
    from binaural_core.mel import read_json

    h = AttrDict(read_json(path))
    missing = [k for k in REQUIRED_KEYS if k not in h]
    if missing:
        raise BadInputError(path, f"missing config key(s): {', '.join(missing)}")
    unknown = sorted(set(h) - KNOWN_KEYS)
    if unknown:
        raise BadInputError(path, f"unknown config key(s): {', '.join(unknown)}")
    if h.resblock not in ("1", "2"):
        raise BadInputError(path, f"resblock must be \"1\" or \"2\", got {h.resblock!r}")
    if h.activation not in ("snake", "snakebeta"):
        raise BadInputError(path, f"activation must be \"snake\" or \"snakebeta\", got {h.activation!r}")
    if "hop_size" in h and _prod(h.upsample_rates) != h.hop_size:
        raise BadInputError(path, f"prod(upsample_rates) = {_prod(h.upsample_rates)} != hop_size {h.hop_size}")
    return h


def _prod(values) -> int:
    out = 1
    for v in values:
        out *= v
    return out


def weight_norm(module: nn.Module) -> nn.Module:
    """Legacy weight norm: keeps the official ``weight_g``/``weight_v`` names (its deprecation warning is muted)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return _weight_norm(module)


def _activation(h: AttrDict, channels: int) -> Activation1d:
    cls = SnakeBeta if h.activation == "snakebeta" else Snake
    return Activation1d(cls(channels, alpha_logscale=h.snake_logscale))


class AMPBlock1(nn.Module):
    """Anti-aliased multi-periodicity block: 3 x (act -> dilated conv -> act -> conv) residual units."""

    def __init__(self, h: AttrDict, channels: int, kernel_size: int = 3, dilation: tuple = (1, 3, 5)) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            weight_norm(Conv1d(channels, channels, kernel_size, 1, dilation=d, padding=(kernel_size * d - d) // 2))
            for d in dilation)
        self.convs2 = nn.ModuleList(
            weight_norm(Conv1d(channels, channels, kernel_size, 1, dilation=1, padding=(kernel_size - 1) // 2))
            for _ in dilation)
        # even-indexed activations feed convs1, odd-indexed feed convs2 (the official pairing)
        self.activations = nn.ModuleList(_activation(h, channels) for _ in range(2 * len(dilation)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2, a1, a2 in zip(self.convs1, self.convs2, self.activations[::2], self.activations[1::2]):
            x = x + c2(a2(c1(a1(x))))
        return x

    def remove_weight_norm(self) -> None:
        for conv in [*self.convs1, *self.convs2]:
            _remove_wn(conv)


class AMPBlock2(nn.Module):
    """Lighter AMP block: 3 x (act -> dilated conv) residual units."""

    def __init__(self, h: AttrDict, channels: int, kernel_size: int = 3, dilation: tuple = (1, 3, 5)) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            weight_norm(Conv1d(channels, channels, kernel_size, 1, dilation=d, padding=(kernel_size * d - d) // 2))
            for d in dilation)
        self.activations = nn.ModuleList(_activation(h, channels) for _ in dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, act in zip(self.convs, self.activations):
            x = x + conv(act(x))
        return x

    def remove_weight_norm(self) -> None:
        for conv in self.convs:
            _remove_wn(conv)


class BigVGAN(nn.Module):
    """The generator. ``h``: an :class:`AttrDict` config (see ``configs/``), NVIDIA's signature.

    forward: mel (B, num_mels, T) -> (B, 1, T * prod(upsample_rates)), tanh or clamp to [-1, 1].
    """

    def __init__(self, h: AttrDict, use_cuda_kernel: bool = False) -> None:
        super().__init__()
        if use_cuda_kernel:
            raise ValueError("the fused CUDA kernel is not part of this re-implementation (use_cuda_kernel=False)")
        self.h = h
        self.num_kernels = len(h.resblock_kernel_sizes)
        self.num_upsamples = len(h.upsample_rates)
        c0 = h.upsample_initial_channel
        self.conv_pre = weight_norm(Conv1d(h.num_mels, c0, 7, 1, padding=3))
        block = AMPBlock1 if h.resblock == "1" else AMPBlock2
        self.ups = nn.ModuleList(
            nn.ModuleList([weight_norm(ConvTranspose1d(c0 // 2**i, c0 // 2 ** (i + 1), k, u, padding=(k - u) // 2))])
            for i, (u, k) in enumerate(zip(h.upsample_rates, h.upsample_kernel_sizes)))
        self.resblocks = nn.ModuleList(
            block(h, c0 // 2 ** (i + 1), k, tuple(d))
            for i in range(self.num_upsamples)
            for k, d in zip(h.resblock_kernel_sizes, h.resblock_dilation_sizes))
        ch = c0 // 2**self.num_upsamples
        self.activation_post = _activation(h, ch)
        self.use_bias_at_final = h.get("use_bias_at_final", True)
        self.use_tanh_at_final = h.get("use_tanh_at_final", True)
        self.conv_post = weight_norm(Conv1d(ch, 1, 7, 1, padding=3, bias=self.use_bias_at_final))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(mel)
        for i, (up,) in enumerate(self.ups):
            x = up(x)
            blocks = self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels]
            xs = blocks[0](x)
            for blk in blocks[1:]:
                xs = xs + blk(x)
            x = xs / self.num_kernels  # mean of the multi-receptive-field blocks (HiFi-GAN's MRF)
        x = self.conv_post(self.activation_post(x))
        return torch.tanh(x) if self.use_tanh_at_final else torch.clamp(x, -1.0, 1.0)

    def remove_weight_norm(self) -> None:
        """Fold g and v into plain weights (inference); keys become ``*.weight``."""
        for (up,) in self.ups:
            _remove_wn(up)
        for blk in self.resblocks:
            blk.remove_weight_norm()
        _remove_wn(self.conv_pre)
        _remove_wn(self.conv_post)

    def pack_convolutions(self, enable: bool = True) -> BigVGAN:
        """CPU inference: every convolution reorders its weight for oneDNN once instead of on every
        call (:mod:`BigVGAN.packed_conv`; same outputs to float rounding). Takes effect after
        ``remove_weight_norm()`` and without autograd; a no-op on CUDA or without oneDNN."""
        enable = enable and packing_available()
        for m in self.modules():
            if isinstance(m, (Conv1d, ConvTranspose1d)):
                m.packed = enable
                m._cache = None
        return self

    def compile_activations(self, enable: bool = True) -> BigVGAN:
        """Run every anti-aliased activation as one fused, ``torch.compile``d pass (same outputs to
        float tolerance; several times faster than the eager chain, which is ~35 % of the generator's
        CPU time). The first forward compiles (seconds; needs a C++ compiler on CPU, Triton on CUDA)."""
        for m in self.modules():
            if isinstance(m, Activation1d):
                if enable and not m.can_fuse():
                    raise ValueError("compile_activations() needs ratio-2, 12-tap anti-aliasing filters")
                m.fused = enable
        return self

    @classmethod
    def from_pretrained(cls, path: str, *, map_location: str | torch.device = "cpu") -> BigVGAN:
        """Load NVIDIA's layout: a hub id (``nvidia/bigvgan_v2_22khz_80band_256x``, downloaded once and
        cached by huggingface_hub), a folder holding ``config.json`` + ``bigvgan_generator.pt``, or a
        generator file with ``config.json`` beside it."""
        from binaural_core.checkpoint import safe_load
        from binaural_core.hub import resolve

        path = resolve(path, files=GENERATOR_FILES, what="a BigVGAN generator")
        folder, file = (path, os.path.join(path, "bigvgan_generator.pt")) if os.path.isdir(path) else (
            os.path.dirname(os.path.abspath(path)), path)
        model = cls(load_config(os.path.join(folder, "config.json")))
        state = safe_load(file, map_location)
        state = state.get("generator", state)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError:  # a checkpoint saved after remove_weight_norm()
            model.remove_weight_norm()
            model.load_state_dict(state, strict=True)
        return model

    def save_pretrained(self, folder: str) -> None:
        """Write ``config.json`` and ``bigvgan_generator.pt`` (NVIDIA's layout)."""
        from binaural_core.checkpoint import atomic_save, atomic_write_text

        atomic_save({"generator": self.state_dict()}, os.path.join(folder, "bigvgan_generator.pt"))
        atomic_write_text(json.dumps(dict(self.h), indent=2) + "\n", os.path.join(folder, "config.json"))
