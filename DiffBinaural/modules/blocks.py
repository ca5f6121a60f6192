"""Shared building blocks of the Stage-1 UNet.

Conventions (used by every module in this package):

* Feature maps are ``(B, C, M, F)``: batch, channels, mel bins, time frames.
* Token sets are ``(B, K, D)``.
* A *padding mask* is ``(B, K)`` bool with **True = invalid / padded** (the dataset convention).
  ``scaled_dot_product_attention`` wants the opposite (True = attend). The conversion happens in
  exactly one place, :func:`padding_to_attn_mask`, so the convention cannot be inverted by accident
  (the original code attended only to the padded slots; see docs/original.md).

References: Ho et al. 2020 (DDPM UNet, sinusoidal timestep embedding), Nichol & Dhariwal 2021
("Improved DDPM" / "Diffusion Models Beat GANs": scale-shift norm a.k.a. AdaGN, zero-initialised
residual branches), Rombach et al. 2022 (LDM: cross-attention to a conditioning token set).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

ATTN_IMPLS = ("sdpa", "math")


def zero_module(module: nn.Module) -> nn.Module:
    """Zero all parameters of ``module`` and return it.

    Used on the last layer of every residual branch and on the UNet's output conv, so that at
    initialisation each block is the identity and the network predicts 0 (Nichol & Dhariwal 2021,
    following Goyal et al. 2017's zero-gamma trick). This stabilises early diffusion training.
    """
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm with a clear error when ``groups`` does not divide ``channels``."""
    if channels % groups != 0:
        raise ValueError(
            f"GroupNorm: groups={groups} must divide channels={channels}; "
            "pick base_channels as a multiple of groups (tiny test models use small groups)"
        )
    return nn.GroupNorm(groups, channels, eps=1e-6)


def timestep_embedding(t: torch.Tensor, dim: int, *, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, as in Ho et al. 2020 / Vaswani 2017.

    Args:
        t: (B,) integer or float timesteps.
        dim: embedding size (even).
    Returns:
        (B, dim) float32, ``[cos(t·ω_k), sin(t·ω_k)]`` with ω_k = max_period^(−k/half).
    """
    if t.ndim != 1:
        raise ValueError(f"timesteps must be 1-D (B,), got shape {tuple(t.shape)}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class TimestepEmbedding(nn.Module):
    """t (B,) -> (B, emb_dim): sinusoid of size ``freq_dim`` followed by a 2-layer SiLU MLP."""

    def __init__(self, *, freq_dim: int, emb_dim: int) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t, self.freq_dim))


class ResBlock(nn.Module):
    """Residual conv block conditioned on the time embedding by FiLM / AdaGN.

    ``h = conv(SiLU(GN(x)))``; ``h = GN(h)·(1 + scale) + shift`` with (scale, shift) a linear function
    of the time embedding (Nichol & Dhariwal 2021, "use_scale_shift_norm"); then SiLU → dropout →
    zero-initialised conv, plus a skip (1×1 conv when the channel count changes).

    Shapes: x (B, in_channels, M, F), emb (B, emb_dim) -> (B, out_channels, M, F).
    """

    def __init__(
        self, *, in_channels: int, out_channels: int, emb_dim: int, dropout: float = 0.0, groups: int = 32
    ) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb_proj = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * out_channels))
        self.norm2 = group_norm(out_channels, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_module(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb_proj(emb)[:, :, None, None].chunk(2, dim=1)  # (B, C, 1, 1) each
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class Downsample(nn.Module):
    """Strided 3×3 conv: (B, C, M, F) -> (B, C, M/2, F/2). M and F must be even."""

    def __init__(self, *, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest ×2 then 3×3 conv (avoids the checkerboard of transposed convs, Odena et al. 2016).

    (B, C, M, F) -> (B, C, 2M, 2F).
    """

    def __init__(self, *, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


# --------------------------------------------------------------------------------------- attention


def padding_to_attn_mask(padding_mask: torch.Tensor) -> torch.Tensor:
    """The ONE place where our padding convention is converted for SDPA.

    Args:
        padding_mask: (B, K) bool, **True = invalid / padded** key.
    Returns:
        (B, 1, 1, K) bool, **True = attend**, broadcastable over heads and queries.
    """
    if padding_mask.dtype != torch.bool:
        raise TypeError(f"padding mask must be bool (True = invalid), got {padding_mask.dtype}")
    return (~padding_mask)[:, None, None, :]


def attention_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Plain ``softmax(QKᵀ/√d)·V``, the oracle for the SDPA path and a baseline for benchmarks.

    Args:
        q: (B, h, Nq, d); k, v: (B, h, Nk, d).
        attn_mask: bool broadcastable to (B, h, Nq, Nk), True = attend.
    Returns:
        (B, h, Nq, d).
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, h, Nq, Nk)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    return scores.softmax(dim=-1) @ v


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    *,
    impl: str = "sdpa",
) -> torch.Tensor:
    """Multi-head attention core; ``impl`` = "sdpa" (fused / memory-efficient kernels) or "math"."""
    if impl == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    if impl == "math":
        return attention_reference(q, k, v, attn_mask)
    raise ValueError(f"unknown attention impl {impl!r}; choose from {ATTN_IMPLS}")


def _resolve_heads(channels: int, num_heads: int, head_dim: int | None) -> int:
    """Number of heads: ``channels // head_dim`` if head_dim is given, else ``num_heads``."""
    heads = channels // head_dim if head_dim is not None else num_heads
    if heads < 1 or channels % heads != 0:
        raise ValueError(
            f"channels={channels} cannot be split into heads (num_heads={num_heads}, head_dim={head_dim})"
        )
    return heads


class SelfAttention(nn.Module):
    """Pre-norm multi-head self-attention over all M×F positions, with a residual connection.

    Used only at the lower resolutions, where M·F tokens are affordable (a 20×20 map = 400 tokens).
    The output projection is zero-initialised so the block starts as the identity.

    Shapes: x (B, C, M, F) -> (B, C, M, F).
    """

    def __init__(
        self,
        *,
        channels: int,
        num_heads: int = 4,
        head_dim: int | None = None,
        groups: int = 32,
        attn_impl: str = "sdpa",
    ) -> None:
        super().__init__()
        self.heads = _resolve_heads(channels, num_heads, head_dim)
        self.attn_impl = attn_impl
        self.norm = group_norm(channels, groups)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = zero_module(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, m, f = x.shape
        h = self.norm(x).flatten(2).transpose(1, 2)  # (B, M·F, C)
        # Token-major layout keeps the head dim contiguous, which the fused SDPA kernels require
        # (a channel-major 1×1-conv layout silently falls back to the slow math path on CPU).
        q, k, v = self.qkv(h).reshape(b, m * f, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = attention(q, k, v, impl=self.attn_impl)  # (B, h, M·F, d)
        out = self.proj(out.transpose(1, 2).reshape(b, m * f, c))  # (B, M·F, C)
        return x + out.transpose(1, 2).reshape(b, c, m, f)


class CrossAttention(nn.Module):
    """Pre-norm cross-attention from feature-map positions to a set of context tokens (Rombach et al.
    2022), with a residual connection.

    Unlike the original code, which broadcast ONE visual vector to every key (so the softmax was
    uniform and the layer reduced to a constant bias), every key here is a distinct token (one per
    frame × source slot, plus the null token), so each time-frequency position can choose what it
    attends to. Keys where ``attn_mask`` is False get zero weight.

    Shapes: x (B, C, M, F), context (B, K, context_dim), attn_mask (B, 1, 1, K) bool True = attend
    (see :func:`padding_to_attn_mask`) -> (B, C, M, F).
    """

    def __init__(
        self,
        *,
        channels: int,
        context_dim: int,
        num_heads: int = 4,
        head_dim: int | None = None,
        groups: int = 32,
        dropout: float = 0.0,
        attn_impl: str = "sdpa",
    ) -> None:
        super().__init__()
        self.heads = _resolve_heads(channels, num_heads, head_dim)
        self.attn_impl = attn_impl
        self.norm = group_norm(channels, groups)
        self.to_q = nn.Linear(channels, channels)
        self.to_kv = nn.Linear(context_dim, 2 * channels)
        self.dropout = nn.Dropout(dropout)
        self.proj = zero_module(nn.Linear(channels, channels))

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, attn_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        b, c, m, f = x.shape
        d = c // self.heads
        h = self.norm(x).flatten(2).transpose(1, 2)  # (B, M·F, C)
        q = self.to_q(h).reshape(b, m * f, self.heads, d).transpose(1, 2)  # (B, h, M·F, d)
        k, v = self.to_kv(context).reshape(b, -1, 2, self.heads, d).permute(2, 0, 3, 1, 4)  # (B, h, K, d)
        out = attention(q, k, v, attn_mask, impl=self.attn_impl)  # (B, h, M·F, d)
        out = self.proj(self.dropout(out.transpose(1, 2).reshape(b, m * f, c)))  # (B, M·F, C)
        return x + out.transpose(1, 2).reshape(b, c, m, f)


AUDIO_BANDS = 40  # AudioAwareTokens: the mono mel pooled to this many bands, whatever n_mels is


def audio_summary(mono_mel: torch.Tensor) -> torch.Tensor:
    """(B, C, M, F) normalised mono log-mel (channel 0 is read) → (B, 2·AUDIO_BANDS): per band of equal
    mel width, the mean over frames and the standard deviation (a sustained note vs. a rhythm)."""
    bands = F.adaptive_avg_pool2d(mono_mel[:, :1], (AUDIO_BANDS, mono_mel.shape[-1]))[:, 0]
    return torch.cat([bands.mean(-1), bands.std(-1, unbiased=False)], dim=-1)


class AudioAwareTokens(nn.Module):
    """Visual tokens that also see what the mono plays, so that a token's keys can say whether its
    object is the one heard (the sound-to-box binding).

    z = (W_v v) ⊙ MLP(audio_summary(mono)) is a bilinear token-audio interaction (an additive one cannot
    say "this look goes with that sound"); the token becomes v + W_o z with W_o zero-initialised, so a
    fresh module returns the tokens unchanged. With ``binding`` a linear read-out of z scores the
    audio-visual correspondence per token (Arandjelović & Zisserman 2017, token by token), trained by
    :meth:`binding_loss`.

    Shapes: tokens (B, K, D), mono (B, C, M, F) → (B, K, D).
    """

    def __init__(self, *, dim: int, binding: bool = False) -> None:
        super().__init__()
        self.visual = nn.Linear(dim, dim)
        self.audio = nn.Sequential(nn.Linear(2 * AUDIO_BANDS, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.out = zero_module(nn.Linear(dim, dim))
        self.score = nn.Linear(dim, 1) if binding else None

    def encode_audio(self, tokens: torch.Tensor, mono: torch.Tensor) -> torch.Tensor:
        """(B, D): what each clip's mono plays, in the tokens' dtype."""
        return self.audio(audio_summary(mono).to(tokens.dtype))

    def interaction(self, tokens: torch.Tensor, mono: torch.Tensor) -> torch.Tensor:
        return self.visual(tokens) * self.encode_audio(tokens, mono)[:, None]

    def forward(self, tokens: torch.Tensor, mono: torch.Tensor) -> torch.Tensor:
        return tokens + self.out(self.interaction(tokens, mono))

    def binding_loss(self, tokens: torch.Tensor, valid: torch.Tensor, mono: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy of each valid token (``valid`` (B, K) bool) against its own clip's mono
        (label 1) and the next clip's in the batch (label 0). Objects in view that do not sound get label
        1 too, so no labels are needed: what is learned is which look goes with which sound, and a silent
        object's token scores low wherever its sound is absent. A batch of one has no other clip: 0."""
        if self.score is None:
            raise RuntimeError("binding_loss needs AudioAwareTokens(binding=True)")
        if tokens.shape[0] < 2 or not valid.any():
            return tokens.new_zeros(())
        visual, audio = self.visual(tokens), self.encode_audio(tokens, mono)  # the next clip's: audio.roll(1)
        logits = torch.stack([self.score(visual * a[:, None])[..., 0] for a in (audio, audio.roll(1, dims=0))])
        labels = torch.stack([torch.ones_like(logits[0]), torch.zeros_like(logits[1])])
        bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
        return (bce * valid).sum() / (2 * valid.sum())
