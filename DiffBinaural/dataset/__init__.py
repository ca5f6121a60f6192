"""Stage 1 datasets. Item contract: :mod:`DiffBinaural.dataset.base`. Layouts: :mod:`.layout`."""

from __future__ import annotations

DATASET_KINDS = ("realbinaural", "fairplay")
# --visual_tokens when not given: FAIR-Play has no detections, so the whole frame's grid of tokens; a
# RealBinaural set has boxes (docs/experiments.md, "Visual tokens", compares boxes, both and grid).
DEFAULT_TOKENS = {"realbinaural": "boxes", "fairplay": "grid"}


def build_dataset(kind: str, args, *, list_path: str, split: str, whole_clip: bool = False):
    """The Stage 1 dataset of ``kind`` from the scripts' flags (the only place the two differ).

    ``list_path`` is a split CSV for RealBinaural and a split ``.h5`` for FAIR-Play.
    ``whole_clip`` returns whole clips (inference) instead of ``--segment_frames`` crops.
    """
    from binaural_core.mel import MelConfig
    from DiffBinaural.utils.arguments import default_frame_side

    if kind not in DATASET_KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; choose from {DATASET_KINDS}")

    common = dict(
        split=split, mel_cfg=MelConfig.from_json(args.mel_config),
        segment_frames=None if whole_clip else args.segment_frames, num_frames=args.num_frames,
        max_sources=args.max_sources, image_size=args.img_size, fps=args.fps, seed=args.seed,
        skip_bad=args.skip_bad, flip=split == "train" and getattr(args, "flip_aug", False),
        visual_tokens=getattr(args, "visual_tokens", None) or DEFAULT_TOKENS[kind],
        frame_size=getattr(args, "frame_size", None), frame_side=default_frame_side(args),
        mix=getattr(args, "mix_aug", 0.0) if split == "train" and not whole_clip else 0.0,
    )
    if kind == "realbinaural":
        from DiffBinaural.dataset.real_binaural import RealBinauralDataset

        return RealBinauralDataset(data_root=args.data_root, list_csv=list_path, **common)
    if kind == "fairplay":
        from DiffBinaural.dataset.fairplay import FairPlayDataset

        return FairPlayDataset(data_root=args.data_root, split_h5=list_path, **common)
    raise ValueError(f"unknown dataset kind {kind!r}; choose from {DATASET_KINDS}")
