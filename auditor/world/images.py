"""Procedural product images: one product, one shape; one colour variant, one colour.

Distinct products differ in silhouette, layout and pattern; the colour variants
of one product share all of that and differ only in the fill colour. Pure
functions of their arguments, so the world regenerates identically.
"""

from __future__ import annotations

import hashlib
import math
import random

from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 40), "blue": (30, 70, 190), "green": (30, 150, 60),
    "black": (25, 25, 25), "white": (235, 235, 230), "grey": (128, 128, 128),
    "yellow": (235, 200, 30), "orange": (240, 130, 20), "purple": (120, 40, 150),
    "pink": (240, 130, 170), "brown": (120, 75, 40), "navy": (20, 30, 90),
    "beige": (215, 195, 160), "teal": (20, 130, 130), "olive": (110, 110, 30),
    "burgundy": (110, 20, 40),
}


def _rng(product_key: str) -> random.Random:
    seed = int.from_bytes(hashlib.blake2b(product_key.encode(), digest_size=8).digest(), "big")
    return random.Random(seed)


def _polygon(rng: random.Random, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    n = rng.randint(3, 9)
    pts = []
    for i in range(n):
        a = 2 * math.pi * i / n + rng.uniform(-0.35, 0.35)
        rr = r * rng.uniform(0.55, 1.0)
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return pts


def draw_product(product_key: str, colour: str | tuple[int, int, int], size: int = 800,
                 background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """The photo of ``product_key`` in ``colour`` on a plain background, ``size`` square."""
    rgb = COLOURS.get(colour, None) if isinstance(colour, str) else colour
    if rgb is None:
        digest = hashlib.blake2b(str(colour).encode(), digest_size=3).digest()
        rgb = (digest[0], digest[1], digest[2])
    rng = _rng(product_key)
    img = Image.new("RGB", (size, size), background)
    d = ImageDraw.Draw(img)
    s = size / 100.0
    # The silhouette: one main body whose shape and placement are the product's own.
    cx, cy = rng.uniform(35, 65) * s, rng.uniform(35, 65) * s
    r = rng.uniform(25, 38) * s
    kind = rng.randrange(4)
    if kind == 0:
        d.polygon(_polygon(rng, cx, cy, r), fill=rgb)
    elif kind == 1:
        w, h = r * rng.uniform(0.7, 1.2), r * rng.uniform(0.7, 1.2)
        d.rounded_rectangle((cx - w, cy - h, cx + w, cy + h), radius=int(r * 0.3), fill=rgb)
    elif kind == 2:
        d.ellipse((cx - r, cy - r * rng.uniform(0.6, 1.0), cx + r, cy + r * rng.uniform(0.6, 1.0)),
                  fill=rgb)
    else:
        d.pieslice((cx - r, cy - r, cx + r, cy + r), rng.uniform(0, 90), rng.uniform(200, 340),
                   fill=rgb)
    # Details in darker and lighter tones of the same colour: pattern, parts, a logo.
    dark = tuple(max(0, int(c * 0.45)) for c in rgb)
    light = tuple(min(255, int(c + (255 - c) * 0.55)) for c in rgb)
    for _ in range(rng.randint(2, 5)):
        px, py = cx + rng.uniform(-r, r) * 0.8, cy + rng.uniform(-r, r) * 0.8
        pr = rng.uniform(3, 12) * s
        tone = dark if rng.random() < 0.5 else light
        if rng.random() < 0.5:
            d.ellipse((px - pr, py - pr, px + pr, py + pr), fill=tone)
        else:
            d.rectangle((px - pr, py - pr / 2, px + pr, py + pr / 2), fill=tone)
    for _ in range(rng.randint(1, 3)):
        x0, y0 = rng.uniform(5, 95) * s, rng.uniform(5, 95) * s
        x1, y1 = rng.uniform(5, 95) * s, rng.uniform(5, 95) * s
        d.line((x0, y0, x1, y1), fill=dark, width=max(1, int(rng.uniform(1, 3) * s)))
    return img
