"""Stage-1 denoising UNet: (x_t, t, mono log-mel, visual tokens) -> ε or v for the left/right log-mels.

Layout (defaults: base 64, mults (1, 2, 4), 2 res blocks, M = F = 80)::

    in   concat[x_t (2), mono (1), mel-coordinate (1)] -> 3×3 conv -> 64          80×80
    down level 0: 2 × [ResBlock 64,  CrossAttn]                -> Downsample     80×80 -> 40×40
         level 1: 2 × [ResBlock 128, SelfAttn, CrossAttn]      -> Downsample     40×40 -> 20×20
         level 2: 2 × [ResBlock 256, SelfAttn, CrossAttn]                        20×20
    mid  ResBlock 256, SelfAttn, CrossAttn, ResBlock 256                          20×20
    up   mirror of down, 3 blocks per level (one per skip), concat skip -> ResBlock -> attn,
         Upsample at the end of levels 2 and 1
    out  GN -> SiLU -> zero-initialised 3×3 conv -> 2                             80×80

The network follows the ADM UNet of Nichol & Dhariwal 2021 (itself from Ho et al. 2020): FiLM/AdaGN
time conditioning in every ResBlock, self-attention only at the low resolutions (``attn_levels``),
zero-initialised residual branches and output conv.

Where the conditioning enters:

* **Mono mel**: channel concatenation at the input (as the original). With ``drop_mono[b]`` the
  sample's mono map is replaced by a learned scalar ``mono_null`` broadcast over (M, F), for
  classifier-free guidance (Ho & Salimans 2022).
* **Visual tokens**: cross-attention (Rombach et al. 2022) after **every** ResBlock of the down, middle
  and up paths, at all resolutions. The key set is tiny (L·N + 1 tokens, e.g. 21), so even the 80×80
  level costs only 6400×21 scores; giving the full-resolution layers access to the source positions is
  cheap. The key set always starts with one learned, always-valid **null token**, so a sample whose
  tokens are all masked still has a well-defined softmax (no all −inf row, no NaN).
* **Audio-aware tokens** (``token_audio=True``): before the key set is built, every token is mixed
  bilinearly with a summary of the (guidance-dropped) mono (:class:`AudioAwareTokens`), so its keys can
  say whether its object is heard; with ``token_binding`` a training forward also sets
  ``self.binding_loss``, the tokens' audio-visual correspondence loss on the mono as recorded.
* ``drop_visual[b]`` is *defined* as "mask all of sample b's tokens": only the null token remains, so
  the output equals the output with an all-True ``context_mask`` bit for bit, and ``context=None``
  means the same thing for the whole batch.
* **Mel coordinate** (addition, ``freq_coord=True``): a fixed channel linear in the mel-bin index, in
  [−1, 1]. Self-attention is permutation-invariant and convolutions see position only through zero
  padding, while interaural cues depend strongly on frequency; the time axis has no absolute meaning
  (random crops), so only the mel axis gets a coordinate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from .blocks import (
    ATTN_IMPLS,
    AudioAwareTokens,
    CrossAttention,
    Downsample,
    ResBlock,
    SelfAttention,
    TimestepEmbedding,
    Upsample,
    group_norm,
    padding_to_attn_mask,
    zero_module,
)


@dataclass(frozen=True)
class UNetConfig:
    """Everything that defines the UNet's architecture; saved with checkpoints (see :func:`build_unet`)."""

    in_channels: int = 2
    cond_channels: int = 1
    out_channels: int = 2
    base_channels: int = 64
    channel_mults: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    attn_levels: tuple[int, ...] = (1, 2)
    cross_attn: bool = True
    num_heads: int = 4
    head_dim: int | None = None
    dropout: float = 0.1
    context_dim: int = 256
    groups: int = 32
    freq_coord: bool = True
    token_audio: bool = False
    token_binding: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channel_mults"], d["attn_levels"] = list(self.channel_mults), list(self.attn_levels)
        return d


def build_unet(cfg: dict | UNetConfig) -> UNet:
    """Build a :class:`UNet` from a saved config (a dict, e.g. from a checkpoint, or a UNetConfig).

    Unknown keys raise, so a typo or a config from an incompatible version fails loudly.
    """
    if isinstance(cfg, UNetConfig):
        cfg = asdict(cfg)
    known = {f.name for f in fields(UNetConfig)}
    unknown = set(cfg) - known
    if unknown:
        raise ValueError(f"unknown UNet config keys: {sorted(unknown)}; known: {sorted(known)}")
    cfg = dict(cfg)
    for key in ("channel_mults", "attn_levels"):
        if key in cfg:
            cfg[key] = tuple(cfg[key])
    return UNet(**cfg)


class _Stage(nn.Module):
    """ResBlock followed by optional self-attention and optional cross-attention.

    h (B, C_in, M, F) -> (B, C_out, M, F).
    """

    def __init__(
        self,
        *,
        in_ch: int,
        out_ch: int,
        emb_dim: int,
        self_attn: bool,
        cross_attn: bool,
        context_dim: int,
        num_heads: int,
        head_dim: int | None,
        dropout: float,
        groups: int,
    ) -> None:
        super().__init__()
        self.res = ResBlock(
            in_channels=in_ch, out_channels=out_ch, emb_dim=emb_dim, dropout=dropout, groups=groups
        )
        heads = dict(num_heads=num_heads, head_dim=head_dim, groups=groups)
        self.attn = SelfAttention(channels=out_ch, **heads) if self_attn else None
        self.xattn = (
            CrossAttention(channels=out_ch, context_dim=context_dim, dropout=dropout, **heads)
            if cross_attn
            else None
        )

    def forward(
        self, h: torch.Tensor, emb: torch.Tensor, context: torch.Tensor, attn_mask: torch.Tensor
    ) -> torch.Tensor:
        h = self.res(h, emb)
        if self.attn is not None:
            h = self.attn(h)
        if self.xattn is not None:
            h = self.xattn(h, context, attn_mask)
        return h


class UNet(nn.Module):
    """Conditional denoiser for binaural log-mels (see the module docstring for the layout).

    The network predicts whatever the diffusion object trains it on (ε or v); it knows nothing about
    noise schedules. All hyper-parameters are keyword-only and mirrored in ``self.config``
    (a :class:`UNetConfig`), which :func:`build_unet` turns back into the same model.
    """

    def __init__(
        self,
        *,
        in_channels: int = 2,
        cond_channels: int = 1,
        out_channels: int = 2,
        base_channels: int = 64,
        channel_mults: tuple[int, ...] = (1, 2, 4),
        num_res_blocks: int = 2,
        attn_levels: tuple[int, ...] = (1, 2),
        cross_attn: bool = True,
        num_heads: int = 4,
        head_dim: int | None = None,
        dropout: float = 0.1,
        context_dim: int = 256,
        groups: int = 32,
        freq_coord: bool = True,
        token_audio: bool = False,
        token_binding: bool = False,
    ) -> None:
        super().__init__()
        channel_mults, attn_levels = tuple(channel_mults), tuple(attn_levels)
        if any(not 0 <= lvl < len(channel_mults) for lvl in attn_levels):
            raise ValueError(f"attn_levels {attn_levels} must index into channel_mults {channel_mults}")
        self.config = UNetConfig(
            in_channels=in_channels,
            cond_channels=cond_channels,
            out_channels=out_channels,
            base_channels=base_channels,
            channel_mults=channel_mults,
            num_res_blocks=num_res_blocks,
            attn_levels=attn_levels,
            cross_attn=cross_attn,
            num_heads=num_heads,
            head_dim=head_dim,
            dropout=dropout,
            context_dim=context_dim,
            groups=groups,
            freq_coord=freq_coord,
            token_audio=token_audio,
            token_binding=token_binding,
        )
        if token_binding and not token_audio:
            raise ValueError("token_binding scores the audio-aware tokens: it needs token_audio=True")
        emb_dim = 4 * base_channels
        self.time_embed = TimestepEmbedding(freq_dim=base_channels, emb_dim=emb_dim)

        # Classifier-free-guidance nulls. The scalar starts at 0 (mid-range of the [-1, 1] mel scale);
        # the token starts small and random so that it is distinct from zeroed padding.
        self.mono_null = nn.Parameter(torch.zeros(()))
        self.null_token = nn.Parameter(0.02 * torch.randn(1, 1, context_dim))
        self.context_norm = nn.LayerNorm(context_dim)
        # Tokens that also see the mono (the sound-to-box binding), and the per-token correspondence
        # loss on them (AudioAwareTokens). binding_loss is set by every training forward with token_binding.
        self.token_audio = AudioAwareTokens(dim=context_dim, binding=token_binding) if token_audio else None
        self.binding_loss = torch.zeros(())

        stage = dict(
            emb_dim=emb_dim,
            context_dim=context_dim,
            num_heads=num_heads,
            head_dim=head_dim,
            dropout=dropout,
            groups=groups,
        )
        n_in = in_channels + cond_channels + int(freq_coord)
        self.in_conv = nn.Conv2d(n_in, base_channels, 3, padding=1)

        ch = base_channels
        skip_channels = [ch]
        self.down = nn.ModuleList()
        for level, mult in enumerate(channel_mults):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks):
                blocks.append(
                    _Stage(
                        in_ch=ch,
                        out_ch=base_channels * mult,
                        self_attn=level in attn_levels,
                        cross_attn=cross_attn,
                        **stage,
                    )
                )
                ch = base_channels * mult
                skip_channels.append(ch)
            down = Downsample(channels=ch) if level < len(channel_mults) - 1 else None
            if down is not None:
                skip_channels.append(ch)
            self.down.append(
                nn.ModuleDict({"blocks": blocks, **({"down": down} if down is not None else {})})
            )

        # The middle always has self- and cross-attention (lowest resolution, cheapest place for both).
        self.mid1 = _Stage(in_ch=ch, out_ch=ch, self_attn=True, cross_attn=cross_attn, **stage)
        self.mid2 = ResBlock(in_channels=ch, out_channels=ch, emb_dim=emb_dim, dropout=dropout, groups=groups)

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mults))):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                blocks.append(
                    _Stage(
                        in_ch=ch + skip_channels.pop(),
                        out_ch=base_channels * mult,
                        self_attn=level in attn_levels,
                        cross_attn=cross_attn,
                        **stage,
                    )
                )
                ch = base_channels * mult
            up = Upsample(channels=ch) if level > 0 else None
            self.up.append(nn.ModuleDict({"blocks": blocks, **({"up": up} if up is not None else {})}))
        assert not skip_channels

        self.out = nn.Sequential(
            group_norm(ch, groups), nn.SiLU(), zero_module(nn.Conv2d(ch, out_channels, 3, padding=1))
        )

    @property
    def downsample_factor(self) -> int:
        """M and F of the input must be divisible by this (2 per level except the last)."""
        return 2 ** (len(self.config.channel_mults) - 1)

    def set_attention_impl(self, impl: str) -> None:
        """Switch every attention layer between "sdpa" (fused kernels) and "math" (plain softmax)."""
        if impl not in ATTN_IMPLS:
            raise ValueError(f"unknown attention impl {impl!r}; choose from {ATTN_IMPLS}")
        for m in self.modules():
            if isinstance(m, SelfAttention | CrossAttention):
                m.attn_impl = impl

    def _key_set(
        self,
        batch: int,
        context: torch.Tensor | None,
        context_mask: torch.Tensor | None,
        drop_visual: torch.Tensor | None,
        mono_mel: torch.Tensor,
        heard_mono: torch.Tensor,
        device: torch.device,
        dtype: torch.dtype,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Build keys = [null token, visual tokens] and the SDPA mask (``mono_mel`` (B, 1, M, F), after
        its guidance drop: what ``token_audio`` summarises; ``heard_mono``: before it, what the binding
        loss asks about).

        Returns context (B, 1 + K, D) and attn_mask (B, 1, 1, 1 + K) bool, True = attend.
        """
        d = self.config.context_dim
        if context is None:
            context = torch.zeros(batch, 0, d, device=device, dtype=dtype)
        if context.ndim != 3 or context.shape[0] != batch or context.shape[2] != d:
            raise ValueError(f"context must be (B={batch}, K, {d}), got {tuple(context.shape)}")
        k = context.shape[1]
        pad = torch.zeros(batch, k, dtype=torch.bool, device=device) if context_mask is None else context_mask
        if pad.shape != (batch, k) or pad.dtype != torch.bool:
            raise ValueError(
                f"context_mask must be bool (B={batch}, K={k}) with True = invalid, got "
                f"{tuple(pad.shape)} {pad.dtype}"
            )
        if drop_visual is not None:
            pad = pad | drop_visual.to(torch.bool)[:, None]
        # Zero the padded tokens too: masked keys already get zero weight, but zeroing makes the output
        # provably independent of their content (even NaN/inf from garbage crops).
        context = self.context_norm(context)
        if self.token_audio is not None:
            if self.config.token_binding and self.training:
                self.binding_loss = self.token_audio.binding_loss(context, ~pad, heard_mono)
            context = self.token_audio(context, mono_mel)
        context = context.masked_fill(pad[..., None], 0.0)
        context = torch.cat([self.null_token.expand(batch, 1, d).to(context.dtype), context], dim=1)
        pad = torch.cat([torch.zeros(batch, 1, dtype=torch.bool, device=device), pad], dim=1)  # null: valid
        return context, padding_to_attn_mask(pad)

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        *,
        mono_mel: torch.Tensor,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        drop_visual: torch.Tensor | None = None,
        drop_mono: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict ε (or v) for the noisy binaural mels.

        Args:
            x_t: (B, 2, M, F) noisy normalised left/right log-mels.
            t: (B,) long or float timesteps.
            mono_mel: (B, 1, M, F) normalised mono log-mel.
            context: (B, K, context_dim) visual tokens, or None (= no visual conditioning).
            context_mask: (B, K) bool, **True = invalid / padded** token; None = all valid.
            drop_visual: (B,) bool or None; True masks all of that sample's tokens (CFG null).
            drop_mono: (B,) bool or None; True replaces that sample's mono mel by ``mono_null``.
        Returns:
            (B, 2, M, F).
        """
        b, _, m, f = x_t.shape
        fac = self.downsample_factor
        if m % fac or f % fac:
            raise ValueError(
                f"UNet with channel_mults={self.config.channel_mults} downsamples by {fac}: mel bins M={m} and "
                f"frames F={f} must both be divisible by {fac} (crop or pad the segment)"
            )
        if mono_mel.shape != (b, self.config.cond_channels, m, f):
            raise ValueError(
                f"mono_mel must be {(b, self.config.cond_channels, m, f)}, got {tuple(mono_mel.shape)}"
            )
        if t.ndim == 0:
            t = t.expand(b)

        heard_mono = mono_mel
        if drop_mono is not None:
            mono_mel = torch.where(
                drop_mono.to(torch.bool)[:, None, None, None], self.mono_null.to(mono_mel.dtype), mono_mel
            )
        inputs = [x_t, mono_mel]
        if self.config.freq_coord:
            coord = torch.linspace(-1.0, 1.0, m, device=x_t.device, dtype=x_t.dtype)
            inputs.append(coord[None, None, :, None].expand(b, 1, m, f))
        h = self.in_conv(torch.cat(inputs, dim=1))

        emb = self.time_embed(t).to(h.dtype)
        ctx, attn_mask = self._key_set(b, context, context_mask, drop_visual, mono_mel, heard_mono, x_t.device, h.dtype)

        skips = [h]
        for level in self.down:
            for block in level["blocks"]:
                h = block(h, emb, ctx, attn_mask)
                skips.append(h)
            if "down" in level:
                h = level["down"](h)
                skips.append(h)

        h = self.mid2(self.mid1(h, emb, ctx, attn_mask), emb)

        for level in self.up:
            for block in level["blocks"]:
                h = block(torch.cat([h, skips.pop()], dim=1), emb, ctx, attn_mask)
            if "up" in level:
                h = level["up"](h)
        return self.out(h)


def count_parameters(module: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


__all__ = ["UNet", "UNetConfig", "build_unet", "count_parameters"]
