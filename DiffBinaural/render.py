"""Mono renderer: binaural wavs from the mono recordings and a Stage 1 mel directory (no vocoder).

    python DiffBinaural/render.py --mel_dir D --split test --mono_dir DIR --output_dir OUT [--mode free]

For every clip of ``{mel_dir}/left/{split}``: the mono's STFT is scaled per bin by the gains that the
predicted left/right mels imply relative to the mono's own mel, and rotated by the predicted interaural
phase (``{mel_dir}/phase/{split}/{name}.npy`` when the mel dir has it; ``--no-phase`` ignores it), then
inverted (``DiffBinaural.inference.renderer``). The output keeps the mono's waveform and phase: no vocoder, no
training. ``{mono_dir}/{name}.wav``: any rate (resampled to the mel rate), one channel, or two (down-mixed
to (L + R) / 2, e.g. FAIR-Play's binaural files). Output: ``OUT/{name}.wav``, 2 channels (0 = left), the
mono's duration at the mel rate; a clip whose peak would exceed full scale is scaled down (counted).
"""

from __future__ import annotations

import argparse
import logging
import os

import numpy as np
import soundfile as sf
import torch

from binaural_core.audio import BadInputError, cli_main, load_wav, save_wav
from binaural_core.mel import MelConfig
from binaural_core.mel_dir import clip_paths, load_mel_file, load_phase_file, read_meta
from DiffBinaural.inference.renderer import MODES, render

log = logging.getLogger("DiffBinaural")
FRAME_TOLERANCE = 2  # mels may be a frame or two off the mono (e.g. a binaural file a few samples shorter)


def read_mono_any(path: str, sr: int) -> np.ndarray:
    """(S,) float32 at ``sr`` from a 1- or 2-channel wav of any rate."""
    if not os.path.isfile(path):
        raise BadInputError(path, "mono file not found")
    try:
        channels = sf.info(path).channels
    except Exception as err:
        raise BadInputError(path, f"unreadable audio file ({type(err).__name__})") from None
    if channels not in (1, 2):
        raise BadInputError(path, f"expected 1 (mono) or 2 (down-mixed) channels, found {channels}")
    wav = load_wav(path, sampling_rate=sr, channels=channels, resample_ok=True)
    return wav if channels == 1 else wav.mean(axis=0)


def fit_frames(x: np.ndarray, frames: int, path: str) -> np.ndarray:
    """Trim or edge-pad the last axis of ``x`` to ``frames`` (within :data:`FRAME_TOLERANCE`)."""
    if abs(x.shape[-1] - frames) > FRAME_TOLERANCE:
        raise BadInputError(path, f"{x.shape[-1]} frames, but the mono has {frames}: not the same clip")
    if x.shape[-1] < frames:
        x = np.concatenate([x, np.repeat(x[..., -1:], frames - x.shape[-1], axis=-1)], axis=-1)
    return x[..., :frames]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mel_dir", required=True, help="Stage 1 mel directory (left/ right/ [phase/] meta.json)")
    p.add_argument("--split", default="test")
    p.add_argument("--mono_dir", required=True, help="folder of {name}.wav mono inputs")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--mode", choices=MODES, default="free", help="formulation (DiffBinaural/inference/renderer.py)")
    p.add_argument("--phase", action=argparse.BooleanOptionalAction, default=True,
                   help="use the mel dir's interaural phase when it has one (--no-phase: IPD 0)")
    p.add_argument("--subtype", default="PCM_16", choices=("PCM_16", "PCM_24", "FLOAT"))
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = MelConfig()
    meta = read_meta(args.mel_dir, cfg)
    left_dir = os.path.dirname(clip_paths(args.mel_dir, args.split, "_")[0])
    if not os.path.isdir(left_dir):
        raise BadInputError(left_dir, f"no split {args.split!r} in this mel directory")
    names = sorted(f[:-4] for f in os.listdir(left_dir) if f.endswith(".npy"))
    use_phase = args.phase and "phase" in meta
    scaled = 0
    for name in names:
        mono = read_mono_any(os.path.join(args.mono_dir, f"{name}.wav"), cfg.sampling_rate)
        frames = len(mono) // cfg.hop_size
        left, right, phase_path = clip_paths(args.mel_dir, args.split, name)
        mels = np.stack([fit_frames(load_mel_file(path, cfg), frames, path) for path in (left, right)])
        phase = fit_frames(load_phase_file(phase_path, cfg), frames, phase_path) if use_phase else None
        out = render(torch.from_numpy(mono), torch.from_numpy(mels), cfg,
                     phase=None if phase is None else torch.from_numpy(phase), mode=args.mode).numpy()
        peak = float(np.abs(out).max())
        if peak > 1.0:
            out, scaled = out / peak, scaled + 1
        save_wav(os.path.join(args.output_dir, f"{name}.wav"), out, cfg.sampling_rate, subtype=args.subtype)
    log.info("wrote %d stereo wav(s) to %s (mode %s, interaural phase %s%s)", len(names), args.output_dir, args.mode,
             "from the mel dir" if use_phase else "0 (none in the mel dir)" if args.phase else "off",
             f"; {scaled} scaled down to avoid clipping" if scaled else "")


def cli() -> None:
    """The console script of this file (pyproject.toml [project.scripts])."""
    cli_main(main)


if __name__ == "__main__":
    cli()
