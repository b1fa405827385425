"""Image fetching and caching: URLs through the shared HTTP client, DAM files from disk.

The second of the three image parts. ``ImageResolver`` turns image references
into signatures (``auditor.images.signatures``) with the store's caches: a URL
with validators is fetched conditionally, a DAM file unchanged in size and
mtime is not read again, a content already hashed is not decoded again.

What may be read: an image reference is an http(s) URL, fetched within the
channel's fetch policy (the outbound guard), or a file of the master's DAM
folder, read only when its resolved path (symlinks followed) lies inside
that folder and it is a regular file. Anything else (``/dev/zero``,
``/etc/passwd``, ``file:`` URLs, ``../`` paths) is refused, never opened.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import logging
import os
import re
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

from auditor.errors import FetchError
from auditor.images.signatures import (ALGO_VERSION, DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS,
                                       NOT_A_URL, ImageProblem, ImageSignature, decode,
                                       is_image_url, signature_of)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the DAM folder

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


# FetchError reasons that say the host itself could not be reached (not one image's fault).
_UNREACHABLE = re.compile(r"ConnectError|ConnectTimeout|Name or service not known|"
                          r"nodename nor servname|No address associated|Temporary failure in "
                          r"name resolution|Network is unreachable|No route to host")


class ImageResolver:
    """Turns image references (URLs or local files) into signatures, with the store's caches.

    An unchanged image is neither downloaded nor hashed again: a URL with
    validators is fetched conditionally (a 304 reuses the stored content hash),
    a local file unchanged in size and mtime is not even read, and a content
    already hashed (by SHA-256) is not decoded again.
    """

    def __init__(self, store: Any, settings: FetchSettings,
                 executor: ThreadPoolExecutor | None = None, dam_root: Path | None = None):
        self.store = store
        self.settings = settings
        self.executor = executor
        # The master's DAM folder (resolved): the only place files are read from.
        self.dam_root = dam_root.resolve() if dam_root is not None else None
        self.results: dict[str, ImageSignature | str] = {}
        self.shas: dict[str, str] = {}  # ref -> content sha256, for the asset history
        self.stats = {"fetched": 0, "not_modified": 0, "hashed": 0, "cached": 0, "failed": 0}
        # Hosts that could not be reached at all (connection refused, no such host, connect
        # timeouts) after the client's retries: their other images are not tried in this
        # resolver (a run), so a shop that is down costs one retry cycle, not one per image.
        self.down: dict[str, str] = {}

    async def resolve(self, refs: Iterable[str], fetcher: Any) -> None:
        """Fill ``results`` for every ref not resolved yet in this run."""
        await self.resolve_groups([(refs, fetcher)])

    async def resolve_groups(self, groups: Iterable[tuple[Iterable[str], Any]]) -> None:
        """Like ``resolve`` for several (refs, fetcher) groups at once; a ref is fetched once.

        Refs that are not URLs are read from the DAM folder only (``dam_path``);
        the preparation passes a channel's listing refs only when they are URLs.
        """
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
                   ) -> tuple[ImageSignature, dict[str, Any] | None]:
        if not _is_url(ref):
            return await self._local(self.dam_path(ref), prev, sigs)
        headers = {}
        cached = sigs.get(prev["sha256"]) if prev and prev.get("sha256") else None
        if cached is not None and prev and _fresh(prev.get("fetched_at"),
                                                  self.settings.revalidate_hours):
            self.stats["cached"] += 1
            return cached, None
        if cached is not None and prev:
            if prev.get("etag"):
                headers["If-None-Match"] = prev["etag"]
            if prev.get("last_modified"):
                headers["If-Modified-Since"] = prev["last_modified"]
        not_modified = {"url": ref, "etag": prev and prev.get("etag"), "sha256": cached
                        and cached.sha256, "last_modified": prev and prev.get("last_modified")}
        url = "https:" + ref if ref.startswith("//") else ref
        host = urlsplit(url).netloc.lower()
        if host in self.down:
            raise ImageProblem(f"fetch failed: {self.down[host]} (host {host} could not be "
                               f"reached earlier in this run; not tried again)")
        try:
            # protocol-relative URLs (Shopify writes them) are fetched over https
            resp = await fetcher.get(url, headers=headers or None)
        except FetchError as e:
            if _UNREACHABLE.search(e.reason):
                self.down.setdefault(host, e.reason)
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

    def dam_path(self, ref: str) -> Path:
        """The file a non-URL image reference names, if it lies inside the DAM folder.

        The path is resolved (symlinks followed, ``..`` undone) before the
        containment check, so a link or a relative path pointing outside the
        folder is refused like any other path. ImageProblem otherwise.
        """
        if self.dam_root is None:
            raise ImageProblem(f"{NOT_A_URL[:-1]}; only files of the master's DAM folder "
                               f"(dam_dir) are read from disk)")
        try:
            p = (self.dam_root / ref).resolve()
        except (OSError, RuntimeError, ValueError) as e:
            raise ImageProblem(f"cannot resolve {ref}: {e}") from None
        if not p.is_relative_to(self.dam_root):
            raise ImageProblem(f"{ref} is outside the DAM folder {self.dam_root}; refused")
        return p

    async def _local(self, p: Path, prev: Mapping[str, Any] | None,
                     sigs: dict[str, ImageSignature]) -> tuple[ImageSignature, dict[str, Any]]:
        path = str(p)
        try:
            st = p.stat()
        except OSError as e:
            raise ImageProblem(f"cannot read {path}: {e.strerror or e}") from None
        if not stat.S_ISREG(st.st_mode):
            raise ImageProblem(f"{path} is not a regular file; refused")
        stamp = f"{st.st_size}-{st.st_mtime_ns}"
        row = {"url": _cache_key(path), "etag": stamp}
        if prev and prev.get("etag") == stamp and prev.get("sha256") in sigs:
            self.stats["cached"] += 1
            row["sha256"] = prev["sha256"]
            return sigs[prev["sha256"]], row
        if st.st_size > self.settings.max_bytes:
            raise ImageProblem(f"{path}: {st.st_size} bytes exceeds max_bytes "
                               f"({self.settings.max_bytes})")
        data = await asyncio.get_running_loop().run_in_executor(
            self.executor, _read_regular, p, self.settings.max_bytes)
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
    return is_image_url(ref)


def _read_regular(p: Path, limit: int) -> bytes:
    """At most ``limit`` + 1 bytes of a regular file, not following a symlink put in
    its place since the check (and never a device or a FIFO)."""
    fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ImageProblem(f"{p} is not a regular file; refused")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ImageProblem(f"{p}: larger than max_bytes ({limit})")
    return data


def _cache_key(ref: str) -> str:
    return ref if _is_url(ref) else "file:" + ref

