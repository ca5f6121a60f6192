"""Stage 1 as one module: visual encoder + UNet, built from the run's config.json.

The diffusion process (:class:`~DiffBinaural.diffusion_utils.GaussianDiffusion`) and the sampler
(:class:`~DiffBinaural.diffusion_utils.Sampler`) are separate objects; this module only wires the
conditioning: dataset batch → (normalised mono mel, visual tokens) → UNet keyword arguments.
"""

from __future__ import annotations

import hashlib
import logging
import os

import torch
from torch import nn

from binaural_core.audio import LEFT, RIGHT
from binaural_core.checkpoint import load_strict, safe_load
from binaural_core.interaural import PHASE_CHANNELS as INTERAURAL_CHANNELS
from DiffBinaural.dataset.frames import VISUAL_KEYS
from DiffBinaural.diffusion_utils import GaussianDiffusion, Sampler
from DiffBinaural.modules.unet import UNetConfig, build_unet
from DiffBinaural.modules.visual_encoder import VisualEncoder
from DiffBinaural.utils.arguments import load_model_config

log = logging.getLogger("DiffBinaural")

# --target residual: the diffusion runs on (normalised binaural - normalised mono) x residual_scale
# (config key, --residual_scale). On the synthetic data that residual has std ~0.06 in normalised units
# (binaural mels: ~0.38, the phase channels ~0.55), so a model that outputs 0 already equals the
# mono-copy baseline and the network only has to learn the spatial part. The scale sets the residual's
# size against the unit noise and the phase channels: x2 (the default, and the first release's fixed
# value for configs without the key) leaves it at std 0.12; x6 (std ~0.36) learned slower on the
# synthetic data (README, Stage 1), but data with larger level differences may want another scale. The
# sampler's clip bound grows with it (:func:`clip_range`), so a larger scale never clips a residual
# that x2 kept.
RESIDUAL_SCALE = 2.0
TARGETS = ("binaural", "residual")


MEL_CHANNELS = 2  # left, right (binaural_core.audio.LEFT / RIGHT)
PHASE_CHANNELS = len(INTERAURAL_CHANNELS)  # --interaural_phase: Re, Im of the band coherence


def num_channels(cfg: dict) -> int:
    """Channels of the diffusion variable: the two ear mels, then the phase channels if predicted."""
    return MEL_CHANNELS + PHASE_CHANNELS * bool(cfg.get("interaural_phase", False))


def to_target(binaural: torch.Tensor, mono: torch.Tensor, target: str, phase: torch.Tensor | None = None, *,
              residual_scale: float = RESIDUAL_SCALE) -> torch.Tensor:
    """Normalised (B, 2, M, F) binaural and (B, 1, M, F) mono mels (and (B, 2, M, F) phase channels,
    already in the unit disk) -> the diffusion's x0, (B, 2 or 4, M, F).

    The phase channels are the same for both targets: the mono copy's interaural phase is 0, so a
    network that outputs 0 there already equals the baseline, as for the residual mels."""
    x0 = binaural if target == "binaural" else (binaural - mono) * residual_scale
    return x0 if phase is None else torch.cat([x0, phase], dim=1)


def from_target(x0: torch.Tensor, mono: torch.Tensor, target: str, *,
                residual_scale: float = RESIDUAL_SCALE) -> torch.Tensor:
    """Inverse of :func:`to_target`: a sampled x0 -> normalised binaural mels in [-1, 1] (channels 0-1),
    followed by the phase channels, clamped to [-1, 1]."""
    mels = x0[:, :MEL_CHANNELS]
    if target == "residual":
        mels = torch.clamp(mels / residual_scale + mono, -1.0, 1.0)
    return torch.cat([mels, x0[:, MEL_CHANNELS:].clamp(-1.0, 1.0)], dim=1)


def mirror_ears(x: torch.Tensor) -> torch.Tensor:
    """Stage 1 output of a scene -> the output of its left-right mirror image, (B, C, M, F) -> same.

    Mirroring swaps the ears (channels 0 and 1, :data:`binaural_core.audio.LEFT` / ``RIGHT``) and
    conjugates the interaural coherence L·conj(R) (its real part stays, its imaginary part, i.e. the
    sign of the IPD, flips). Assumes a left-right symmetric head, as the spherical-head model and dummy
    heads are. Works on normalised mels, residuals and ln-mels alike: it only reorders and negates.
    """
    out = x[:, [RIGHT, LEFT, *range(MEL_CHANNELS, x.shape[1])]].clone()
    if x.shape[1] > MEL_CHANNELS:
        out[:, MEL_CHANNELS + INTERAURAL_CHANNELS.index("coherence_imag")] *= -1.0
    return out


def clip_range(cfg: dict) -> float:
    """Bound of the sampled x0: 1 for normalised mels; for the residual, ``residual_scale / 2`` (at
    least 1), i.e. a residual of ±1/2 in normalised units (±3.6 nats) whatever the scale."""
    if cfg["target"] == "residual":
        return max(1.0, cfg["residual_scale"] / 2.0)
    return 1.0


class Stage1Model(nn.Module):
    """Visual encoder + UNet. ``forward`` is what the diffusion loss calls (DDP wraps this module).

    Shapes: ``x_t`` (B, C, M, F) normalised noisy left/right mels (C = 2), then the noisy phase
    channels with ``interaural_phase`` (C = 4); ``mono_mel`` (B, 1, M, F)
    normalised; the visual inputs (``visual``: the keys of :data:`~DiffBinaural.dataset.frames.VISUAL_KEYS`
    that ``visual_tokens`` uses): ``frames`` (B, L, N, 3, H, W) in [0, 1], ``positions`` (B, L, N, 2),
    ``mask`` (B, L, N) with True = invalid slot, ``scene`` (B, L, 3, H, W).
    """

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        self.cfg = dict(cfg)
        self.encoder = VisualEncoder(
            backbone=cfg["arch_frame"], dim=cfg["context_dim"], pretrained=cfg["pretrained_frame"],
            num_frames=cfg["num_frames"], image_size=cfg["img_size"],
            tokens=cfg.get("visual_tokens") or "boxes", grid=cfg.get("grid"), grid_pool=cfg.get("grid_pool") or "mean",
            grid_layout=bool(cfg.get("grid_layout", False)), grid_select=int(cfg.get("grid_select") or 0),
        )
        self.unet = build_unet(unet_config(cfg))

    def encode(self, visual: dict) -> dict:
        """Visual tokens for the UNet: ``context`` (B, T, D) and ``context_mask`` (B, T) from the
        visual inputs (T: :meth:`VisualEncoder.forward`)."""
        context, context_mask = self.encoder(visual.get("frames"), visual.get("positions"), visual.get("mask"),
                                             scene=visual.get("scene"))
        return {"context": context, "context_mask": context_mask}

    def forward(
        self, x_t: torch.Tensor, t: torch.Tensor, *, mono_mel: torch.Tensor, drop_visual: torch.Tensor | None = None,
        drop_mono: torch.Tensor | None = None, **visual: torch.Tensor,
    ) -> torch.Tensor:
        return self.unet(x_t, t, mono_mel=mono_mel, drop_visual=drop_visual, drop_mono=drop_mono,
                         **self.encode(visual))


def unet_config(cfg: dict) -> UNetConfig:
    return UNetConfig(
        in_channels=num_channels(cfg), out_channels=num_channels(cfg),
        base_channels=cfg["unet_channels"], channel_mults=tuple(cfg["unet_mults"]),
        num_res_blocks=cfg["num_res_blocks"], attn_levels=tuple(cfg["attn_levels"]),
        num_heads=cfg["num_heads"], dropout=cfg["dropout"], context_dim=cfg["context_dim"],
        groups=cfg["norm_groups"], token_audio=bool(cfg.get("token_audio", False)),
        token_binding=bool(cfg.get("binding_weight", 0.0)),
    )


def build_diffusion(cfg: dict) -> GaussianDiffusion:
    return GaussianDiffusion(
        num_train_timesteps=cfg["num_train_timesteps"], prediction_type=cfg["prediction_type"],
        loss_type=cfg["loss"], p_drop_visual=cfg["p_drop_visual"], p_drop_mono=cfg["p_drop_mono"],
        side_weight=cfg.get("side_weight", 0.0),  # a loss setting only: a hand-built sampling config may omit it
    )


def build_sampler(cfg: dict, args) -> Sampler:
    """Sampler for a model config (its diffusion process and clip bound, :func:`clip_range`) and the run
    options ``--sampler --steps --eta --guidance_scale``."""
    return Sampler(diffusion=build_diffusion(cfg), kind=args.sampler, num_inference_steps=args.steps, eta=args.eta,
                   guidance_scale=args.guidance_scale, clip_range=clip_range(cfg))


# Stage 1 maps ln-mels from this window linearly to [-1, 1] (the original DiffBinaural's clamp window).
NORM_MIN = -12.0
NORM_MAX = 2.5


def normalize_mel(log_mel: torch.Tensor) -> torch.Tensor:
    """ln-mel → [-1, 1]: clamp to [NORM_MIN, NORM_MAX], then map that window linearly."""
    x = torch.clamp(log_mel, NORM_MIN, NORM_MAX)
    return 2.0 * (x - NORM_MIN) / (NORM_MAX - NORM_MIN) - 1.0


def denormalize_mel(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize_mel` on [-1, 1] (values outside are clamped first)."""
    x = torch.clamp(x, -1.0, 1.0)
    return (x + 1.0) * 0.5 * (NORM_MAX - NORM_MIN) + NORM_MIN


def batch_inputs(batch: dict, device: torch.device, *, target: str, phase: bool = False,
                 residual_scale: float = RESIDUAL_SCALE) -> tuple[torch.Tensor, dict]:
    """Dataset batch → (x0 (B, C, M, F) diffusion target, model kwargs for :class:`Stage1Model`);
    ``phase``: append the batch's phase channels (C = 4)."""
    mono = normalize_mel(batch["mono_mel"].to(device, non_blocking=True))
    x0 = to_target(normalize_mel(batch["binaural_mel"].to(device, non_blocking=True)), mono, target,
                   batch["phase"].to(device, non_blocking=True) if phase else None, residual_scale=residual_scale)
    kwargs = {"mono_mel": mono, **{k: batch[k].to(device, non_blocking=True) for k in VISUAL_KEYS if k in batch}}
    return x0, kwargs


def clip_seed(seed: int, name: str) -> int:
    """A 31-bit sampling seed for clip ``name`` under run seed ``seed``: the same clip gets the same noise
    whatever list it comes in, its position there, or the rank that samples it (BLAKE2b of both)."""
    digest = hashlib.blake2b(f"{int(seed)}\x00{name}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") >> 1


@torch.no_grad()
def encode_conditions(model: Stage1Model, kwargs: dict) -> dict:
    """The UNet's conditions of a batch (:func:`batch_inputs`' kwargs): ``mono_mel`` and the visual
    tokens ``context`` (B, T, D) / ``context_mask`` (B, T). Encode once, then sample as often as
    wanted: the tokens do not depend on the noise (with a CLIP or ResNet backbone they cost more than a
    DDIM step of the tiny UNet)."""
    return {"mono_mel": kwargs["mono_mel"], **model.encode({k: kwargs[k] for k in VISUAL_KEYS if k in kwargs})}


@torch.no_grad()
def sample_mels(
    model: Stage1Model, sampler: Sampler, conditions: dict, *, generator: torch.Generator | list | None = None,
) -> torch.Tensor:
    """Normalised binaural mels (B, 2, M, F) in [-1, 1] by DDIM/DPM-Solver++, followed by the phase
    channels when the model predicts them (B, 4, M, F); ``conditions`` from :func:`encode_conditions`."""
    mono = conditions["mono_mel"]
    shape = (mono.shape[0], num_channels(model.cfg), *mono.shape[2:])
    x0 = sampler.sample(model.unet, shape, model_kwargs=conditions, generator=generator, device=mono.device)
    return from_target(x0, mono, model.cfg["target"], residual_scale=model.cfg["residual_scale"])


def load_stage1(
    run_dir: str, *, weights_unet: str | None = None, weights_frame: str | None = None,
    map_location: str | torch.device = "cpu",
) -> tuple[Stage1Model, dict]:
    """Rebuild a trained model from ``{run_dir}/config.json`` and its (EMA) weights: ``*_best.pth`` by
    default, or ``*_latest.pth`` (with one log line) for a run that was never validated."""
    cfg = load_model_config(os.path.join(run_dir, "config.json"))
    model = Stage1Model(cfg)
    paths = {"unet": weights_unet or default_weights(run_dir, "unet"),
             "encoder": weights_frame or default_weights(run_dir, "frame")}
    fallback = [os.path.basename(p) for p in paths.values() if p.endswith("_latest.pth")]
    if fallback and not (weights_unet and weights_frame):
        log.warning("%s: the run was never validated (no *_best.pth): using %s", run_dir, " and ".join(fallback))
    for part, path in paths.items():
        state = safe_load(path, map_location)
        load_strict(getattr(model, part), state, path, config=f"{run_dir}/config.json")
    return model.eval(), cfg


def default_weights(run_dir: str, part: str) -> str:
    """``{run_dir}/{part}_best.pth``, else ``{part}_latest.pth`` when the run was never validated."""
    best, latest = (os.path.join(run_dir, f"{part}_{kind}.pth") for kind in ("best", "latest"))
    return latest if not os.path.isfile(best) and os.path.isfile(latest) else best
