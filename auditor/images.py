"""Image signatures: decoding with guards, perceptual hashing, comparison, fetching.

A signature is computed once per distinct image content (SHA-256) and kept in
the store, so the image check only compares numbers. It holds pHash and dHash
of the whole picture and of the picture with its uniform border trimmed (so
padding to a square does not matter, and a corner badge that defeats the trim
still matches on the whole picture), plus the median Lab colour of the
foreground, which tells colour variants of one product apart.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import logging
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

import imagehash
import numpy as np
from PIL import Image, ImageChops, ImageFile, ImageOps, UnidentifiedImageError

from auditor.errors import FetchError

log = logging.getLogger(__name__)

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
    return sum((x - y) ** 2 for x, y in zip(a, b)) ** 0.5


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


# --------------------------------------------------------------------------- master assets

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".avif")
_SLOT_SUFFIX = re.compile(r"^(?P<sku>.+?)[_-](?P<slot>\d+)$")


def dam_assets(dam_dir: Path, skus: Iterable[str], mapping: Path | None = None
               ) -> dict[str, tuple[str, ...]]:
    """Local DAM files by SKU, primary first.

    With a mapping CSV (columns ``sku``, ``file`` and optionally ``slot``) the
    mapping decides; otherwise file names do: ``<SKU>.<ext>`` (primary),
    ``<SKU>_<n>.<ext>`` or ``<SKU>-<n>.<ext>``, and ``<SKU>/<n>.<ext>``; the
    lowest number is the primary.
    """
    known = set(skus)
    found: dict[str, list[tuple[int, str]]] = {}
    if mapping is not None:
        with open(mapping, newline="", encoding="utf-8-sig") as f:
            for n, row in enumerate(csv.DictReader(f)):
                sku, name = (row.get("sku") or "").strip(), (row.get("file") or "").strip()
                if sku and name:
                    slot = int(row["slot"]) if (row.get("slot") or "").strip().isdigit() else n
                    found.setdefault(sku, []).append((slot, str((dam_dir / name).resolve())))
    else:
        for p in sorted(dam_dir.rglob("*")):
            if not p.is_file() or p.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            rel = p.relative_to(dam_dir)
            if len(rel.parts) == 2 and rel.parts[0] in known and rel.stem.isdigit():
                sku, slot = rel.parts[0], int(rel.stem)
            elif len(rel.parts) == 1 and rel.stem in known:
                sku, slot = rel.stem, -1
            elif len(rel.parts) == 1 and (m := _SLOT_SUFFIX.match(rel.stem)) \
                    and m.group("sku") in known:
                sku, slot = m.group("sku"), int(m.group("slot"))
            else:
                continue
            found.setdefault(sku, []).append((slot, str(p.resolve())))
    return {sku: tuple(ref for _, ref in sorted(v)) for sku, v in found.items()}


# --------------------------------------------------------------------------- fetching


@dataclass
class FetchSettings:
    """Limits for image fetches, from the image check's options."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    in_flight: int = 16  # bodies held in memory at once (downloading or waiting to hash)
    # A URL validated this recently is taken from the store without a request.
    revalidate_hours: float = 24.0


_ACCEPTED_TYPES = ("image/", "application/octet-stream", "binary/octet-stream")


class ImageResolver:
    """Turns image references (URLs or local files) into signatures, with the store's caches.

    An unchanged image is neither downloaded nor hashed again: a URL with
    validators is fetched conditionally (a 304 reuses the stored content hash),
    a local file unchanged in size and mtime is not even read, and a content
    already hashed (by SHA-256) is not decoded again.
    """

    def __init__(self, store: Any, settings: FetchSettings,
                 executor: ThreadPoolExecutor | None = None):
        self.store = store
        self.settings = settings
        self.executor = executor
        self.results: dict[str, ImageSignature | str] = {}
        self.shas: dict[str, str] = {}  # ref -> content sha256, for the asset history
        self.stats = {"fetched": 0, "not_modified": 0, "hashed": 0, "cached": 0, "failed": 0}

    async def resolve(self, refs: Iterable[str], fetcher: Any) -> None:
        """Fill ``results`` for every ref not resolved yet in this run."""
        await self.resolve_groups([(refs, fetcher)])

    async def resolve_groups(self, groups: Iterable[tuple[Iterable[str], Any]]) -> None:
        """Like ``resolve`` for several (refs, fetcher) groups at once; a ref is fetched once."""
        via: dict[str, Any] = {}
        for refs, fetcher in groups:
            for r in refs:
                if r and r not in self.results:
                    via.setdefault(r, fetcher)
        todo = list(via)
        if not todo:
            return
        known = self.store.image_urls(_cache_key(r) for r in todo) if self.store else {}
        shas = [row["sha256"] for row in known.values() if row.get("sha256")]
        sigs = self._load_sigs(shas)
        gate = asyncio.Semaphore(self.settings.in_flight)
        rows: list[dict[str, Any]] = []
        new_sigs: list[ImageSignature] = []

        async def one(ref: str) -> None:
            async with gate:
                try:
                    sig, row = await self._one(ref, known.get(_cache_key(ref)), sigs, via[ref])
                    if row is None:  # fresh in the store: no request, nothing to record
                        self.results[ref] = sig
                        self.shas[ref] = sig.sha256
                        return
                    if sig.sha256 not in sigs:
                        sigs[sig.sha256] = sig
                        new_sigs.append(sig)
                    self.results[ref] = sig
                    self.shas[ref] = sig.sha256
                except ImageProblem as e:
                    self.results[ref] = e.reason
                    self.stats["failed"] += 1
                    row = {"url": _cache_key(ref), "error": e.reason}
                rows.append(row)

        await asyncio.gather(*(one(r) for r in todo))
        if self.store is not None:
            self.store.put_image_signatures((s.sha256, ALGO_VERSION, s.to_dict())
                                            for s in new_sigs)
            self.store.put_image_urls(rows)

    def _load_sigs(self, shas: list[str]) -> dict[str, ImageSignature]:
        if not self.store or not shas:
            return {}
        out = {}
        for sha, d in self.store.image_signatures(shas, ALGO_VERSION).items():
            s = ImageSignature.from_dict(d)
            if s is not None:
                out[sha] = s
        return out

    async def _one(self, ref: str, prev: Mapping[str, Any] | None,
                   sigs: dict[str, ImageSignature], fetcher: Any
                   ) -> tuple[ImageSignature, dict[str, Any]]:
        if not _is_url(ref):
            return await self._local(ref, prev, sigs)
        headers = {}
        cached = sigs.get(prev["sha256"]) if prev and prev.get("sha256") else None
        if cached is not None and _fresh(prev.get("fetched_at"), self.settings.revalidate_hours):
            self.stats["cached"] += 1
            return cached, None
        if cached is not None:
            if prev.get("etag"):
                headers["If-None-Match"] = prev["etag"]
            if prev.get("last_modified"):
                headers["If-Modified-Since"] = prev["last_modified"]
        not_modified = {"url": ref, "etag": prev and prev.get("etag"), "sha256": cached
                        and cached.sha256, "last_modified": prev and prev.get("last_modified")}
        try:
            # protocol-relative URLs (Shopify writes them) are fetched over https
            resp = await fetcher.get("https:" + ref if ref.startswith("//") else ref,
                                     headers=headers or None)
        except FetchError as e:
            # auditor.http (as of this writing) takes a bare 304 for a redirect
            # without Location; it still means "not modified".
            if e.status == 304 and cached is not None:
                self.stats["not_modified"] += 1
                return cached, not_modified
            raise ImageProblem(f"fetch failed: {e.reason}") from None
        if resp.status == 304 and cached is not None:
            self.stats["not_modified"] += 1
            return cached, not_modified
        row = {"url": ref, "etag": resp.headers.get("etag"),
               "last_modified": resp.headers.get("last-modified")}
        if resp.status != 200:
            raise ImageProblem(f"HTTP {resp.status}")
        self.stats["fetched"] += 1
        ctype = (resp.headers.get("content-type") or "").split(";")[0].strip().lower()
        body = resp.body or b""
        if ctype and not ctype.startswith(_ACCEPTED_TYPES):
            raise ImageProblem(f"not an image: content-type {ctype}")
        if len(body) > self.settings.max_bytes:
            raise ImageProblem(f"image of {len(body)} bytes exceeds max_bytes "
                               f"({self.settings.max_bytes})")
        sig = await self._hash(body, sigs)
        row["sha256"] = sig.sha256
        return sig, row

    async def _local(self, path: str, prev: Mapping[str, Any] | None,
                     sigs: dict[str, ImageSignature]) -> tuple[ImageSignature, dict[str, Any]]:
        p = Path(path)
        try:
            st = p.stat()
        except OSError as e:
            raise ImageProblem(f"cannot read {path}: {e.strerror or e}") from None
        stamp = f"{st.st_size}-{st.st_mtime_ns}"
        row = {"url": _cache_key(path), "etag": stamp}
        if prev and prev.get("etag") == stamp and prev.get("sha256") in sigs:
            self.stats["cached"] += 1
            row["sha256"] = prev["sha256"]
            return sigs[prev["sha256"]], row
        if st.st_size > self.settings.max_bytes:
            raise ImageProblem(f"{path}: {st.st_size} bytes exceeds max_bytes "
                               f"({self.settings.max_bytes})")
        data = await asyncio.get_running_loop().run_in_executor(self.executor, p.read_bytes)
        sig = await self._hash(data, sigs)
        row["sha256"] = sig.sha256
        return sig, row

    async def _hash(self, data: bytes, sigs: dict[str, ImageSignature]) -> ImageSignature:
        sha = hashlib.sha256(data).hexdigest()
        if sha not in sigs:  # the same content under another URL, hashed before
            sigs.update(self._load_sigs([sha]))
        if sha in sigs:
            self.stats["cached"] += 1
            return sigs[sha]
        if not data:
            raise ImageProblem("empty body (zero bytes)")
        loop = asyncio.get_running_loop()
        img, size, fmt = await loop.run_in_executor(self.executor, decode, data,
                                                    self.settings.max_pixels)
        sig = await loop.run_in_executor(self.executor, signature_of, img, sha, size, fmt)
        self.stats["hashed"] += 1
        return sig


def _fresh(fetched_at: str | None, hours: float) -> bool:
    """Whether a fetch recorded at ``fetched_at`` is younger than ``hours``."""
    if not fetched_at or hours <= 0:
        return False
    try:
        then = datetime.fromisoformat(fetched_at)
    except ValueError:
        return False
    return datetime.now(timezone.utc) - then < timedelta(hours=hours)


def _is_url(ref: str) -> bool:
    return ref.lower().startswith(("http://", "https://", "//"))


def _cache_key(ref: str) -> str:
    return ref if _is_url(ref) else "file:" + ref


# --------------------------------------------------------------------------- run-level work

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


class ImageRun:
    """Image work for one run: master assets once, each channel's listings in batches.

    Channels share the results, so an image used by several channels (and the
    master assets) is fetched and hashed once per run.
    """

    def __init__(self, store: Any, master: Mapping[str, Any], http_options: Mapping[str, Any],
                 base_dir: Path, now: datetime, check_options: Mapping[str, Any] | None = None):
        self.store = store
        self.master = master
        self.http_options = http_options
        self.base_dir = base_dir
        self.now = now
        self.opts = dict(check_options or {})
        self._runner: asyncio.Runner | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._resolver = ImageResolver(store, FetchSettings(
            int(self.opts.get("max_bytes", DEFAULT_MAX_BYTES)),
            int(self.opts.get("max_pixels", DEFAULT_MAX_PIXELS)),
            revalidate_hours=float(self.opts.get("revalidate_hours", 24.0))))
        self._fetchers: dict[Any, Any] = {}
        self.assets: dict[str, tuple[str, ...]] | None = None
        self.view: ImageView | None = None
        self._recorded: set[str] = set()
        self._indexed = False
        self._in_index: set[str] = set()

    # -- plumbing
    def _start(self) -> None:
        if self._runner is None:
            import os

            self._runner = asyncio.Runner()
            self._executor = ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1),
                                                thread_name_prefix="image-hash")
            self._resolver.executor = self._executor

    def _fetcher(self, policy: Any) -> Any:
        from auditor.http import Fetcher

        key = (tuple(sorted(policy.allow_hosts)), policy.allow_private)
        f = self._fetchers.get(key)
        if f is None:
            policy.max_body_bytes = min(policy.max_body_bytes, self._resolver.settings.max_bytes)
            f = self._fetchers[key] = Fetcher(policy)
            self._runner.run(f.__aenter__())
        return f

    def close(self) -> None:
        """Close the HTTP clients, the event loop and the hashing threads."""
        if self._runner is None:
            return
        log.info("images: %s", ", ".join(f"{k} {v}" for k, v in self.stats.items()))
        for f in self._fetchers.values():
            self._runner.run(f.__aexit__(None, None, None))
        self._runner.close()
        self._executor.shutdown(wait=True)
        self._runner = None

    @property
    def stats(self) -> dict[str, int]:
        """Counts of fetched, not-modified, hashed, cached and failed images this run."""
        return dict(self._resolver.stats)

    # -- master side
    def master_assets(self) -> dict[str, tuple[str, ...]]:
        """Each SKU's image refs, primary first: DAM files, else the record's URLs."""
        if self.assets is None:
            source = self.opts.get("master_images", "auto")
            dam: dict[str, tuple[str, ...]] = {}
            if source in ("auto", "dam") and self.opts.get("dam_dir"):
                d = Path(self.opts["dam_dir"]).expanduser()
                d = d if d.is_absolute() else self.base_dir / d
                mp = self.opts.get("dam_mapping")
                mpath = None if not mp else (Path(mp) if Path(mp).is_absolute()
                                             else self.base_dir / mp)
                if d.is_dir():
                    dam = dam_assets(d, self.master, mpath)
                else:
                    log.error("images: dam_dir %s is not a folder", d)
            self.assets = {}
            for sku, rec in self.master.items():
                refs = dam.get(sku) or (() if source == "dam" else tuple(rec.images))
                if refs:
                    self.assets[sku] = refs
            hist = self.store.master_asset_history() if self.store else {}
            # Index cells as wide as the colour threshold: neighbours cover every match.
            self.view = ImageView(self._resolver.results, self.assets, {}, {},
                                  PrimaryIndex(Thresholds.from_options(self.opts).colour))
            self._load_history(hist)
        return self.assets

    def _load_history(self, hist: Mapping[str, list[dict[str, Any]]]) -> None:
        assert self.view is not None
        shas = [r["sha256"] for rows in hist.values() for r in rows]
        sigs = self._resolver._load_sigs(shas)
        self.view.signatures.update(sigs)  # type: ignore[attr-defined]
        for sku, rows in hist.items():
            self.view.history[sku] = [("sha256:" + r["sha256"], r["valid_to"], r["slot"])  # type: ignore[index]
                                      for r in rows if r["sha256"] in sigs]

    def _master_policy(self) -> Any:
        from auditor.http import FetchPolicy

        return FetchPolicy.from_config(self.http_options, {}, [])

    def _resolve_masters(self, skus: Iterable[str], slots: bool = True,
                         also: tuple[list[str], Any] | None = None) -> None:
        """Fetch and hash these SKUs' images (all slots, or primaries only).

        Their primaries join the lookup of other SKUs' images; with all slots,
        the slots' contents are noted in the master asset history. ``also``
        (refs, fetcher) are fetched in the same go, so the two overlap.
        """
        self._start()
        assets = self.master_assets()
        wanted = [s for s in skus if s in assets]
        refs = [r for sku in wanted for r in (assets[sku] if slots else assets[sku][:1])]
        groups = [(refs, self._fetcher(self._master_policy()))] + ([also] if also else [])
        self._runner.run(self._resolver.resolve_groups(groups))
        for sku in wanted:
            sig = self._resolver.results.get(assets[sku][0])
            if sku not in self._in_index and isinstance(sig, ImageSignature):
                self._in_index.add(sku)
                self.view.primaries.add(sku, sig)
        if slots and self.store is not None:
            new = [s for s in wanted if s not in self._recorded]
            self._recorded.update(new)
            res = self._resolver.shas
            if self.store.record_master_assets(
                    {s: [(r, res.get(r)) for r in assets[s]] for s in new}, self.now):
                self._load_history(self.store.master_asset_history(new))

    def index_primaries(self) -> None:
        """Hash every master's primary once per run, for "shows the image of SKU X"."""
        if not self._indexed:
            self._indexed = True
            self._resolve_masters(list(self.master_assets()), slots=False)

    # -- channel side
    def prepare(self, pairs: list[tuple[Any, Any]], policy: Any, index_all: bool = True
                ) -> ImageView | None:
        """Fetch and hash a batch's listing images and their masters' assets.

        Returns the view the image check reads. A batch that shows no image at
        all fetches nothing (its masters' image lists still tell "missing image").
        """
        self.master_assets()
        if not any(li is not None and li.images for _, li in pairs):
            return self.view
        self._start()
        if index_all:
            self.index_primaries()
        urls = [u for _, li in pairs if li is not None for u in li.images]
        self._resolve_masters({m.sku for m, _ in pairs if m is not None},
                              also=(urls, self._fetcher(policy)))
        return self.view


class ChannelImages:
    """The runner's preparation step for one channel: batch, fetch and hash, then check.

    ``add`` holds listings back until a batch is full; ``flush`` prepares the
    batch's images and hands each pair to the checks, with the view set in the
    image check's context.
    """

    def __init__(self, run: ImageRun, ctx: Any, policy: Any):
        self.run = run
        self.ctx = ctx  # the image check's CheckContext
        self.policy = policy
        self.batch_size = max(1, int(ctx.options.get("batch_size", 200)))
        self.pending: list[tuple[Any, Any, Any]] = []

    def add(self, master: Any, listing: Any, run_checks: Any, link: Any = None) -> None:
        """Queue one linked (or unlinked) listing; checks run when its batch is prepared."""
        self.pending.append((master, listing, link))
        if len(self.pending) >= self.batch_size:
            self.flush(run_checks)

    def flush(self, run_checks: Any) -> None:
        """Prepare the queued batch's images, then run every check on it."""
        batch, self.pending = self.pending, []
        if not batch:
            return
        try:
            view = self.run.prepare([(m, li) for m, li, _ in batch], self.policy,
                                    bool(self.ctx.options.get("index_all_masters", True)))
            self.ctx.extras["images"] = view
            self.ctx.extras.pop("images_error", None)
        except Exception as e:  # the image step must never take the channel down
            log.exception("channel %s: image preparation failed", self.ctx.channel)
            self.ctx.extras["images"] = None
            self.ctx.extras["images_error"] = f"{e.__class__.__name__}: {e}"
        for m, li, link in batch:
            run_checks(m, li, link)
