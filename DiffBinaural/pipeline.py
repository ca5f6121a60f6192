"""Binauralize a user's mono recording and video end to end (Stage 1 + a renderer); used by ``binauralize.py``.

Steps: read the mono audio (any rate and channel count: down-mixed, resampled to 22050 Hz), refuse
silent or clipped input, decode the video with PyAV at the model's frame rate into a temporary
folder (or use a given frames folder: .jpg/.jpeg/.png), check the user's detection boxes (clipped to
the image; errors name the user's CSV and line) and build the visual inputs with the datasets' own
code (:class:`DiffBinaural.dataset.frames.ClipFrames`), then, piece by piece (``--stream_frames``), generate the left/right mels (and interaural phase) with
sliding windows (:func:`DiffBinaural.inference.generate_clip` on a frame range) and render them
straight into the output file: with the mono renderer (``--renderer mono``, :mod:`DiffBinaural.renderer`:
the mono's own STFT scaled and rotated) or the vocoder (``--renderer vocoder``: BigVGAN per ear, in
chunks, then the predicted interaural phase). The pieces use the whole clip's windows, noise seeds and vocoder chunks, so the
output does not depend on the piece size, and memory grows only with the input audio and its mono
mel (~0.1 MB per second), not with the generated mels. The output has exactly the input's duration.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import sys
import tempfile

import numpy as np
import soundfile as sf
import torch

from binaural_core.atomic import atomic_output
from binaural_core.audio import BadInputError, resample
from DiffBinaural.dataset import layout
from DiffBinaural.dataset.frames import ClipError, ClipFrames, open_clip_frames, read_detections

log = logging.getLogger("DiffBinaural")
SILENCE_PEAK = 1e-4  # -80 dBFS: nothing to spatialise
CLIP_LEVEL, CLIP_FRACTION = 0.999, 1e-3  # more than 0.1 % of samples at full scale = clipped recording


def read_mono(path: str, sr: int) -> np.ndarray:
    """(S,) float32 at ``sr``; any channel count is down-mixed. Silent/clipped/empty input is one line."""
    if not os.path.isfile(path):
        raise BadInputError(path, "file not found")
    try:
        data, file_sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception as err:
        raise BadInputError(path, f"unreadable audio file ({type(err).__name__}: {err})") from None
    if data.shape[0] == 0:
        raise BadInputError(path, "empty audio file (0 samples)")
    if not np.all(np.isfinite(data)):
        raise BadInputError(path, "audio contains NaN or inf")
    mono = data.mean(axis=1)
    peak = float(np.abs(data).max())
    if peak < SILENCE_PEAK:
        raise BadInputError(path, f"input is silent (peak {20 * np.log10(max(peak, 1e-12)):.0f} dBFS)")
    clipped = float(np.mean(np.abs(data) >= CLIP_LEVEL))
    if clipped > CLIP_FRACTION:
        raise BadInputError(path, f"input is clipped ({100 * clipped:.1f} % of samples at full scale)")
    return resample(mono, file_sr, sr).astype(np.float32)


def open_visual_source(work: str, *, name: str, num_samples: int, sr: int, fps: float, max_sources: int,
                       video: str | None, frames_dir: str | None, boxes_csv: str | None) -> ClipFrames:
    """The user's frames (a folder, or the video decoded into ``work``) and boxes, checked.

    Every error names the user's own file: the frames folder, the video, or the boxes CSV and line.
    Boxes that reach past the image are clipped and boxes outside it dropped, counted in one line.
    """
    if video is not None:
        from DiffBinaural.utils.video import extract_frames

        frames_dir = os.path.join(work, "frames")
        extract_frames(video, frames_dir, fps, max_side=640)
    elif not os.path.isdir(frames_dir):
        raise BadInputError(frames_dir, "frames folder not found")
    source = video or frames_dir
    try:
        detections = None if boxes_csv is None else (boxes_csv, read_detections(boxes_csv, clip=name)[name])
        frames, count = open_clip_frames(frames_dir, name=name, max_sources=max_sources, detections=detections)
    except ClipError as err:  # a folder extracted from the video is the video's problem
        raise BadInputError(source if err.path == frames_dir else err.path, err.problem) from None
    needed = int(np.ceil(num_samples / sr * fps - 1e-6))
    if frames.num_images < needed:
        raise BadInputError(source, f"video ({frames.num_images / fps:.2f} s at {fps:g} fps) is shorter than the "
                                    f"audio ({num_samples / sr:.2f} s)")
    if boxes_csv is not None and count.summary(boxes_csv):
        log.warning("%s", count.summary(boxes_csv))
    return frames


RENDERERS = ("mono", "vocoder")


def binauralize(args) -> str:
    """Run the whole pipeline for the flags of ``binauralize.py``; returns the output path."""
    from types import SimpleNamespace

    from binaural_core.mel import MelConfig, mel_spectrogram
    from DiffBinaural.inference import generate_clip
    from DiffBinaural.model import build_sampler, load_stage1

    if args.num_samples < 1:
        raise BadInputError(None, f"--num_samples must be >= 1, got {args.num_samples}")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, cfg = load_stage1(args.stage1, weights_unet=args.weights_unet, weights_frame=args.weights_frame,
                             map_location=device)
    model.to(device)
    mel_cfg = MelConfig.from_dict(cfg["mel"], source=args.stage1)
    generator = None
    if args.renderer == "vocoder":
        from BigVGAN.vocode import load_generator

        if not args.vocoder:
            raise BadInputError(None, "--renderer vocoder needs --vocoder G_CKPT")
        generator, _, mel_cfg = load_generator(args.vocoder, config=args.vocoder_config, device=device,
                                               compile=args.compile, pack=args.pack)
        problem = mel_cfg.mismatch(cfg["mel"])
        if problem:
            raise BadInputError(args.vocoder, f"vocoder and Stage 1 use different mels: {problem}")
    sr, hop = mel_cfg.sampling_rate, mel_cfg.hop_size
    mono = read_mono(args.mono, sr)
    num_samples = len(mono)
    log.info("input: %.2f s; Stage 1 %s (interaural phase: %s), renderer %s, device %s", num_samples / sr,
             args.stage1, "yes" if cfg["interaural_phase"] else "no", args.renderer, device)
    work = tempfile.mkdtemp(prefix="binauralize_")  # only for the frames of a --video
    try:
        name = os.path.basename(os.path.normpath(args.video or args.frames))  # names the clip in box errors
        frames = open_visual_source(work, name=name, num_samples=num_samples, sr=sr, fps=cfg["fps"],
                                    max_sources=cfg["max_sources"], video=args.video, frames_dir=args.frames,
                                    boxes_csv=args.boxes)
        # the mels cover every input sample: the mono is padded at the end to whole hops (reflection)
        padded = np.pad(mono, (0, -num_samples % hop), mode="reflect")
        del mono
        mono_mel = mel_spectrogram(torch.from_numpy(padded)[None], mel_cfg)  # (1, M, T)

        def visual_fn(start_frame: int, num_frames: int):
            return frames.visual_inputs(start_frame * hop / sr, num_frames * hop / sr, num_frames=cfg["num_frames"],
                                        max_sources=cfg["max_sources"], image_size=cfg["img_size"], fps=cfg["fps"])

        sampler = build_sampler(cfg, SimpleNamespace(
            sampler=args.sampler, steps=args.steps, eta=0.0, guidance_scale=args.guidance_scale))
        total, chunk = mono_mel.shape[-1], args.chunk_frames
        step = chunk * max(1, args.stream_frames // chunk)  # pieces on the vocoder's chunk grid

        def stage1(m0: int, m1: int) -> torch.Tensor:
            """Stage 1 output (C, M, m1 - m0) for frames [m0, m1): the whole clip's windows and seeds."""
            return generate_clip(
                model, sampler, mono_mel=mono_mel,
                visual_fn=visual_fn, window=cfg["segment_frames"],
                hop=args.window_hop or max(1, cfg["segment_frames"] // 2), batch_windows=args.window_batch,
                seed=args.seed, device=device, frames=(m0, m1), num_samples=args.num_samples,
                flip_tta=args.flip_tta)

        def pieces():
            """Stage 1 then the renderer, piece by piece: each piece of mel is generated with the context
            the renderer needs around it, so nothing of clip length is held but the mono signal and its
            mel, and the output equals one pass over the whole clip."""
            for f0 in range(0, total, step):
                f1 = min(total, f0 + step)
                if generator is None:
                    yield _render_piece(stage1, torch.from_numpy(padded), mel_cfg, f0, f1, total, mode=args.mode)
                else:
                    yield _vocode_piece(stage1, generator, mel_cfg, f0, f1, total, chunk,
                                        phase=bool(cfg["interaural_phase"]))

        _write_stream(args.out, pieces(), sr=sr, out_sr=args.out_sr or sr, num_samples=num_samples)
        if getattr(args, "report", None):
            write_user_report(args, frames, fps=cfg["fps"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("wrote %s (%.2f s, 2 channels, %d Hz)", args.out, num_samples / sr, args.out_sr or sr)
    return args.out


def _render_piece(stage1, mono: torch.Tensor, mel_cfg, f0: int, f1: int, total: int, *, mode: str) -> torch.Tensor:
    """Samples [f0 * hop, f1 * hop) of the mono renderer's output (2, n)."""
    from DiffBinaural.renderer import CONTEXT_FRAMES, render

    m0, m1 = max(0, f0 - CONTEXT_FRAMES), min(total, f1 + CONTEXT_FRAMES)
    out = stage1(m0, m1)
    hop = mel_cfg.hop_size
    return render(mono, out[:2], mel_cfg, phase=out[2:] if out.shape[0] > 2 else None, mode=mode, mel_offset=m0,
                  samples=(f0 * hop, f1 * hop))


def _vocode_piece(stage1, generator, mel_cfg, f0: int, f1: int, total: int, chunk: int, *,
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


def _write_stream(out: str, chunks, *, sr: int, out_sr: int, num_samples: int) -> None:
    """Write (2, n) waveform chunks at ``sr`` into ``out`` (temp file + rename) as they come, cut to
    ``num_samples`` samples at ``sr`` and resampled to ``out_sr``."""
    import soxr

    done = 0  # samples at sr written so far
    # a streaming resampler keeps chunk boundaries seamless at another output rate
    stream = soxr.ResampleStream(sr, out_sr, 2, dtype="float32") if out_sr != sr else None
    with atomic_output(out, suffix=".wav") as tmp, \
            sf.SoundFile(tmp, "w", samplerate=out_sr, channels=2, subtype="PCM_16") as f:
        it = iter(chunks)
        wav = next(it, None)
        while wav is not None:
            following = next(it, None)  # one chunk ahead: the resampler must know the last one
            wav = np.ascontiguousarray(wav[:, :max(0, num_samples - done)].numpy().T)  # (n, 2)
            done += len(wav)
            last = following is None or done >= num_samples
            if stream is not None:
                wav = stream.resample_chunk(wav, last=last)
            f.write(np.clip(wav, -1.0, 1.0))
            if last:
                break
            wav = following


def write_user_report(args, frames: ClipFrames, *, fps: float) -> str:
    """``binauralize.py --report DIR``: the listening page of one user's video: the input mono and the
    output (loudness-matched excerpts), a frame with the boxes, and the output's ILD/ITD over time."""
    from DiffBinaural.listening import (
        EXCERPT_SECONDS,
        LISTEN_DIR,
        ClipEntry,
        cue_only_figure,
        draw_still,
        write_page,
    )

    out_dir = args.report
    listen = os.path.join(out_dir, LISTEN_DIR)
    os.makedirs(listen, exist_ok=True)
    data, in_sr = sf.read(args.mono, dtype="float32", always_2d=True)
    out, out_sr = sf.read(args.out, dtype="float32", always_2d=True)
    seconds = min(EXCERPT_SECONDS, len(out) / out_sr)
    index = min(max(layout.frame_index_at(seconds / 2, fps), 1), frames.num_images)
    still = draw_still(layout.frame_path(frames.frames_dir, index, frames.ext), frames.boxes.get(index),
                       os.path.join(listen, "frame.png"))
    name = os.path.splitext(os.path.basename(args.out))[0]
    figure = cue_only_figure(f"{name}: interaural cues of the output", out.T, out_sr, os.path.join(listen, "cues.png"))
    clip = ClipEntry(name, [("input (mono)", data.mean(axis=1), in_sr), (f"output ({args.renderer} renderer)", out.T,
                                                                       out_sr)], figures=[figure], still=still)
    command = ("python binauralize.py " + shlex.join(sys.argv[1:]) if sys.argv[0].endswith("binauralize.py")
               else f"binauralize {args.mono} -> {args.out}")
    page = write_page(out_dir, title=f"binauralize.py: {name}", clips=[clip], summary_rows=[], summary_head=[],
                      commands=[command],
                      notes=[f"Stage 1: {args.stage1}; frames: {args.video or args.frames}"
                             + (f"; boxes: {args.boxes}" if args.boxes else "")])
    log.info("wrote %s", page)
    return page
