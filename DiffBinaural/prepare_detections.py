"""Find the sound sources in every clip's frames with an object detector: the RealBinaural detection CSV.

    python DiffBinaural/prepare_detections.py --frames_root DATA_ROOT/processed/frames \
        --out DATA_ROOT/action_detection_results/detection_results.csv \
        [--detector google/owlvit-base-patch32 | FOLDER] [--queries person guitar piano ...] [--threshold 0.1] \
        [--device cuda] [--skip_bad]

Each subfolder of --frames_root is one clip (frames 000001.jpg ... as prepare_frames.py writes them).
Every frame goes through the detector (a transformers zero-shot detector such as OWL-ViT with text
queries, or a closed-set one such as DETR/YOLOS whose labels the queries pick); the boxes are linked
into tracks over the clip, gaps filled and smoothed (DiffBinaural/detection/tracks.py), and written
as ``name,frame,x1,y1,x2,y2,score`` (pixel corners, frame = index), the file the RealBinaural loader
and ``binauralize.py --boxes`` read. Offline, pass --detector a save_pretrained folder.
"""

from __future__ import annotations

import argparse
import csv
import os

from tqdm import tqdm

from binaural_core.atomic import atomic_output
from binaural_core.audio import BadInputError, cli_main
from DiffBinaural.dataset.frames import ClipError, count_frames
from DiffBinaural.dataset.layout import DETECTION_COLUMNS
from DiffBinaural.detection import DEFAULT_DETECTOR, DEFAULT_QUERIES, detect_clip, load_detector


def prepare_detections(frames_root: str, out: str, *, detector: str = DEFAULT_DETECTOR,
                       queries: tuple[str, ...] = DEFAULT_QUERIES, threshold: float = 0.1, device: str = "cpu",
                       skip_bad: bool = False) -> tuple[int, int, list[str]]:
    """Detect, track and write the CSV; returns ``(clips written, boxes, bad clips)``."""
    if not os.path.isdir(frames_root):
        raise BadInputError(frames_root, "frames root not found")
    names = sorted(d for d in os.listdir(frames_root)
                   if os.path.isdir(os.path.join(frames_root, d)) and not d.startswith("."))
    if not names:
        raise BadInputError(frames_root, "no clip folders (one folder of frames per clip)")
    model = load_detector(detector, device=device, queries=queries, threshold=threshold)
    bad: list[str] = []
    boxes = 0
    with atomic_output(out, suffix=".csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(DETECTION_COLUMNS)
        for name in tqdm(names, desc="detect", unit="clip", disable=None):
            folder = os.path.join(frames_root, name)
            try:
                num_images, ext = count_frames(folder)
                rows = detect_clip(model, folder, ext=ext, num_images=num_images)
            except ClipError as err:
                if not skip_bad:
                    raise
                bad.append(f"{name}: {err.problem}")
                continue
            boxes += len(rows)
            for frame, x1, y1, x2, y2, score in rows:
                writer.writerow([name, int(frame), f"{x1:.1f}", f"{y1:.1f}", f"{x2:.1f}", f"{y2:.1f}", f"{score:.4f}"])
    return len(names) - len(bad), boxes, bad


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames_root", required=True, help="folder of clip folders of frames")
    p.add_argument("--out", required=True, help="detection CSV to write")
    p.add_argument("--detector", default=DEFAULT_DETECTOR, help="hub id or save_pretrained folder")
    p.add_argument("--queries", nargs="+", default=list(DEFAULT_QUERIES),
                   help="text queries (zero-shot detector) or label names (closed-set detector)")
    p.add_argument("--threshold", type=float, default=0.1, help="minimum detection score")
    p.add_argument("--device", default="cpu")
    p.add_argument("--skip_bad", action=argparse.BooleanOptionalAction, default=False,
                   help="skip clips whose frames cannot be read (named in the summary) instead of stopping")
    args = p.parse_args()
    written, boxes, bad = prepare_detections(args.frames_root, args.out, detector=args.detector,
                                             queries=tuple(args.queries), threshold=args.threshold,
                                             device=args.device, skip_bad=args.skip_bad)
    print(f"prepare_detections: {written} clip(s), {boxes} box(es) -> {args.out}; {len(bad)} skipped as bad"
          + (f" (first: {bad[0]})" if bad else ""))


def cli() -> None:
    """Console script ``diffbinaural-prepare-detections``."""
    cli_main(main)


if __name__ == "__main__":
    cli()
