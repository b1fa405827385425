"""Image signatures: decoding with guards, perceptual hashing, comparison (pure).

The first of the three image parts, and the only one the image check imports:
bytes in, numbers out, no file, network or store (``auditor.images.fetch``
fetches and caches; ``auditor.images.prepare`` is the preparation stage the
image check declares).

A signature is computed once per distinct image content (SHA-256) and kept in
the store, so the image check only compares numbers. It holds pHash and dHash
of the whole picture and of the picture with its uniform border trimmed (so
padding to a square does not matter, and a corner badge that defeats the trim
still matches on the whole picture), plus the median Lab colour of the
foreground, which tells colour variants of one product apart.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import imagehash
import numpy as np
from PIL import Image, ImageChops, ImageFile, ImageOps, UnidentifiedImageError

# Bump when the signature computation changes: cached signatures of an older
# version are recomputed, never compared with new ones.
ALGO_VERSION = 1

# Pillow's decompression-bomb guard stays on, and its warning is an error: an
# image over MAX_IMAGE_PIXELS is refused, not decoded.
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
ImageFile.LOAD_TRUNCATED_IMAGES = False

DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_BYTES = 20_000_000
WORK_SIZE = 256  # hash at most this size; JPEGs are decoded (draft) at half of it or more
COLOUR_SIZE = 64  # the dominant colour is found on a thumbnail this size
# A pixel is foreground when a channel differs from the background by more than this.
FG_DELTA = 12
# The trim box ignores fainter differences: JPEG ringing along a cut edge.
TRIM_DELTA = 32

# Defaults tuned on the benchmark matrix (bench/images.py, docs/images.md).
MAX_SHAPE = 25     # pHash + dHash Hamming distance (each of 64 bits)
MAX_COLOUR = 10.0  # CIE76 delta E between the dominant foreground colours
# A second colour cluster at least this big (relative to the main one) may
# swap places with it under resampling, so either counts as the main colour.
CLOSE_SHARE = 0.7

_MAGIC = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF87a", "GIF"),
          (b"GIF89a", "GIF"), (b"RIFF", "WEBP"), (b"BM", "BMP"))


class ImageProblem(Exception):
    """An image could not be used: corrupt, truncated, too large, not an image."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class ImageSignature:
    """What the image check compares: hashes, foreground colour and size."""

    sha256: str
    width: int
    height: int
    format: str
    phash: int        # whole picture
    dhash: int
    phash_trim: int   # uniform border trimmed
    dhash_trim: int
    lab: tuple[float, float, float]   # L*, a*, b* of the main foreground colour
    lab2: tuple[float, float, float]  # ... of the second colour cluster
    share2: float                     # its size relative to the main one (0..1)

    @property
    def colours(self) -> tuple[tuple[float, float, float], ...]:
        """The colours that may come out as the main one: two when the top clusters are close."""
        return (self.lab, self.lab2) if self.share2 >= CLOSE_SHARE else (self.lab,)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form for the store."""
        return {"v": ALGO_VERSION, "sha256": self.sha256, "width": self.width,
                "height": self.height, "format": self.format,
                "phash": f"{self.phash:016x}", "dhash": f"{self.dhash:016x}",
                "phash_trim": f"{self.phash_trim:016x}", "dhash_trim": f"{self.dhash_trim:016x}",
                "lab": list(self.lab), "lab2": list(self.lab2), "share2": self.share2}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ImageSignature | None":
        """The signature stored by ``to_dict``; None when it is of another version."""
        if d.get("v") != ALGO_VERSION:
            return None
        return cls(d["sha256"], int(d["width"]), int(d["height"]), d["format"],
                   int(d["phash"], 16), int(d["dhash"], 16), int(d["phash_trim"], 16),
                   int(d["dhash_trim"], 16), tuple(float(x) for x in d["lab"]),  # type: ignore[arg-type]
                   tuple(float(x) for x in d["lab2"]), float(d["share2"]))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Largest distances at which two images still count as the same picture."""

    shape: int = MAX_SHAPE
    colour: float = MAX_COLOUR

    @classmethod
    def from_options(cls, opts: Mapping[str, Any]) -> "Thresholds":
        """Thresholds from the image check's options."""
        return cls(int(opts.get("max_shape_distance", MAX_SHAPE)),
                   float(opts.get("max_colour_distance", MAX_COLOUR)))


@dataclass(frozen=True, slots=True)
class Comparison:
    """The distances between two signatures and the verdict."""

    phash: int
    dhash: int
    colour: float
    same: bool

    def details(self) -> dict[str, Any]:
        """The numbers that decided, for a finding's details."""
        return {"phash_distance": self.phash, "dhash_distance": self.dhash,
                "shape_distance": self.phash + self.dhash,
                "colour_distance": round(self.colour, 1)}


def _delta_e(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) ** 0.5


def _colour_distance(a: ImageSignature, b: ImageSignature) -> float:
    """Delta E of the main colours; or, when either picture has two clusters of
    about equal size (which resampling may swap), of both clusters swapped."""
    d = _delta_e(a.lab, b.lab)
    if max(a.share2, b.share2) >= CLOSE_SHARE:
        d = min(d, max(_delta_e(a.lab, b.lab2), _delta_e(a.lab2, b.lab)))
    return d


def _ham(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def compare(a: ImageSignature, b: ImageSignature, t: Thresholds = Thresholds()) -> Comparison:
    """Distances between two images; ``same`` when shape and colour both agree.

    The shape distance is pHash plus dHash Hamming distance, of whichever
    pair agrees best: whole pictures, trimmed pictures, or one of each.
    """
    pairs = ((_ham(a.phash, b.phash), _ham(a.dhash, b.dhash)),
             (_ham(a.phash_trim, b.phash_trim), _ham(a.dhash_trim, b.dhash_trim)),
             # padding around a picture that touches its own edges: the padded
             # one trimmed is the other one whole
             (_ham(a.phash_trim, b.phash), _ham(a.dhash_trim, b.dhash)),
             (_ham(a.phash, b.phash_trim), _ham(a.dhash, b.dhash_trim)))
    ph, dh = min(pairs, key=sum)
    dc = _colour_distance(a, b)
    return Comparison(ph, dh, dc, ph + dh <= t.shape and dc <= t.colour)


# --------------------------------------------------------------------------- decode + hash

def sniff(data: bytes) -> str | None:
    """The image format from the first bytes, or None."""
    for magic, fmt in _MAGIC:
        if data.startswith(magic):
            if fmt == "WEBP" and data[8:12] != b"WEBP":
                continue
            return fmt
    if data[4:12] in (b"ftypavif", b"ftypavis", b"ftypheic", b"ftypmif1"):
        return "AVIF"
    return None


def decode(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS
           ) -> tuple[Image.Image, tuple[int, int], str]:
    """A small RGB image, the original size and the format, from encoded bytes.

    Refuses bombs, truncation and non-images with ImageProblem.
    """
    if not data:
        raise ImageProblem("empty body (zero bytes)")
    try:
        img = Image.open(io.BytesIO(data))
        w, h = img.size
        fmt = img.format or ""
        # Pillow's own limit counts too, whatever the warning filters say (the
        # module filter above may be reset, e.g. by a test runner).
        limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)
        if w * h > limit:
            raise ImageProblem(f"image of {w}x{h} pixels exceeds the limit of {limit} pixels; "
                               f"refused as a possible decompression bomb")
        if img.format == "JPEG":
            img.draft("RGB", (WORK_SIZE // 2, WORK_SIZE // 2))  # decode at 1/2..1/8 scale: much faster
        img.seek(0)  # first frame of GIF/WebP animations
        img.load()
    except ImageProblem:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageProblem(f"refused as a decompression bomb: {e}") from None
    except UnidentifiedImageError:
        raise ImageProblem("not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:  # truncated, corrupt
        raise ImageProblem(f"corrupt or truncated image: {e}") from None
    return _flatten(img), (w, h), fmt


def _flatten(img: Image.Image) -> Image.Image:
    """RGB on white (transparency flattened), at most WORK_SIZE on a side."""
    img = ImageOps.exif_transpose(img) if img.format == "JPEG" else img
    if img.mode in ("P", "PA") and ("transparency" in img.info or img.mode == "PA"):
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "La", "RGBa"):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img)
    img = img.convert("RGB")
    if max(img.size) > WORK_SIZE:
        img.thumbnail((WORK_SIZE, WORK_SIZE), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return img


def _background(a: np.ndarray) -> np.ndarray:
    """The backdrop colour: the corner colour most other corners agree with.

    Corners, not the whole border, because a cropped product may fill most of
    an edge; ties go to the lightest corner (backdrops are mostly white).
    """
    k = max(1, min(a.shape[0], a.shape[1]) // 32)
    corners = [np.median(p.reshape(-1, 3), axis=0) for p in
               (a[:k, :k], a[:k, -k:], a[-k:, :k], a[-k:, -k:])]
    votes = [sum(int(np.abs(c - o).max() <= FG_DELTA) for o in corners) for c in corners]
    return corners[max(range(4), key=lambda i: (votes[i], corners[i].sum()))]


def _trim(img: Image.Image, bg: np.ndarray) -> Image.Image:
    """The image cut to the bounding box of what differs from the backdrop."""
    diff = ImageChops.difference(img, Image.new("RGB", img.size, tuple(int(x) for x in bg)))
    box = diff.point(lambda v: 255 if v > TRIM_DELTA else 0).getbbox()
    return img.crop(box) if box else img


def _lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (n, 3) uint8 to CIE L*a*b* (D65)."""
    c = rgb.astype(np.float64) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    xyz = c @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                        [0.0193, 0.1192, 0.9505]]).T
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]),
                     200 * (f[:, 1] - f[:, 2])], axis=1)


def _clusters(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The Lab colours of the two largest colour clusters, and the second's relative size.

    Modes, not a median or mean: details in lighter and darker tones of the
    colour (and a sale badge) must not pull them. The fullest cell of two
    coarse grids, the second shifted by half a cell, picks a cluster (a colour
    on a cell edge of one grid is inside a cell of the other); its mean is the
    colour. The second cluster is found the same way after removing the first.
    """
    if len(rgb) > 8192:  # a sample is as good and much cheaper
        rgb = rgb[:: len(rgb) // 8192]
    px = rgb.astype(np.int32)
    found = []
    for _ in range(2):
        best, members = 0, None
        for shift in (0, 16):
            q = (px + shift) >> 5
            cells = q[:, 0] * 81 + q[:, 1] * 9 + q[:, 2]
            if not len(cells):
                break
            counts = np.bincount(cells)
            top = int(counts.argmax())
            if counts[top] > best:
                best, members = int(counts[top]), px[cells == top]
        if members is None:
            break
        centre = members.mean(axis=0)
        found.append((_lab(centre[None, :])[0], best))
        px = px[np.abs(px - centre).max(axis=1) > 32]
    if len(found) == 1:
        return found[0][0], found[0][0], 0.0
    (c1, n1), (c2, n2) = found
    return c1, c2, n2 / n1


def _hashes(img: Image.Image) -> tuple[int, int]:
    return (int(str(imagehash.phash(img)), 16), int(str(imagehash.dhash(img)), 16))


def signature_of(img: Image.Image, sha256: str = "", size: tuple[int, int] | None = None,
                 fmt: str = "") -> ImageSignature:
    """The signature of a decoded image (see ``decode``)."""
    bg = _background(np.asarray(img))
    trimmed = _trim(img, bg)
    ph, dh = _hashes(img)
    pt, dt = _hashes(trimmed)
    small = trimmed.copy()
    small.thumbnail((COLOUR_SIZE, COLOUR_SIZE), Image.Resampling.NEAREST)
    px = np.asarray(small).reshape(-1, 3)
    fg = px[np.abs(px.astype(np.int16) - bg.astype(np.int16)).max(axis=1) > FG_DELTA]
    lab, lab2, share2 = _clusters(fg if len(fg) else px)
    w, h = size or img.size
    return ImageSignature(sha256, w, h, fmt, ph, dh, pt, dt, _round3(lab), _round3(lab2),
                          round(share2, 3))


def _round3(v: np.ndarray) -> tuple[float, float, float]:
    return (round(float(v[0]), 2), round(float(v[1]), 2), round(float(v[2]), 2))


def signature_from_bytes(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageSignature:
    """Decode and hash encoded image bytes; ImageProblem when they are unusable."""
    img, size, fmt = decode(data, max_pixels)
    return signature_of(img, hashlib.sha256(data).hexdigest(), size, fmt)


# --------------------------------------------------------------------------- what the check reads

class PrimaryIndex:
    """Master primary signatures bucketed by colour, to say whose image a listing shows."""

    def __init__(self, cell: float = MAX_COLOUR):
        self.cell = max(cell, 1.0)
        self.cells: dict[tuple[int, int, int], list[tuple[str, ImageSignature]]] = {}
        self.size = 0

    def _key(self, lab: tuple[float, float, float]) -> tuple[int, int, int]:
        return tuple(int(x // self.cell) for x in lab)  # type: ignore[return-value]

    def add(self, sku: str, sig: ImageSignature) -> None:
        """Index one master primary (under each colour that may stand for it)."""
        for lab in sig.colours:
            self.cells.setdefault(self._key(lab), []).append((sku, sig))
        self.size += 1

    def nearest(self, sig: ImageSignature, t: Thresholds, exclude: str | None = None
                ) -> tuple[str, Comparison] | None:
        """The closest matching master primary other than ``exclude``'s, or None."""
        best: tuple[str, Comparison] | None = None
        seen: set[str] = set()
        for lab in sig.colours:
            kx, ky, kz = self._key(lab)
            for dx, dy, dz in _NEIGHBOURS:
                for sku, other in self.cells.get((kx + dx, ky + dy, kz + dz), ()):
                    if sku == exclude or sku in seen:
                        continue
                    seen.add(sku)
                    c = compare(sig, other, t)
                    if c.same and (best is None or _rank(c) < _rank(best[1])):
                        best = (sku, c)
        return best


_NEIGHBOURS = [(x, y, z) for x in (-1, 0, 1) for y in (-1, 0, 1) for z in (-1, 0, 1)]


def _rank(c: Comparison) -> float:
    return (c.phash + c.dhash) / MAX_SHAPE + c.colour / MAX_COLOUR


@dataclass
class ImageView:
    """What the image check reads from ``ctx.extras["images"]``."""

    results: Mapping[str, "ImageSignature | str"]       # ref -> signature or failure
    assets: Mapping[str, tuple[str, ...]]               # sku -> master image refs
    history: Mapping[str, list[tuple[str, str, int]]]   # sku -> [(ref or sha, until, slot)]
    signatures: Mapping[str, ImageSignature]            # sha -> signature (history)
    primaries: PrimaryIndex = field(default_factory=PrimaryIndex)

    def get(self, ref: str) -> "ImageSignature | str | None":
        """The signature of a ref (or the failure reason; None when never resolved)."""
        r = self.results.get(ref)
        if r is None and ref.startswith("sha256:"):
            return self.signatures.get(ref[7:])
        return r

    def shown(self, ref: str) -> "ImageSignature | str | None":
        """Like ``get``, for an image a channel shows: a value that is not an http(s)
        URL is never an image (a channel's values are URLs or nothing; only the
        master's DAM folder is read from disk)."""
        if not is_image_url(ref):
            return NOT_A_URL
        return self.get(ref)


NOT_A_URL = "not an http(s) URL (image values from a channel must be URLs)"


def is_image_url(ref: str) -> bool:
    """Whether an image reference is an http(s) URL (or protocol-relative ``//``)."""
    return ref[:8].lower().startswith(("http://", "https://", "//"))
