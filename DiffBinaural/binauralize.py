"""Binauralize your own video: a video (its own sound, or a separate mono recording) -> binaural audio or video.

    python binauralize.py --video IN.mp4 --stage1 RUN_DIR --out OUT.mp4          (the video's own audio in, a video out)
    python binauralize.py --video IN.mov --mono IN.wav --stage1 RUN_DIR --out OUT.wav
    python binauralize.py --frames DIR --mono IN.wav [--boxes CSV|auto] --stage1 RUN_DIR --out OUT.wav
        [--renderer mono|vocoder] [--vocoder G_CKPT] [--out_sr 48000] [--audio_codec aac] [--device cuda]
        [--steps 25] [--sampler ddim|dpmsolver++] [--guidance_scale 1] [--seed 0]

RUN_DIR is a Stage 1 run folder ({ckpt}/{id}: config.json + unet_best.pth + frame_best.pth). The
default renderer, mono, keeps the input's own waveform and phase and applies Stage 1's levels and
interaural phase to it (no vocoder); --renderer vocoder re-synthesises each ear with BigVGAN (G_CKPT:
a generator checkpoint with config.json beside it), then applies the predicted interaural phase.
--out X.mp4|.mov|.mkv|.webm copies the input's video stream untouched and adds the binaural track
(48 kHz AAC by default, Opus in webm) on the input audio's own timeline; --out X.wav|.flac writes audio.
--boxes: a detection CSV (frame,x1,y1,x2,y2,score: pixel corners on the frames at the model's frame
rate, frame = 1-based index), or 'auto' to find the sources with a detector (--detector); without it
the whole frame is the visual input. Any length, any input rate and channel count. The same in
Python: DiffBinaural.Binauralizer.
"""

import argparse
import logging

from BigVGAN.vocode import add_speed_flags
from binaural_core.audio import BadInputError, cli_main
from DiffBinaural.inference.pipeline import RENDERERS
from DiffBinaural.inference.renderer import MODES


def parser() -> argparse.ArgumentParser:
    from DiffBinaural.detection import DEFAULT_DETECTOR, DEFAULT_QUERIES

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", help="video file (any container/codec PyAV decodes), decoded at the model's frame rate")
    src.add_argument("--frames", help="folder of frames 000001.jpg (.jpeg, .png) ... at the model's frame rate")
    p.add_argument("--mono", default=None,
                   help="the recording to binauralize (any rate; channels are down-mixed); default: the video's "
                        "first audio track")
    p.add_argument("--boxes", default=None, help="detection CSV (frame,x1,y1,x2,y2,score: pixel corners of the video's own "
                   "frames, or of the frames folder's images; a data set's CSV: this clip's rows), or 'auto' (--detector)")
    p.add_argument("--detector", default=DEFAULT_DETECTOR,
                   help="--boxes auto: transformers object detector, hub id or save_pretrained folder")
    p.add_argument("--detector_queries", nargs="+", default=list(DEFAULT_QUERIES),
                   help="--boxes auto: what to look for (text queries of a zero-shot detector such as OWL-ViT; "
                        "label names of a closed-set one such as DETR/YOLOS)")
    p.add_argument("--detector_threshold", type=float, default=0.1, help="--boxes auto: minimum detection score")
    p.add_argument("--stage1", required=True, help="Stage 1 run folder")
    p.add_argument("--weights_unet", default=None, help="default: {stage1}/unet_best.pth")
    p.add_argument("--weights_frame", default=None, help="default: {stage1}/frame_best.pth")
    p.add_argument("--renderer", choices=RENDERERS, default="mono",
                   help="mono: the input's STFT scaled and rotated by Stage 1's output; vocoder: BigVGAN per ear")
    p.add_argument("--mode", choices=MODES, default="free", help="mono renderer formulation (DiffBinaural/inference/renderer.py)")
    p.add_argument("--vocoder", default=None,
                   help="generator checkpoint (g_XXXXXXXX or bigvgan_generator.pt); only for --renderer vocoder")
    p.add_argument("--vocoder_config", default=None, help="default: config.json beside --vocoder")
    p.add_argument("--out", required=True, help="OUT.wav / .flac (audio), or OUT.mp4 / .mov / .mkv / .webm (video)")
    p.add_argument("--out_sr", type=int, default=None,
                   help="output rate (default: 48000 for a video, the model's 22050 for audio)")
    p.add_argument("--audio_codec", default=None, help="video output: the track's encoder (default aac; libopus in webm)")
    p.add_argument("--report", default=None, metavar="DIR",
                   help="also write DIR/report.html: listen to the input and the output (headphones), the frame "
                        "with the boxes, and the output's ILD/ITD over time")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--sampler", choices=("ddim", "dpmsolver++"), default="ddim")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--guidance_scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num_samples", type=int, default=1,
                   help="Stage 1 samples averaged per window (the posterior mean; costs that many times the sampling)")
    p.add_argument("--flip_tta", action=argparse.BooleanOptionalAction, default=False,
                   help="also sample the mirrored video (--num_samples more samples, ears swapped back) and average "
                        "all; assumes a symmetric head")
    p.add_argument("--window_hop", type=int, default=None, help="Stage 1 window stride in frames")
    p.add_argument("--window_batch", type=int, default=8, help="Stage 1 windows sampled together")
    p.add_argument("--chunk_frames", type=int, default=512, help="vocoder chunk in mel frames")
    p.add_argument("--stream_frames", type=int, default=4096,
                   help="mel frames generated per piece (rounded to --chunk_frames); memory is bounded by this, "
                        "the output does not depend on it")
    add_speed_flags(p)
    return p


def main() -> None:
    from DiffBinaural.inference.binauralizer import Binauralizer

    args = parser().parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.frames is not None and args.mono is None:
        raise BadInputError(args.frames, "a frames folder has no sound: pass the recording with --mono")
    b = Binauralizer.from_pretrained(
        args.stage1, renderer=args.renderer, device=args.device, vocoder=args.vocoder,
        vocoder_config=args.vocoder_config, weights_unet=args.weights_unet, weights_frame=args.weights_frame,
        detector=args.detector, detector_options={"queries": args.detector_queries,
                                                  "threshold": args.detector_threshold},
        compile=args.compile, pack=args.pack, sampler=args.sampler, steps=args.steps,
        guidance_scale=args.guidance_scale, seed=args.seed, num_samples=args.num_samples, flip_tta=args.flip_tta,
        window_hop=args.window_hop, window_batch=args.window_batch, chunk_frames=args.chunk_frames,
        stream_frames=args.stream_frames, mode=args.mode)
    if args.video is not None:
        b.binauralize_file(args.video, args.out, mono=args.mono, boxes=args.boxes, out_sr=args.out_sr,
                           audio_codec=args.audio_codec, report=args.report)
    else:
        b.binauralize_file(args.mono, args.out, frames=args.frames, boxes=args.boxes, out_sr=args.out_sr,
                           audio_codec=args.audio_codec, report=args.report)


def cli() -> None:
    """Console script ``diffbinaural-binauralize``."""
    cli_main(main)


if __name__ == "__main__":
    cli()
