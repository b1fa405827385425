"""Image matching benchmark: a matrix of generated product photos under benign transforms.

Run ``python -m bench.images [--products 60] [--colours 3] [--size 600]``. It
reports the true-match rate of each benign transform (the same photo resized,
recompressed, re-encoded, padded, cropped or badged must match its original),
the false-match rate across distinct photos (colour variants of one product
and different products of one kind included), and decode+hash throughput for
1000x1000 JPEGs on one core.
"""

from __future__ import annotations

import argparse
import io
import time
from typing import Any, Callable

from PIL import Image, ImageDraw

from auditor import images as im
from auditor.world.images import _rng, draw_product

# Close pairs on purpose (red/burgundy, navy/black, beige/white, brown/olive).
PALETTE = ["red", "burgundy", "navy", "black", "beige", "white", "brown", "olive", "blue",
           "green", "teal", "grey", "orange", "yellow", "pink", "purple"]


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _encode(img: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _resize(img: Image.Image, f: float) -> Image.Image:
    return img.resize((max(1, round(img.width * f)), max(1, round(img.height * f))),
                      Image.Resampling.LANCZOS)


def _pad_square(img: Image.Image, fill: tuple = (255, 255, 255), margin: float = 0.1
                ) -> Image.Image:
    side = round(max(img.size) * (1 + 2 * margin))
    mode = "RGBA" if len(fill) == 4 else "RGB"
    out = Image.new(mode, (side, side), fill)
    out.paste(img, ((side - img.width) // 2, (side - img.height) // 2))
    return out


def _crop(img: Image.Image, f: float = 0.05) -> Image.Image:
    dx, dy = round(img.width * f / 2), round(img.height * f / 2)
    return img.crop((dx, dy, img.width - dx, img.height - dy))


def _badge(img: Image.Image) -> Image.Image:
    out = img.copy()
    d = ImageDraw.Draw(out)
    s = round(min(img.size) * 0.12)
    x0, y0 = img.width - s - round(s * 0.2), round(s * 0.2)
    d.ellipse((x0, y0, x0 + s, y0 + s), fill=(220, 20, 60))
    d.text((x0 + s * 0.2, y0 + s * 0.4), "SALE", fill=(255, 255, 255))
    return out


# name -> original image -> encoded bytes of the transformed copy
TRANSFORMS: dict[str, Callable[[Image.Image], bytes]] = {
    "resize_50": lambda i: _jpeg(_resize(i, 0.5)),
    "resize_200": lambda i: _jpeg(_resize(i, 2.0)),
    "jpeg_q60": lambda i: _jpeg(i, 60),
    "jpeg_q40": lambda i: _jpeg(i, 40),  # what the benchmark world's channels do
    "webp": lambda i: _encode(i, "WEBP", quality=80),
    "png": lambda i: _encode(i, "PNG"),
    "pad_square_white": lambda i: _jpeg(_pad_square(i)),
    "pad_square_transparent": lambda i: _encode(_pad_square(i.convert("RGBA"),
                                                            (0, 0, 0, 0)), "PNG"),
    "crop_5pct": lambda i: _jpeg(_crop(i)),
    "badge_corner": lambda i: _jpeg(_badge(i)),
}


def draw_kind(product_key: str) -> int:
    """The silhouette kind draw_product picks for a key (same RNG sequence)."""
    rng = _rng(product_key)
    rng.uniform(35, 65), rng.uniform(35, 65), rng.uniform(25, 38)
    return rng.randrange(4)


def originals(products: int, colours: int, size: int) -> list[tuple[str, str, Image.Image]]:
    """(product, colour, image): every product in ``colours`` colours; every other one 4:3."""
    out = []
    for p in range(products):
        key = f"product-{p:04d}"
        for c in range(colours):
            colour = PALETTE[(p * 2 + c) % len(PALETTE)]
            img = draw_product(key, colour, size)
            if p % 2:  # a landscape photo: padding to a square really adds bars
                img = img.crop((0, size // 8, size, size - size // 8))
            out.append((key, colour, img))
    return out


def run(products: int = 60, colours: int = 3, size: int = 600, throughput_images: int = 60,
        thresholds: im.Thresholds | None = None) -> dict[str, Any]:
    """Build the matrix, match it, time decoding; return the numbers."""
    thresholds = thresholds or im.Thresholds()
    base = originals(products, colours, size)
    sigs = [im.signature_from_bytes(_jpeg(img)) for _, _, img in base]
    per_transform: dict[str, list[int]] = {t: [0, 0] for t in TRANSFORMS}
    worst: dict[str, dict[str, float]] = {}
    transformed: list[tuple[int, str, im.ImageSignature]] = []
    for i, (_, _, img) in enumerate(base):
        for name, fn in TRANSFORMS.items():
            s = im.signature_from_bytes(fn(img))
            c = im.compare(sigs[i], s, thresholds)
            per_transform[name][0] += c.same
            per_transform[name][1] += 1
            w = worst.setdefault(name, {"shape": 0, "phash": 0, "dhash": 0, "colour": 0.0})
            w["phash"], w["dhash"] = max(w["phash"], c.phash), max(w["dhash"], c.dhash)
            w["shape"] = max(w["shape"], c.phash + c.dhash)
            w["colour"] = max(w["colour"], round(c.colour, 1))
            transformed.append((i, name, s))
    kinds = {key: draw_kind(key) for key, _, _ in base}
    false = {"colour_variant": [0, 0], "same_kind": [0, 0], "other": [0, 0]}
    # Closest distinct pairs: shape (pHash + dHash) between different products,
    # colour between colour variants of one product.
    closest = {"shape": 128, "colour": 999.0}
    false_examples: list[str] = []

    def bucket(a: int, b: int) -> str:
        if base[a][0] == base[b][0]:
            return "colour_variant"
        return "same_kind" if kinds[base[a][0]] == kinds[base[b][0]] else "other"

    # Originals against each other, and every transformed copy against the other originals.
    probes = [(i, sigs[i]) for i in range(len(base))] + [(i, s) for i, _, s in transformed]
    for i, s in probes:
        for j in range(len(base)):
            if j == i:
                continue
            c = im.compare(s, sigs[j], thresholds)
            b = bucket(i, j)
            false[b][0] += c.same
            false[b][1] += 1
            if c.same and len(false_examples) < 10:
                false_examples.append(f"{base[i][0]}/{base[i][1]} ~ {base[j][0]}/{base[j][1]} "
                                      f"(p{c.phash} d{c.dhash} c{c.colour:.1f})")
            if b == "colour_variant":
                closest["colour"] = min(closest["colour"], round(c.colour, 1))
            else:
                closest["shape"] = min(closest["shape"], c.phash + c.dhash)
    benign_ok = sum(v[0] for v in per_transform.values())
    benign_n = sum(v[1] for v in per_transform.values())
    false_ok = sum(v[0] for v in false.values())
    false_n = sum(v[1] for v in false.values())
    return {
        "products": products, "colours": colours, "originals": len(base), "size": size,
        "thresholds": {"shape": thresholds.shape, "colour": thresholds.colour},
        "true_match_rate": benign_ok / benign_n,
        "per_transform": {k: v[0] / v[1] for k, v in per_transform.items()},
        "worst_benign_distance": worst,
        "false_match_rate": false_ok / false_n,
        "false_match_pairs": false_n,
        "false_by_kind": {k: (v[0] / v[1] if v[1] else 0.0, v[1]) for k, v in false.items()},
        "closest_distinct": closest,
        "false_examples": false_examples,
        "throughput": throughput(throughput_images),
    }


def throughput(n: int = 60, side: int = 1000) -> dict[str, float]:
    """Decode + hash rate of ``side``-pixel JPEGs on one thread, with and without draft.

    Without draft, WORK_SIZE is raised so the JPEG is decoded at full size.
    """
    blobs = []
    for k in range(min(n, 20)):
        img = draw_product(f"tp-{k}", PALETTE[k % len(PALETTE)], side)
        # Real photos carry noise that makes JPEG decoding slower than flat shapes.
        noise = Image.effect_noise((side, side), 18).convert("RGB")
        blobs.append(_jpeg(Image.blend(img, noise, 0.08), 88))
    out: dict[str, float] = {}
    for label, draft in (("draft", True), ("full_decode", False)):
        saved = im.WORK_SIZE
        if not draft:
            im.WORK_SIZE = 10_000  # no draft reduction and no early thumbnail
        best_wall = best_cpu = float("inf")
        for _ in range(3):  # best of three: the machine is shared
            t0, c0 = time.perf_counter(), time.process_time()
            for k in range(n):
                im.signature_from_bytes(blobs[k % len(blobs)])
            best_wall = min(best_wall, time.perf_counter() - t0)
            best_cpu = min(best_cpu, time.process_time() - c0)
        im.WORK_SIZE = saved
        out[f"{label}_images_per_s"] = round(n / best_wall, 1)
        out[f"{label}_images_per_cpu_s"] = round(n / best_cpu, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--products", type=int, default=60)
    ap.add_argument("--colours", type=int, default=3)
    ap.add_argument("--size", type=int, default=600)
    ap.add_argument("--throughput-images", type=int, default=60)
    ap.add_argument("--max-shape", type=int, default=im.MAX_SHAPE)
    ap.add_argument("--max-colour", type=float, default=im.MAX_COLOUR)
    a = ap.parse_args()
    r = run(a.products, a.colours, a.size, a.throughput_images,
            im.Thresholds(a.max_shape, a.max_colour))
    print(f"matrix: {r['originals']} originals ({r['products']} products x {r['colours']} "
          f"colours, {r['size']} px), thresholds {r['thresholds']}")
    print(f"{'transform':<26}{'matched':>10}{'worst shape':>13}{'worst pHash':>13}"
          f"{'worst dHash':>13}{'worst dE':>10}")
    for name, rate in r["per_transform"].items():
        w = r["worst_benign_distance"][name]
        print(f"{name:<26}{rate:>10.2%}{w['shape']:>13}{w['phash']:>13}{w['dhash']:>13}"
              f"{w['colour']:>10}")
    print(f"{'true-match rate (benign)':<26}{r['true_match_rate']:>10.2%}")
    print(f"{'false-match rate':<26}{r['false_match_rate']:>10.3%}  over "
          f"{r['false_match_pairs']} distinct pairs")
    for k, (rate, n) in r["false_by_kind"].items():
        print(f"  {k:<24}{rate:>10.3%}  over {n}")
    print(f"closest distinct: shape {r['closest_distinct']['shape']} between different "
          f"products, colour {r['closest_distinct']['colour']} between colour variants")
    for e in r["false_examples"]:
        print(f"  false match: {e}")
    t = r["throughput"]
    print(f"1000x1000 JPEG decode+hash, one thread, best of 3: {t['draft_images_per_s']} "
          f"images/s wall ({t['draft_images_per_cpu_s']} per CPU second) with draft mode; "
          f"{t['full_decode_images_per_s']} ({t['full_decode_images_per_cpu_s']}) without")


if __name__ == "__main__":
    main()
