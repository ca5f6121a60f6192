"""The steps of binauralizing one input, below :class:`DiffBinaural.inference.binauralizer.Binauralizer`.

Input checks (:func:`check_mono`: silent, clipped, NaN input is one line naming the source), the
visual source (:func:`open_visual_source`: a frames folder, or the video decoded with PyAV at the
model's frame rate, plus the user's boxes checked with the datasets' own code,
:class:`DiffBinaural.dataset.frames.ClipFrames`), the renderers applied piece by piece
(:func:`render_piece`: the mono's own STFT scaled and rotated, :mod:`DiffBinaural.inference.renderer`;
:func:`vocode_piece`: BigVGAN per ear in chunks, then the predicted interaural phase), and the sinks
(:func:`resampled_blocks` then a wav file or an array). The pieces use the whole clip's windows, noise
seeds and vocoder chunks, so the output does not depend on the piece size, and memory grows only with
the input audio and its mono mel (~0.1 MB per second), not with the generated mels.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys

import numpy as np
import soundfile as sf
import torch

from binaural_core.atomic import atomic_output
from binaural_core.audio import BadInputError, resample
from DiffBinaural.dataset import layout
from DiffBinaural.dataset.frames import ClipError, ClipFrames, open_clip_frames
from DiffBinaural.utils.video import VIDEO_EXTENSIONS

log = logging.getLogger("DiffBinaural")
SILENCE_PEAK = 1e-4  # -80 dBFS: nothing to spatialise
CLIP_LEVEL, CLIP_FRACTION = 0.999, 1e-3  # more than 0.1 % of samples at full scale = clipped recording


def check_mono(data: np.ndarray, source: str | None) -> np.ndarray:
    """``(C, S)`` or ``(S,)`` float audio → its ``(S,)`` down-mix, refusing what cannot be binauralized
    (empty, NaN/inf, silent, clipped) in one line naming ``source``."""
    data = np.asarray(data, dtype=np.float32)
    data = data[None] if data.ndim == 1 else data
    if data.ndim != 2 or data.shape[-1] == 0:
        raise BadInputError(source, "empty audio (0 samples)" if data.ndim == 2 else
                                    f"audio must be (samples,) or (channels, samples), got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise BadInputError(source, "audio contains NaN or inf")
    peak = float(np.abs(data).max())
    if peak < SILENCE_PEAK:
        raise BadInputError(source, f"input is silent (peak {20 * np.log10(max(peak, 1e-12)):.0f} dBFS)")
    clipped = float(np.mean(np.abs(data) >= CLIP_LEVEL))
    if clipped > CLIP_FRACTION:
        raise BadInputError(source, f"input is clipped ({100 * clipped:.1f} % of samples at full scale)")
    return data.mean(axis=0)


def read_mono(path: str, sr: int) -> np.ndarray:
    """(S,) float32 at ``sr`` of an audio file, or of a video's first audio track (any rate and channel
    count: down-mixed); problems are one line naming the file (:func:`check_mono`)."""
    if not os.path.isfile(path):
        raise BadInputError(path, "file not found")
    if path.lower().endswith(VIDEO_EXTENSIONS):
        from DiffBinaural.utils.video import decode_audio

        data = decode_audio(path, sr)  # (C, S) at sr, sample 0 at the video's time origin
        return check_mono(data, path)
    try:
        data, file_sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception as err:
        raise BadInputError(path, f"unreadable audio file ({type(err).__name__}: {err})") from None
    return resample(check_mono(data.T, path), file_sr, sr).astype(np.float32)


def open_visual_source(work: str, *, name: str, num_samples: int, sr: int, fps: float, max_sources: int,
                       video: str | None, frames_dir: str | None, detections: tuple[str, np.ndarray] | None,
                       slack_s: float = 0.0) -> ClipFrames:
    """The user's frames (a folder, or the video decoded into ``work``) and boxes, checked.

    ``detections``: ``(source, rows)`` as :func:`~DiffBinaural.dataset.frames.read_detections` gives
    them. Every error names the user's own file: the frames folder, the video, or the boxes CSV and
    line. Boxes that reach past the image are clipped and boxes outside it dropped, counted in one
    line. ``slack_s``: how much longer than the video the audio may be (the last frame is held): a
    video's own audio track often outlasts its picture by a fraction of a second.
    """
    if video is not None:
        from DiffBinaural.utils.video import extract_frames

        frames_dir = os.path.join(work, "frames")
        # given boxes are pixel corners of the video's own (upright) frames: keep their size then
        extract_frames(video, frames_dir, fps, max_side=None if detections is not None else 640)
    elif not os.path.isdir(frames_dir):
        raise BadInputError(frames_dir, "frames folder not found")
    source = video or frames_dir
    try:
        frames, count = open_clip_frames(frames_dir, name=name, max_sources=max_sources, detections=detections)
    except ClipError as err:  # a folder extracted from the video is the video's problem
        raise BadInputError(source if err.path == frames_dir else err.path, err.problem) from None
    needed = int(np.ceil((num_samples / sr - slack_s) * fps - 1e-6))
    if frames.num_images < needed:
        raise BadInputError(source, f"video ({frames.num_images / fps:.2f} s at {fps:g} fps) is shorter than the "
                                    f"audio ({num_samples / sr:.2f} s)")
    if detections is not None and count.summary(detections[0]):
        log.warning("%s", count.summary(detections[0]))
    return frames


RENDERERS = ("mono", "vocoder")


def render_piece(stage1, mono: torch.Tensor, mel_cfg, f0: int, f1: int, total: int, *, mode: str) -> torch.Tensor:
    """Samples [f0 * hop, f1 * hop) of the mono renderer's output (2, n)."""
    from DiffBinaural.inference.renderer import CONTEXT_FRAMES, render

    m0, m1 = max(0, f0 - CONTEXT_FRAMES), min(total, f1 + CONTEXT_FRAMES)
    out = stage1(m0, m1)
    hop = mel_cfg.hop_size
    return render(mono, out[:2], mel_cfg, phase=out[2:] if out.shape[0] > 2 else None, mode=mode, mel_offset=m0,
                  samples=(f0 * hop, f1 * hop))


def vocode_piece(stage1, generator, mel_cfg, f0: int, f1: int, total: int, chunk: int, *,
                  phase: bool) -> torch.Tensor:
    """Samples [f0 * hop, f1 * hop) of the vocoder's output (2, n), with the predicted interaural phase
    when Stage 1 has one (then enough neighbouring vocoder chunks are vocoded too: the IPD's STFT frames
    reach IPD_CONTEXT_FRAMES beyond the piece, and chunks are the whole clip's, so pieces stay seamless)."""
    import math

    from BigVGAN.vocode import CONTEXT_FRAMES, iter_vocode
    from binaural_core.interaural import IPD_CONTEXT_FRAMES, impose_ipd

    hop = mel_cfg.hop_size
    extra = chunk * math.ceil(IPD_CONTEXT_FRAMES / chunk) if phase else 0  # whole chunks on each side
    v0, v1 = max(0, f0 - extra), min(total, f1 + extra)
    m0, m1 = max(0, v0 - CONTEXT_FRAMES), min(total, v1 + CONTEXT_FRAMES)
    out = stage1(m0, m1)
    wav = torch.cat(list(iter_vocode(generator, out[:2], hop=hop, chunk_frames=chunk, frames=(v0, v1),
                                     mel_offset=m0, total=total)), dim=1)
    if not phase:
        return wav
    return impose_ipd(wav, out[2:, :, v0 - m0:v1 - m0], mel_cfg, offset=v0 * hop, total=total * hop,
                      samples=(f0 * hop, f1 * hop))


def resampled_blocks(chunks, *, sr: int, out_sr: int, num_samples: int):
    """(2, n) waveform chunks at ``sr`` → (n', 2) float32 blocks at ``out_sr`` in [-1, 1], cut to
    ``num_samples`` samples at ``sr``: what every sink writes (so a file and an array agree exactly)."""
    import soxr

    done = 0  # samples at sr passed on so far
    # a streaming resampler keeps chunk boundaries seamless at another output rate
    stream = soxr.ResampleStream(sr, out_sr, 2, dtype="float32") if out_sr != sr else None
    it = iter(chunks)
    wav = next(it, None)
    while wav is not None:
        following = next(it, None)  # one chunk ahead: the resampler must know the last one
        wav = np.ascontiguousarray(wav[:, :max(0, num_samples - done)].numpy().T)  # (n, 2)
        done += len(wav)
        last = following is None or done >= num_samples
        if stream is not None:
            wav = stream.resample_chunk(wav, last=last)
        yield np.clip(wav, -1.0, 1.0)
        if last:
            break
        wav = following


def write_wav_stream(out: str, blocks, *, sr: int, subtype: str = "PCM_16") -> None:
    """Write (n, 2) blocks into the wav/flac ``out`` (temp file + rename) as they come."""
    suffix = os.path.splitext(out)[1].lower() or ".wav"
    with atomic_output(out, suffix=suffix) as tmp, \
            sf.SoundFile(tmp, "w", samplerate=sr, channels=2, subtype=subtype) as f:
        for block in blocks:
            f.write(block)


def write_user_report(out_dir: str, *, mono: np.ndarray, mono_sr: int, out: str, renderer: str,
                      frames: ClipFrames, fps: float, notes: str) -> str:
    """``binauralize.py --report DIR``: the listening page of one user's video: the input mono and the
    output (loudness-matched excerpts), a frame with the boxes, and the output's ILD/ITD over time."""
    from DiffBinaural.evaluation.listening import (
        EXCERPT_SECONDS,
        LISTEN_DIR,
        ClipEntry,
        cue_only_figure,
        draw_still,
        write_page,
    )

    listen = os.path.join(out_dir, LISTEN_DIR)
    os.makedirs(listen, exist_ok=True)
    stereo, out_sr = read_output_audio(out)
    seconds = min(EXCERPT_SECONDS, stereo.shape[1] / out_sr)
    index = min(max(layout.frame_index_at(seconds / 2, fps), 1), frames.num_images)
    still = draw_still(layout.frame_path(frames.frames_dir, index, frames.ext), frames.boxes.get(index),
                       os.path.join(listen, "frame.png"))
    name = os.path.splitext(os.path.basename(out))[0]
    figure = cue_only_figure(f"{name}: interaural cues of the output", stereo, out_sr, os.path.join(listen, "cues.png"))
    clip = ClipEntry(name, [("input (mono)", mono, mono_sr), (f"output ({renderer} renderer)", stereo, out_sr)],
                     figures=[figure], still=still)
    script = os.path.basename(sys.argv[0])
    command = (f"{'python ' if script.endswith('.py') else ''}{script} " + shlex.join(sys.argv[1:])
               if "binauralize" in script else f"binauralize -> {out}")
    page = write_page(out_dir, title=f"binauralize: {name}", clips=[clip], summary_rows=[], summary_head=[],
                      commands=[command], notes=[notes])
    log.info("wrote %s", page)
    return page


def read_output_audio(path: str) -> tuple[np.ndarray, int]:
    """(2, S) float32 and the rate of an output: a wav/flac, or a video's audio track."""
    if path.lower().endswith(VIDEO_EXTENSIONS):
        from DiffBinaural.utils.mux import audio_rate
        from DiffBinaural.utils.video import decode_audio

        sr = audio_rate(path)
        return decode_audio(path, sr), sr
    data, sr = sf.read(path, dtype="float32", always_2d=True)
    return data.T, sr
