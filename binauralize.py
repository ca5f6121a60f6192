"""Binauralize your own mono recording with its video: mono wav + (video | frames) -> stereo wav.

    python binauralize.py --mono IN.wav (--video IN.mp4 | --frames DIR) [--boxes CSV] \
        --stage1 RUN_DIR [--renderer mono|vocoder] [--vocoder G_CKPT] --out OUT.wav [--out_sr 48000] \
        [--device cuda] [--steps 25] [--sampler ddim|dpmsolver++] [--guidance_scale 1] [--seed 0]

RUN_DIR is a Stage 1 run folder ({ckpt}/{id}: config.json + unet_best.pth + frame_best.pth). The
default renderer, mono, keeps the input's own waveform and phase and applies Stage 1's levels and
interaural phase to it (no vocoder; it measured better on every waveform metric, README "Mono
renderer"); --renderer vocoder re-synthesises each ear with BigVGAN (G_CKPT: a generator checkpoint
with config.json beside it), then applies the predicted interaural phase. --boxes: detections with the columns
frame,x1,y1,x2,y2,score (pixel boxes on the video's frames at the model's frame rate; frame = 1-based
index); without it the whole frame is the visual input. Any length, any input rate.
"""

import argparse

from BigVGAN.vocode import add_speed_flags
from binaural_core.audio import cli_main
from DiffBinaural.pipeline import RENDERERS, binauralize
from DiffBinaural.renderer import MODES


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mono", required=True, help="input recording (any rate; several channels are down-mixed)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", help="video file, decoded with PyAV at the model's frame rate")
    src.add_argument("--frames", help="folder of frames 000001.jpg (.jpeg, .png) ... at the model's frame rate")
    p.add_argument("--boxes", default=None, help="detection CSV (frame,x1,y1,x2,y2,score)")
    p.add_argument("--stage1", required=True, help="Stage 1 run folder")
    p.add_argument("--weights_unet", default=None, help="default: {stage1}/unet_best.pth")
    p.add_argument("--weights_frame", default=None, help="default: {stage1}/frame_best.pth")
    p.add_argument("--renderer", choices=RENDERERS, default="mono",
                   help="mono: the input's STFT scaled and rotated by Stage 1's output; vocoder: BigVGAN per ear")
    p.add_argument("--mode", choices=MODES, default="free", help="mono renderer formulation (DiffBinaural/renderer.py)")
    p.add_argument("--vocoder", default=None,
                   help="generator checkpoint (g_XXXXXXXX or bigvgan_generator.pt); only for --renderer vocoder")
    p.add_argument("--vocoder_config", default=None, help="default: config.json beside --vocoder")
    p.add_argument("--out", required=True)
    p.add_argument("--report", default=None, metavar="DIR",
                   help="also write DIR/report.html: listen to the input and the output (headphones), the frame "
                        "with the boxes, and the output's ILD/ITD over time")
    p.add_argument("--out_sr", type=int, default=None, help="output rate (default: the model's, 22050)")
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
    args = p.parse_args()
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    binauralize(args)


if __name__ == "__main__":
    cli_main(main)
