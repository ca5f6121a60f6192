"""Whole-clip Stage 1 inference and the mel directory it writes (docs/formats.md, "Mel directory").

A clip of any length is cut into ``segment_frames``-frame windows every ``window_hop`` frames (the
last one flush with the end; a clip shorter than a window is edge-padded), each window is sampled
with its own visual inputs and its own seeded noise (seeded from ``--seed`` and the clip's *name*,
:func:`DiffBinaural.model.clip_seed`, so a clip gets the same noise in any list, at any position), and
the windows are blended with raised-cosine
crossfades (:mod:`DiffBinaural.utils.overlap_add`). Every frame is covered, so there are no zero edges
(the original left 8 frames at each end at exactly 0, i.e. full-scale loud in ln-mel).

Mel directory::

    {dir}/left/{split}/{name}.npy    float32 (n_mels, T) natural-log mel, T = samples // hop
    {dir}/right/{split}/{name}.npy
    {dir}/phase/{split}/{name}.npy   with --interaural_phase: float32 (2, n_mels, T) phase channels
                                     (binaural_core.interaural: Re, Im of the interaural coherence per band)
    {dir}/meta.json                  format version, mel parameters, checkpoint, sampler, steps, seed,
                                     and "phase" (channels, definition) when the phase dir is written
"""

from __future__ import annotations

import os

import torch

from binaural_core.audio import BadInputError
from binaural_core.mel import MelConfig
from binaural_core.mel_dir import PHASE_SUBDIR, write_clip, write_meta
from DiffBinaural.dataset.frames import mirror_visual
from DiffBinaural.model import (
    MEL_CHANNELS,
    Stage1Model,
    clip_seed,
    denormalize_mel,
    encode_conditions,
    mirror_ears,
    normalize_mel,
    sample_mels,
)
from DiffBinaural.utils.overlap_add import crossfade_weights, overlap_add, pad_frames, window_starts

SAMPLE_SEED_STRIDE = 104_729  # seed offset of the j-th averaged sample (a prime, away from window offsets)


@torch.no_grad()
def generate_clip(
    model: Stage1Model, sampler, *, mono_mel: torch.Tensor, visual_fn, window: int, hop: int,
    batch_windows: int, seed: int, device: torch.device, frames: tuple[int, int] | None = None,
    num_samples: int = 1, flip_tta: bool = False,
) -> torch.Tensor:
    """Left/right ln-mels of a whole clip, or of the frames ``[f0, f1)`` of it.

    Args:
        mono_mel: (1, M, T) ln-mel of the whole mono clip.
        visual_fn: ``visual_fn(start_frame, num_frames) -> dict`` of a window's visual inputs
            (``frames``, ``positions``, ``mask`` and / or ``scene``, as in :mod:`DiffBinaural.dataset.base`,
            without the batch dim).
        window, hop: window length and stride in frames.
        batch_windows: windows sampled together (window i is in batch i // batch_windows).
        seed: window ``i`` uses noise seeded by ``(seed, i)``: same seed, same output.
        frames: ``(f0, f1)``: compute only the windows that touch these frames (with the rest of
            their batches) and return those frames. The windows, batches and seeds are the
            whole clip's, so the result equals the whole-clip result sliced ``[..., f0:f1]``; a long
            clip can be generated piece by piece with bounded memory.
        num_samples: average this many samples of every window (sample 0 is the ``num_samples=1``
            result): a Monte-Carlo estimate of the posterior mean E[x0 | mono, video], whose squared
            error is the posterior variance instead of twice it for a single sample. It costs
            ``num_samples`` times the sampling; for the phase channels the average is also a confidence
            (samples that disagree on the angle cancel to a small coherence).
        flip_tta: test-time mirroring: also draw ``num_samples`` samples of the mirrored scene (images
            mirrored, ``cx -> 1 - cx``, :func:`~DiffBinaural.dataset.frames.mirror_visual`), mirror
            their outputs back (:func:`~DiffBinaural.model.mirror_ears`) and average all
            ``2 * num_samples``. The mirrored pass sees other pixels, so its errors are less correlated
            with the first pass's than another sample's are (README, Stage 1, measures it). Mirrored
            sample j starts from sample j's noise, so the result is exactly mirror-equivariant.
            Assumes a left-right symmetric head. Samples ``0 .. num_samples - 1`` are the ones drawn
            without it.

    Returns:
        (C, M, f1 - f0) (default: the whole clip, T frames): ln-mels, channel 0 = left, 1 = right,
        then, when the model predicts them, the 2 phase channels (C = 4).
    """
    total = mono_mel.shape[-1]
    f0, f1 = frames or (0, total)
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if not 0 <= f0 < f1 <= total:
        raise ValueError(f"frames {(f0, f1)} outside the clip's [0, {total})")
    padded = pad_frames(normalize_mel(mono_mel), window) if total < window else normalize_mel(mono_mel)
    starts = window_starts(total, window=window, hop=hop)
    overlap = min(window - hop, window // 2) if len(starts) > 1 else 0
    weights = crossfade_weights(window, overlap)
    touching = [i for i, s in enumerate(starts) if s < f1 and s + window > f0]  # consecutive indices
    first = touching[0] // batch_windows * batch_windows
    last = min(len(starts), (touching[-1] // batch_windows + 1) * batch_windows)
    chunks = []
    for b in range(first, last, batch_windows):
        group = starts[b:b + batch_windows]
        visual = [visual_fn(s, window) for s in group]
        inputs = {k: torch.stack([v[k] for v in visual]).to(device) for k in visual[0]}
        kwargs = {"mono_mel": torch.stack([padded[:, :, s:s + window] for s in group]).to(device), **inputs}
        conditions = encode_conditions(model, kwargs)  # once per batch, whatever the number of samples
        if flip_tta:
            mirrored = encode_conditions(model, {**kwargs, **mirror_visual(inputs)})
        draws = num_samples * (2 if flip_tta else 1)
        total_x = 0.0
        for j in range(draws):
            # a mirrored sample starts from the noise of its unmirrored twin, which makes the average
            # exactly mirror-equivariant: mirroring the video mirrors the output
            gens = [torch.Generator().manual_seed(seed * 1_000_003 + b + k + SAMPLE_SEED_STRIDE * (j % num_samples))
                    for k in range(len(group))]
            if j < num_samples:
                x = sample_mels(model, sampler, conditions, generator=gens)
            else:  # the mirrored scene, its output mirrored back
                x = mirror_ears(sample_mels(model, sampler, mirrored, generator=gens))
            total_x = total_x + x.float().cpu()
        chunks.append(total_x / draws)
    # windows first..last-1 are consecutive, so they cover [lo, hi) without a gap, and every frame of
    # [f0, f1) gets all of its windows in the same order as in the whole clip: the same sums
    lo, hi = starts[first], max(s + window for s in starts[first:last])
    x = overlap_add(torch.cat(chunks), [s - lo for s in starts[first:last]], hi - lo, weights)
    x = x[..., f0 - lo:f1 - lo]
    return torch.cat([denormalize_mel(x[:MEL_CHANNELS]), x[MEL_CHANNELS:]])


def run_inference(args, dataset_kind: str) -> None:
    """What ``test_realBinaural.py`` / ``test_fairplay.py`` do: write the mel dir of ``--list_test``.

    ``--mode test`` samples Stage 1 (EMA weights); ``--mode gt`` writes the ground-truth mels of the
    same clips in the same layout (the vocoder's ceiling and the evaluation reference).
    """
    import logging

    from tqdm import tqdm

    from DiffBinaural.dataset import build_dataset
    from DiffBinaural.model import build_sampler, default_weights, load_stage1
    from DiffBinaural.utils.arguments import run_dir

    log = logging.getLogger("DiffBinaural")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    mel_cfg = MelConfig.from_json(args.mel_config)
    info: dict = {"mode": args.mode, "dataset": dataset_kind, "list": os.path.abspath(args.list_test)}
    if args.num_samples < 1:
        raise BadInputError(None, f"--num_samples must be >= 1, got {args.num_samples}")
    model = None
    if args.mode == "test":
        model, cfg = load_stage1(run_dir(args), weights_unet=args.weights_unet, weights_frame=args.weights_frame,
                                 map_location=device)
        model.to(device)
        problem = mel_cfg.mismatch(cfg["mel"])
        if problem:
            raise BadInputError(args.mel_config, f"differs from the checkpoint's mel parameters: {problem}")
        for key in ("segment_frames", "num_frames", "max_sources", "img_size", "fps", "visual_tokens", "frame_size"):
            setattr(args, key, cfg[key])  # the visual inputs must be built as in training
        sampler = build_sampler(cfg, args)
        if args.window_hop is None:
            args.window_hop = max(1, cfg["segment_frames"] // 2)
        info.update(checkpoint=os.path.abspath(args.weights_unet or default_weights(run_dir(args), "unet")),
                    sampler=args.sampler, steps=args.steps, eta=args.eta, guidance_scale=args.guidance_scale,
                    seed=args.seed, window=cfg["segment_frames"], window_hop=args.window_hop,
                    num_samples=args.num_samples, flip_tta=args.flip_tta)
    dataset = build_dataset(dataset_kind, args, list_path=args.list_test, split=args.split, whole_clip=True)
    meta_path = os.path.join(args.output_dir, "meta.json")
    if os.path.exists(meta_path):
        os.remove(meta_path)  # the dir is incomplete until the new meta.json is written
    names = []
    # --mode gt writes the true phase channels too (the renderers' ceiling and the reference)
    with_phase = model is None or bool(cfg.get("interaural_phase", False))
    stale = os.path.join(args.output_dir, PHASE_SUBDIR, args.split)
    if not with_phase and os.path.isdir(stale):
        import shutil

        shutil.rmtree(stale)  # an earlier dump's phase must not be paired with these mels
    # a bar on a terminal only (disable=None); a log file gets the summary line at the end
    for i in tqdm(range(len(dataset)), desc=f"{args.mode} mels", dynamic_ncols=True, disable=None):
        item = dataset[i]
        if model is None:
            mel = torch.cat([item["binaural_mel"], item["phase"]])
        else:
            def visual_fn(start_frame, num_frames, i=i, item=item, hop=mel_cfg.hop_size):
                return dataset.visual_inputs(i, item["start"] + start_frame * hop, num_frames * hop)

            mel = generate_clip(model, sampler, mono_mel=item["mono_mel"], visual_fn=visual_fn,
                                window=cfg["segment_frames"], hop=args.window_hop, batch_windows=args.window_batch,
                                seed=clip_seed(args.seed, item["name"]), device=device, num_samples=args.num_samples,
                                flip_tta=args.flip_tta)
        write_clip(args.output_dir, args.split, item["name"], mel.numpy())
        names.append(item["name"])
    write_meta(args.output_dir, mel_cfg=mel_cfg, split=args.split, names=names, phase=with_phase, **info)
    log.info("wrote %d clip(s) to %s", len(names), args.output_dir)
