"""The Python API: a loaded Stage 1 model (+ renderer) that binauralizes any number of inputs.

    from DiffBinaural import Binauralizer

    b = Binauralizer.from_pretrained("checkpoints/realBinaural", renderer="mono", device="cuda")
    stereo = b(mono, 44100, video="clip.mp4")          # (2, S) float32 at 44100 Hz, S = len(mono)
    b.binauralize_file("clip.mp4", "clip_binaural.mp4")  # the video's own audio in, a video out

The model, the vocoder and the detector are loaded once and kept; every call is deterministic for the
``seed`` it was built with (the CLI ``binauralize.py`` is a thin layer over this class and gives the
same samples). Inputs: ``mono`` any rate and channel count (down-mixed); the picture as a video file,
a frames folder (``000001.jpg`` ... at the model's frame rate) or a list of images; ``boxes`` a
detection CSV (``frame,x1,y1,x2,y2,score``), an array of such rows, ``"auto"`` (a detector finds the
sources, :mod:`DiffBinaural.detection`) or None (the whole frame is one token).
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch

from binaural_core.audio import BadInputError, resample
from DiffBinaural.dataset.frames import ClipFrames, read_detections
from DiffBinaural.inference.pipeline import (
    RENDERERS,
    check_mono,
    open_visual_source,
    read_mono,
    render_piece,
    resampled_blocks,
    vocode_piece,
    write_user_report,
    write_wav_stream,
)
from DiffBinaural.utils.mux import VIDEO_OUT_SR, audio_span, check_output_path, is_video_output
from DiffBinaural.utils.video import clip_name

log = logging.getLogger("DiffBinaural")
OWN_TRACK_SLACK_S = 0.5  # a video's own audio may outlast its picture by this much (last frame held)


@dataclass(frozen=True)
class SamplingOptions:
    """How Stage 1 is sampled and rendered (the ``binauralize.py`` flags of the same names)."""

    sampler: str = "ddim"
    steps: int = 25
    guidance_scale: float = 1.0
    seed: int = 0
    num_samples: int = 1
    flip_tta: bool = False
    window_hop: int | None = None
    window_batch: int = 8
    chunk_frames: int = 512
    stream_frames: int = 4096
    mode: str = "free"

    def __post_init__(self):
        if self.num_samples < 1:
            raise BadInputError(None, f"num_samples must be >= 1, got {self.num_samples}")
        if self.steps < 1:
            raise BadInputError(None, f"steps must be >= 1, got {self.steps}")


class Binauralizer:
    """Stage 1 + a renderer, loaded once. Build it with :meth:`from_pretrained`."""

    def __init__(self, *, model, cfg: dict, run_dir: str, device: torch.device, renderer: str = "mono",
                 generator=None, options: SamplingOptions | None = None, detector: str | None = None,
                 detector_options: dict | None = None):
        from binaural_core.mel import MelConfig
        from DiffBinaural.model import build_sampler

        if renderer not in RENDERERS:
            raise BadInputError(None, f"renderer must be one of {', '.join(RENDERERS)}, got {renderer!r}")
        if renderer == "vocoder" and generator is None:
            raise BadInputError(None, "the vocoder renderer needs a vocoder generator (vocoder=G_CKPT)")
        self.model, self.cfg, self.run_dir, self.device = model, cfg, run_dir, device
        self.renderer, self.generator = renderer, generator
        self.options = options or SamplingOptions()
        self.mel_cfg = MelConfig.from_dict(cfg["mel"], source=run_dir)
        self.sampler = build_sampler(cfg, SimpleNamespace(sampler=self.options.sampler, steps=self.options.steps,
                                                          eta=0.0, guidance_scale=self.options.guidance_scale))
        self.detector_name, self.detector_options = detector, dict(detector_options or {})
        self._detector = None  # loaded on the first boxes="auto"

    @classmethod
    def from_pretrained(cls, run_dir: str, *, renderer: str = "mono", device: str | torch.device | None = None,
                        vocoder: str | None = None, vocoder_config: str | None = None,
                        weights_unet: str | None = None, weights_frame: str | None = None,
                        detector: str | None = None, detector_options: dict | None = None,
                        compile: bool = False, pack: bool = True, **sampling) -> Binauralizer:
        """Load a Stage 1 run folder (``config.json`` + ``unet_best.pth`` + ``frame_best.pth``).

        Args:
            renderer: ``mono`` (the input's own STFT scaled and rotated; no vocoder) or ``vocoder``
                (BigVGAN per ear from ``vocoder``, a ``g_XXXXXXXX``/``bigvgan_generator.pt`` file with
                its ``config.json`` beside it or at ``vocoder_config``).
            device: ``cuda``/``cpu``; default: cuda when available.
            detector: hub id or local folder of a transformers object detector for ``boxes="auto"``
                (default :data:`DiffBinaural.detection.DEFAULT_DETECTOR`), loaded on first use.
            detector_options: :class:`~DiffBinaural.detection.DetectorOptions` fields (queries, threshold).
            **sampling: :class:`SamplingOptions` fields (``steps``, ``seed``, ``num_samples``, ...).
        """
        from DiffBinaural.model import load_stage1

        options = SamplingOptions(**sampling)
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        generator = None
        if renderer == "vocoder":
            if not vocoder:
                raise BadInputError(None, "--renderer vocoder needs --vocoder G_CKPT")
            from BigVGAN.vocode import load_generator

            generator, _, voc_mel = load_generator(vocoder, config=vocoder_config, device=device, compile=compile,
                                                   pack=pack)
        model, cfg = load_stage1(run_dir, weights_unet=weights_unet, weights_frame=weights_frame,
                                 map_location=device)
        if generator is not None and (problem := voc_mel.mismatch(cfg["mel"])):
            raise BadInputError(vocoder, f"vocoder and Stage 1 use different mels: {problem}")
        return cls(model=model.to(device), cfg=cfg, run_dir=run_dir, device=device, renderer=renderer,
                   generator=generator, options=options, detector=detector, detector_options=detector_options)

    # ---- public calls --------------------------------------------------------------------------
    def __call__(self, mono, sr: int, *, frames=None, video: str | None = None, boxes=None,
                 out_sr: int | None = None) -> np.ndarray:
        """Binauralize an in-memory recording: ``(2, S')`` float32 at ``out_sr`` (default ``sr``), with
        ``S' = round(S * out_sr / sr)``: the input's duration (``S' = S`` at the input's rate).

        Args:
            mono: ``(S,)`` or ``(C, S)`` numpy array or torch tensor (down-mixed).
            sr: its sample rate.
            frames: a frames folder, or a sequence of ``(H, W, 3)`` uint8 images / PIL images at the
                model's frame rate (``cfg["fps"]``, 10 by default) starting with the audio.
            video: a video file instead of ``frames``.
            boxes: see the module docstring.
        """
        data = mono.detach().cpu().numpy() if isinstance(mono, torch.Tensor) else np.asarray(mono)
        if data.ndim == 2 and data.shape[0] > data.shape[1]:
            raise BadInputError(None, f"mono of shape {data.shape}: pass (samples,) or (channels, samples)")
        wav = resample(check_mono(data, "mono array"), int(sr), self.mel_cfg.sampling_rate).astype(np.float32)
        with tempfile.TemporaryDirectory(prefix="binauralize_") as work:
            clip = self._visual(work, len(wav), frames=frames, video=video, boxes=boxes)
            rate = int(out_sr or sr)
            blocks = resampled_blocks(self._pieces(wav, clip), sr=self.mel_cfg.sampling_rate, out_sr=rate,
                                      num_samples=len(wav))
            stereo = np.concatenate(list(blocks), axis=0).T
            # two resamplings may round the length by a sample or two: the caller's duration, exactly
            length = round(data.shape[-1] * rate / int(sr))
            stereo = np.pad(stereo, ((0, 0), (0, max(0, length - stereo.shape[1]))))[:, :length]
            return np.ascontiguousarray(stereo, dtype=np.float32)

    def binauralize_file(self, in_path: str, out_path: str, *, mono: str | None = None, frames: str | None = None,
                         boxes=None, out_sr: int | None = None, audio_codec: str | None = None,
                         report: str | None = None) -> str:
        """Binauralize a file; returns ``out_path``.

        ``in_path`` is a video (its picture, and its first audio track unless ``mono`` names another
        recording), or, with ``frames`` (a frames folder), the mono recording itself. ``out_path``:
        ``.wav``/``.flac`` (audio only; default rate the model's) or ``.mp4``/``.mov``/``.mkv``/``.webm``
        (the input video stream copied, plus the binaural track encoded with ``audio_codec``, default
        AAC, Opus in webm, at ``out_sr``, default 48 kHz), written atomically. ``report``: also write a
        listening page into that folder.
        """
        check_output_path(out_path)
        video = None if frames is not None else in_path
        mono_path = mono or in_path
        if is_video_output(out_path) and video is None:
            raise BadInputError(out_path, "a video output needs a video input (--video), not a frames folder")
        sr = self.mel_cfg.sampling_rate
        wav = read_mono(mono_path, sr)
        own_track = video is not None and mono is None
        start_s, duration_s = audio_span(video) if own_track else (0.0, None)
        log.info("input: %.2f s (%s); Stage 1 %s (interaural phase: %s), renderer %s, device %s", len(wav) / sr,
                 mono_path, self.run_dir, "yes" if self.cfg["interaural_phase"] else "no", self.renderer,
                 self.device)
        rate = int(out_sr or (VIDEO_OUT_SR if is_video_output(out_path) else sr))
        with tempfile.TemporaryDirectory(prefix="binauralize_") as work:
            clip = self._visual(work, len(wav), frames=frames, video=video, boxes=boxes,
                                slack_s=OWN_TRACK_SLACK_S if own_track else 0.0)
            blocks = resampled_blocks(self._pieces(wav, clip), sr=sr, out_sr=rate, num_samples=len(wav))
            if is_video_output(out_path):
                from DiffBinaural.utils.mux import write_video_with_audio

                track = os.path.join(work, "binaural.wav")
                write_wav_stream(track, blocks, sr=rate, subtype="FLOAT")  # lossless until the encoder
                write_video_with_audio(video, track, out_path, audio_codec=audio_codec, start_s=start_s,
                                       duration_s=duration_s)
            else:
                write_wav_stream(out_path, blocks, sr=rate)
            if report:
                notes = f"Stage 1: {self.run_dir}; picture: {video or frames}" + (
                    f"; boxes: {boxes}" if isinstance(boxes, str) else "")
                write_user_report(report, mono=wav, mono_sr=sr, out=out_path, renderer=self.renderer, frames=clip,
                                  fps=self.cfg["fps"], notes=notes)
        log.info("wrote %s (%.2f s, 2 channels, %d Hz)", out_path, len(wav) / sr, rate)
        return out_path

    @property
    def expects_boxes(self) -> bool | None:
        """True: trained with detection boxes; False: on whole frames (or grid tokens only, which read no
        boxes); None: the run does not say."""
        if self.cfg.get("visual_tokens") == "grid":
            return False
        source = self.cfg.get("box_source")
        return None if source is None else source == "detections"

    # ---- the steps -----------------------------------------------------------------------------
    def _visual(self, work: str, num_samples: int, *, frames, video, boxes, slack_s: float = 0.0) -> ClipFrames:
        """The checked visual source of one input (see :meth:`__call__`), with its boxes."""
        cfg = self.cfg
        if (frames is None) == (video is None):
            raise BadInputError(None, "give the picture as exactly one of video= or frames=")
        frames_dir = frames
        if frames is not None and not isinstance(frames, (str, os.PathLike)):
            frames_dir = _write_images(frames, os.path.join(work, "images"))
        frames_dir = None if frames_dir is None else os.fspath(frames_dir)
        # the clip's name, as a data set's CSV names it: the video's basename without extension, the folder's
        name = clip_name(video) if video is not None else os.path.basename(os.path.normpath(frames_dir))
        detections = self._detections(boxes, name)
        clip = open_visual_source(work, name=name, num_samples=num_samples, sr=self.mel_cfg.sampling_rate,
                                  fps=cfg["fps"], max_sources=cfg["max_sources"], video=video,
                                  frames_dir=frames_dir, detections=detections, slack_s=slack_s)
        if boxes is not None and self.expects_boxes is False:  # checked above, but not what this model reads
            log.warning("%s was trained on whole frames: the boxes are not used (visual tokens: %s)", self.run_dir,
                        self.cfg.get("visual_tokens") or "boxes")
            return ClipFrames(clip.frames_dir, clip.ext, clip.num_images, {}, clip.size)
        if isinstance(boxes, str) and boxes == "auto":
            clip = self._detect(clip)
        return clip

    def _detections(self, boxes, name: str) -> tuple[str, np.ndarray] | None:
        """``(source, rows)`` of given boxes; None for none or "auto"; warns where the model disagrees."""
        if boxes is None:
            if self.expects_boxes:
                log.warning("%s was trained with detection boxes and none were given: the whole frame becomes "
                            "one box token, an input it never saw in training; pass --boxes CSV or --boxes auto "
                            "(a detector finds the sources)", self.run_dir)
            return None
        if isinstance(boxes, str) and boxes == "auto":
            return None
        if isinstance(boxes, (str, os.PathLike)):
            return os.fspath(boxes), read_detections(os.fspath(boxes), clip=name)[name]
        rows = np.asarray(boxes, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] not in (5, 6):
            raise BadInputError(None, f"boxes array must be (K, 5|6) rows frame,x1,y1,x2,y2[,score], got {rows.shape}")
        score = rows[:, 5:6] if rows.shape[1] == 6 else np.ones((len(rows), 1))
        return "boxes array", np.concatenate([np.arange(len(rows))[:, None] + 1, rows[:, :5], score], axis=1)

    def _detect(self, clip: ClipFrames) -> ClipFrames:
        """Replace the clip's boxes by tracked detections on every frame (``boxes="auto"``)."""
        from DiffBinaural.dataset.frames import check_boxes, frame_size
        from DiffBinaural.detection import detect_clip, load_detector

        if self._detector is None:
            self._detector = load_detector(self.detector_name, device=self.device, **self.detector_options)
        rows = detect_clip(self._detector, clip.frames_dir, ext=clip.ext, num_images=clip.num_images)
        width, height = frame_size(clip.frames_dir, clip.ext)
        lines = np.concatenate([np.arange(len(rows))[:, None] + 1, rows], axis=1) if len(rows) else np.zeros((0, 7))
        boxes, _ = check_boxes("auto", "detector", lines, num_images=clip.num_images, width=width, height=height,
                               max_sources=self.cfg["max_sources"])
        log.info("detector: %d box(es) in %d of %d frames", len(rows), len(boxes), clip.num_images)
        return ClipFrames(clip.frames_dir, clip.ext, clip.num_images, boxes, clip.size)

    def _pieces(self, wav: np.ndarray, clip: ClipFrames):
        """Stage 1 then the renderer, piece by piece: (2, n) waveform chunks at the model's rate. Each
        piece of mel is generated with the context the renderer needs around it, so nothing of clip
        length is held but the mono signal and its mel, and the output equals one pass."""
        from binaural_core.mel import mel_spectrogram
        from DiffBinaural.inference.stage1 import generate_clip

        cfg, opt, mel_cfg = self.cfg, self.options, self.mel_cfg
        sr, hop = mel_cfg.sampling_rate, mel_cfg.hop_size
        # the mels cover every input sample: the mono is padded at the end to whole hops (reflection)
        padded = torch.from_numpy(np.pad(wav, (0, -len(wav) % hop), mode="reflect"))
        mono_mel = mel_spectrogram(padded[None], mel_cfg)  # (1, M, T)

        def visual_fn(start_frame: int, num_frames: int):
            return clip.visual_inputs(start_frame * hop / sr, num_frames * hop / sr, num_frames=cfg["num_frames"],
                                      max_sources=cfg["max_sources"], image_size=cfg["img_size"], fps=cfg["fps"],
                                      tokens=cfg["visual_tokens"], frame_size=cfg["frame_size"])

        def stage1(m0: int, m1: int) -> torch.Tensor:
            """Stage 1 output (C, M, m1 - m0) for frames [m0, m1): the whole clip's windows and seeds."""
            return generate_clip(self.model, self.sampler, mono_mel=mono_mel, visual_fn=visual_fn,
                                 window=cfg["segment_frames"],
                                 hop=opt.window_hop or max(1, cfg["segment_frames"] // 2),
                                 batch_windows=opt.window_batch, seed=opt.seed, device=self.device, frames=(m0, m1),
                                 num_samples=opt.num_samples, flip_tta=opt.flip_tta)

        total, chunk = mono_mel.shape[-1], opt.chunk_frames
        step = chunk * max(1, opt.stream_frames // chunk)  # pieces on the vocoder's chunk grid
        for f0 in range(0, total, step):
            f1 = min(total, f0 + step)
            if self.generator is None:
                yield render_piece(stage1, padded, mel_cfg, f0, f1, total, mode=opt.mode)
            else:
                yield vocode_piece(stage1, self.generator, mel_cfg, f0, f1, total, chunk,
                                   phase=bool(cfg["interaural_phase"]))


def _write_images(images, folder: str) -> str:
    """A sequence of images (PIL, or (H, W, 3) uint8 arrays) as ``folder/000001.png`` ... (lossless)."""
    from PIL import Image

    from DiffBinaural.dataset.layout import frame_path

    os.makedirs(folder)
    count = 0
    for count, image in enumerate(images, start=1):
        im = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
        im.save(frame_path(folder, count, ".png"))
    if count == 0:
        raise BadInputError(None, "frames: the image sequence is empty")
    return folder
