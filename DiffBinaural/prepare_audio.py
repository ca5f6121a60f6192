"""Resample a folder of recordings to the project's rate (and write mono down-mixes).

    python DiffBinaural/prepare_audio.py --in RAW_DIR --out DATA_ROOT/processed/binaural_audios_22050Hz \
        [--sr 22050] [--channels 2] [--mono_out DATA_ROOT/processed/mono_audios_22050Hz] [--skip_bad]

Reads every ``*.wav`` / ``*.flac`` of ``--in`` (not recursive) and writes ``{out}/{stem}.wav`` at
``--sr`` Hz. ``--channels keep`` keeps the channels, ``1`` down-mixes to mono and ``2`` requires
2-channel input (channel 0 = left), refusing anything else rather than inventing a binaural signal.
``--mono_out`` also writes the mono signal of each file: ``(L + R) / 2`` for stereo (exactly
:func:`binaural_core.audio.mono_from_binaural`), the mean of the channels otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf
from tqdm import tqdm

from binaural_core.audio import BadInputError, cli_main, load_wav, mono_from_binaural, save_wav

AUDIO_EXTENSIONS = (".wav", ".flac")


@dataclass
class AudioSummary:
    """What a run did, for the final one-line report."""

    written: int = 0
    present: int = 0
    bad: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"prepare_audio: {self.written} file(s) written, {self.present} already present, "
            f"{len(self.bad)} skipped as bad"
        )


def to_mono(wav: np.ndarray) -> np.ndarray:
    """``(C, S)`` → ``(S,)``: ``(L + R) / 2`` for two channels, the channel mean otherwise."""
    if wav.ndim == 1:
        return wav
    return mono_from_binaural(wav) if wav.shape[0] == 2 else wav.mean(axis=0)


def read_any(path: str, sr: int) -> np.ndarray:
    """Read an audio file at ``sr`` Hz as float32 ``(C, S)`` whatever its channel count.

    Raises:
        BadInputError: missing, unreadable, empty or non-finite audio.
    """
    try:
        channels = sf.info(path).channels
    except Exception as err:  # soundfile's error types vary by libsndfile version
        raise BadInputError(path, f"unreadable audio file ({type(err).__name__}: {err})") from None
    wav = load_wav(path, sampling_rate=sr, channels=channels, resample_ok=True)
    return wav[None] if wav.ndim == 1 else wav


def convert_file(
    src: str,
    dst: str,
    sr: int,
    channels: str = "keep",
    *,
    mono_dst: str | None = None,
    subtype: str = "PCM_16",
) -> None:
    """Resample ``src`` to ``dst`` with the channel policy ``channels`` (``keep``, ``1``, ``2``).

    Raises:
        BadInputError: unreadable input, or not 2 channels with ``channels == "2"``.
    """
    wav = read_any(src, sr)  # (C, S)
    if channels == "2" and wav.shape[0] != 2:
        raise BadInputError(src, f"expected 2 channels (left, right), found {wav.shape[0]}")
    out = to_mono(wav) if channels == "1" else (wav[0] if wav.shape[0] == 1 else wav)
    save_wav(dst, out, sr, subtype=subtype)
    if mono_dst is not None:
        save_wav(mono_dst, to_mono(wav), sr, subtype=subtype)


def prepare_audio(
    in_dir: str,
    out_dir: str,
    sr: int = 22050,
    channels: str = "keep",
    *,
    mono_out: str | None = None,
    subtype: str = "PCM_16",
    skip_bad: bool = False,
    overwrite: bool = False,
) -> AudioSummary:
    """Convert every audio file of ``in_dir``; files whose outputs all exist are kept unless ``overwrite``.

    Raises:
        BadInputError: no audio files, or a bad file when not ``skip_bad``.
    """
    if not os.path.isdir(in_dir):
        raise BadInputError(in_dir, "no such folder")
    if not sf.check_format("WAV", subtype):
        raise BadInputError(
            None, f"--subtype {subtype} is not a WAV subtype (see soundfile.available_subtypes('WAV'))"
        )
    names = sorted(
        f for f in os.listdir(in_dir) if f.lower().endswith(AUDIO_EXTENSIONS) and not f.startswith(".")
    )
    if not names:
        raise BadInputError(in_dir, f"no {'/'.join(AUDIO_EXTENSIONS)} files")
    stems = [os.path.splitext(f)[0] for f in names]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:  # a.wav and a.flac would both become a.wav
        raise BadInputError(in_dir, f"several files share the clip name(s) {', '.join(dup)}")
    if os.path.abspath(in_dir) in {os.path.abspath(out_dir), os.path.abspath(mono_out or out_dir)}:
        raise BadInputError(in_dir, "input and output folders must differ")
    summary = AudioSummary()
    with tqdm(list(zip(names, stems)), desc="audio", unit="file", disable=None) as bar:
        for fname, stem in bar:
            dst = os.path.join(out_dir, f"{stem}.wav")
            mono_dst = None if mono_out is None else os.path.join(mono_out, f"{stem}.wav")
            if not overwrite and os.path.isfile(dst) and (mono_dst is None or os.path.isfile(mono_dst)):
                summary.present += 1
                continue
            src = os.path.join(in_dir, fname)
            try:
                convert_file(src, dst, sr, channels, mono_dst=mono_dst, subtype=subtype)
            except BadInputError as err:
                if not skip_bad:
                    raise
                summary.bad.append(src)
                tqdm.write(f"skipped: {err}", file=sys.stderr)
                continue
            summary.written += 1
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--in", dest="in_dir", required=True, help="folder of .wav/.flac recordings")
    p.add_argument("--out", required=True, help="output folder of resampled wavs")
    p.add_argument("--sr", type=int, default=22050, help="target sample rate (default %(default)s)")
    p.add_argument(
        "--channels",
        choices=("1", "2", "keep"),
        default="keep",
        help="1: down-mix to mono, 2: require stereo, keep: as recorded (default %(default)s)",
    )
    p.add_argument("--mono_out", default=None, help="also write mono down-mixes ((L+R)/2) here")
    p.add_argument("--subtype", default="PCM_16", help="soundfile subtype of the output (PCM_16, FLOAT, ...)")
    p.add_argument(
        "--skip_bad",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="skip and count unreadable files instead of stopping at the first",
    )
    p.add_argument(
        "--overwrite",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="redo files whose outputs already exist",
    )
    return p


def main(argv: list[str] | None = None) -> AudioSummary:
    args = build_parser().parse_args(argv)
    summary = prepare_audio(
        args.in_dir,
        args.out,
        args.sr,
        args.channels,
        mono_out=args.mono_out,
        subtype=args.subtype,
        skip_bad=args.skip_bad,
        overwrite=args.overwrite,
    )
    print(summary.line())
    return summary


def cli() -> None:
    """The console script of this file (pyproject.toml [project.scripts])."""
    cli_main(main)


if __name__ == "__main__":
    cli()
