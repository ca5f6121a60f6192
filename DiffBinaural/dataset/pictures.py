"""The synthetic scenes' pictures: backgrounds, each source's box, and what is drawn in it.

The synthetic sources (:data:`SHAPES`) are flat coloured shapes; the soundfont instruments are small
pictograms (:data:`ICONS`: a piano's keys, a guitar's body and neck, a trumpet's bell ...), each in
its own colours, so that what plays can be told from how it looks, as a detector or a visual encoder
would have to. Every drawing fills the source's box ``(x1, y1, x2, y2)`` (inclusive pixels).
"""

from __future__ import annotations

import numpy as np
from PIL import ImageDraw

from . import spatial

SHAPES = ("circle", "ellipse", "square", "triangle", "diamond")
ICON = "icon"  # the "shape" of a soundfont instrument: its family's pictogram


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Desaturated two-colour gradient (random direction) with a horizon band and pixel noise: (H, W, 3)."""
    grey = rng.uniform(60, 180, size=(2, 1))
    c0, c1 = grey + rng.uniform(-18, 18, size=(2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:height, 0:width]
    u = (np.cos(angle) * xx / width + np.sin(angle) * yy / height + 1.0) / 2.0
    img = c0 + (c1 - c0) * u[..., None]
    img[int(rng.uniform(0.4, 0.8) * height) :] *= rng.uniform(0.7, 0.9)  # "floor"
    img += rng.normal(0, 5, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def source_radius_px(distance_m: float, height: int) -> int:
    """Half-size in pixels of a source's drawing: inversely proportional to its distance."""
    return max(3, int(round(0.16 * height / distance_m)))


def source_box(src: dict, azimuth_rad: float, width: int, fov_deg: float) -> tuple[int, int, int, int]:
    """Integer pixel box ``(x1, y1, x2, y2)`` (inclusive) of a source drawn at ``azimuth_rad``."""
    r = src["radius_px"]
    cx = int(round(float(spatial.azimuth_to_x(azimuth_rad, width, fov_deg))))
    half_w = max(2, int(round(0.7 * r))) if src["shape"] == "ellipse" else r
    return cx - half_w, src["y"] - r, cx + half_w, src["y"] + r


def draw(canvas: ImageDraw.ImageDraw, src: dict, box) -> None:
    """Draw a source (its ``shape`` and ``color``, or its family's icon) into its box."""
    if src["shape"] == ICON:
        ICONS[src["type"]](canvas, box)
        return
    x1, y1, x2, y2 = box
    cx, cy, color = (x1 + x2) / 2, (y1 + y2) / 2, tuple(src["color"])
    shape = src["shape"]
    if shape in ("circle", "ellipse"):
        canvas.ellipse(box, fill=color)
    elif shape == "square":
        canvas.rectangle(box, fill=color)
    elif shape == "triangle":
        canvas.polygon([(cx, y1), (x2, y2), (x1, y2)], fill=color)
    else:  # diamond
        canvas.polygon([(cx, y1), (x2, cy), (cx, y2), (x1, cy)], fill=color)


# --- instrument pictograms (all coordinates as fractions of the box) -----------------------------


def _frame(box):
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1

    def at(u: float, v: float) -> tuple[float, float]:
        return x1 + u * w, y1 + v * h

    def rect(u1, v1, u2, v2):
        (a, b), (c, d) = at(u1, v1), at(u2, v2)
        return [a, b, max(a, c), max(b, d)]

    return at, rect


def _piano(c, box):
    at, rect = _frame(box)
    c.rectangle(rect(0.0, 0.2, 1.0, 0.85), fill=(20, 20, 24))  # the case
    c.rectangle(rect(0.05, 0.55, 0.95, 0.8), fill=(245, 245, 240))  # white keys
    for k in range(6):
        u = 0.1 + 0.14 * k
        c.rectangle(rect(u, 0.55, u + 0.06, 0.68), fill=(10, 10, 10))  # black keys
    c.rectangle(rect(0.05, 0.85, 0.12, 1.0), fill=(20, 20, 24))
    c.rectangle(rect(0.88, 0.85, 0.95, 1.0), fill=(20, 20, 24))


def _string_body(c, box, color, neck_color, tall: float):
    at, rect = _frame(box)
    c.rectangle(rect(0.45, 0.0, 0.55, 0.45), fill=neck_color)  # neck
    c.ellipse(rect(0.5 - 0.22 * tall, 0.3, 0.5 + 0.22 * tall, 0.62), fill=color)  # upper bout
    c.ellipse(rect(0.5 - 0.3 * tall, 0.5, 0.5 + 0.3 * tall, 0.95), fill=color)  # lower bout


def _violin(c, box):
    _string_body(c, box, (196, 98, 38), (25, 20, 18), 1.0)
    at, rect = _frame(box)
    c.rectangle(rect(0.47, 0.3, 0.53, 0.85), fill=(25, 20, 18))  # fingerboard over the body


def _cello(c, box):
    _string_body(c, box, (112, 52, 22), (25, 20, 18), 1.5)
    at, rect = _frame(box)
    c.rectangle(rect(0.48, 0.95, 0.52, 1.0), fill=(150, 150, 150))  # endpin


def _guitar(c, box):
    _string_body(c, box, (226, 170, 92), (92, 52, 26), 1.4)
    at, rect = _frame(box)
    c.ellipse(rect(0.42, 0.55, 0.58, 0.7), fill=(40, 25, 15))  # sound hole


def _trumpet(c, box):
    at, rect = _frame(box)
    gold = (240, 200, 50)
    c.rectangle(rect(0.0, 0.45, 0.7, 0.55), fill=gold)  # lead pipe
    c.polygon([at(0.6, 0.5), at(1.0, 0.25), at(1.0, 0.75)], fill=gold)  # bell
    c.rectangle(rect(0.25, 0.3, 0.5, 0.45), fill=(200, 160, 30))  # valves


def _flute(c, box):
    at, rect = _frame(box)
    c.rectangle(rect(0.0, 0.44, 1.0, 0.56), fill=(205, 208, 222))
    for k in range(5):
        u = 0.3 + 0.12 * k
        c.rectangle(rect(u, 0.47, u + 0.04, 0.53), fill=(60, 60, 70))  # keys


def _saxophone(c, box):
    at, rect = _frame(box)
    brass = (178, 118, 34)
    c.rectangle(rect(0.35, 0.0, 0.5, 0.8), fill=brass)  # body
    c.ellipse(rect(0.3, 0.6, 0.8, 1.0), fill=brass)  # the U-bend
    c.polygon([at(0.6, 0.75), at(0.85, 0.35), at(1.0, 0.45), at(0.8, 0.85)], fill=brass)  # bell
    c.rectangle(rect(0.38, 0.2, 0.47, 0.7), fill=(120, 80, 20))


def _drums(c, box):
    at, rect = _frame(box)
    c.rectangle(rect(0.1, 0.45, 0.9, 0.95), fill=(190, 30, 40))  # shell
    c.ellipse(rect(0.1, 0.35, 0.9, 0.55), fill=(235, 235, 225))  # head
    c.line([at(0.0, 0.15), at(0.45, 0.05)], fill=(230, 190, 50), width=max(1, int((box[3] - box[1]) / 12)))
    c.rectangle(rect(0.2, 0.1, 0.24, 0.4), fill=(150, 150, 150))  # cymbal stand


ICONS = {"piano": _piano, "guitar": _guitar, "violin": _violin, "cello": _cello, "trumpet": _trumpet,
         "flute": _flute, "saxophone": _saxophone, "drums": _drums}
# the main colour of each pictogram (synthetic_meta.json's "color" of a soundfont source)
ICON_COLORS = {"piano": (20, 20, 24), "guitar": (226, 170, 92), "violin": (196, 98, 38), "cello": (112, 52, 22),
               "trumpet": (240, 200, 50), "flute": (205, 208, 222), "saxophone": (178, 118, 34),
               "drums": (190, 30, 40)}
