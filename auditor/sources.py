"""Opening a source: a path, a glob or an http(s) URL; gzip and zip undone; text decoded.

Sources are streamed from disk (a URL is first downloaded to a temporary file
through the shared client), so a feed of a million rows never sits in memory.
"""

from __future__ import annotations

import codecs
import contextlib
import glob
import gzip
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Mapping

from auditor.errors import FetchError, SourceError
from auditor import http

# Bytes that are not valid UTF-8 are read as Windows-1252: a UTF-8 file decodes
# exactly, and a legacy export (or one legacy row in a UTF-8 file) still reads right.


def _cp1252_fallback(err: UnicodeDecodeError) -> tuple[str, int]:
    bad = err.object[err.start:err.end]
    return bad.decode("cp1252", errors="replace"), err.end


codecs.register_error("auditor-cp1252", _cp1252_fallback)

_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))


def is_url(source: str) -> bool:
    return source.lower().startswith(("http://", "https://"))


@dataclass
class SourceFile:
    """One file of a source: ``name`` for messages (path or URL), ``path`` on disk."""

    name: str
    path: Path

    def open_binary(self) -> IO[bytes]:
        """The decompressed byte stream (gzip and single-member zip undone)."""
        return open_decompressed(self.path, self.name)

    def open_text(self, encoding: str = "auto") -> IO[str]:
        """The decoded text stream; ``auto`` detects BOMs and UTF-8/Windows-1252."""
        return decode_stream(self.open_binary(), encoding, self.name)

    def head(self, n: int = 4096) -> bytes:
        with self.open_binary() as f:
            return f.read(n)


def open_decompressed(path: Path, name: str) -> IO[bytes]:
    f = open(path, "rb")
    magic = f.read(4)
    f.seek(0)
    if magic[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    if magic == b"PK\x03\x04" and not name.lower().endswith((".xlsx", ".xlsm")):
        try:
            zf = zipfile.ZipFile(f)
        except zipfile.BadZipFile as e:
            f.close()
            raise SourceError(name, f"broken zip archive: {e}") from None
        members = [m for m in zf.infolist() if not m.is_dir()
                   and not m.filename.startswith(("__MACOSX/", "."))]
        if not members:
            raise SourceError(name, "zip archive holds no file")
        # The largest member is the export; others are readme files and the like.
        member = max(members, key=lambda m: m.file_size)
        return zf.open(member)  # type: ignore[return-value]
    return f


def detect_encoding(sample: bytes) -> str:
    """A codec name for text that starts with ``sample``."""
    for bom, enc in _BOMS:
        if sample.startswith(bom):
            return enc
    try:
        sample.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as e:
        if e.start >= len(sample) - 3:  # a character cut by the sample's end
            return "utf-8"
    # Not UTF-8: Windows-1252 covers Latin-1 as well; ask charset-normalizer only
    # when the bytes look like another script entirely.
    high = sum(1 for b in sample if b >= 0x80)
    if high and high / max(len(sample), 1) > 0.3:
        from charset_normalizer import from_bytes

        best = from_bytes(sample).best()
        if best is not None:
            return best.encoding
    return "cp1252"


def decode_stream(raw: IO[bytes], encoding: str, name: str) -> IO[str]:
    """Wrap a byte stream in a text stream of the right encoding."""
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw, 1 << 16)  # type: ignore[arg-type]
    if encoding == "auto":
        sample = buffered.peek(1 << 16)[: 1 << 16]
        encoding = detect_encoding(sample)
    errors = "auditor-cp1252" if encoding in ("utf-8", "utf-8-sig") else "replace"
    try:
        return io.TextIOWrapper(buffered, encoding=encoding, errors=errors, newline="")
    except LookupError:
        raise SourceError(name, f"unknown encoding {encoding!r}") from None


@contextlib.contextmanager
def resolve(source: str, base_dir: Path, policy: http.FetchPolicy | None = None,
            headers: Mapping[str, str] | None = None, auth: tuple[str, str] | None = None,
            all_files: bool = False) -> Iterator[list[SourceFile]]:
    """The files a source names; downloaded ones are deleted afterwards.

    A glob yields its newest match (or all matches, oldest first, with
    ``all_files``). Raises SourceError when nothing can be read.
    """
    temps: list[Path] = []
    try:
        if is_url(source):
            if policy is None:
                policy = http.FetchPolicy()
            try:
                resp = http.download(source, policy, headers=headers, auth=auth)
            except FetchError as e:
                raise SourceError(source, e.reason) from None
            if resp.status >= 400:
                if resp.path:
                    temps.append(resp.path)
                raise SourceError(source, f"HTTP {resp.status}")
            assert resp.path is not None
            temps.append(resp.path)
            yield [SourceFile(source, resp.path)]
            return
        path = Path(source).expanduser()
        if not path.is_absolute():
            path = base_dir / path
        if any(ch in source for ch in "*?["):
            matches = [Path(p) for p in glob.glob(str(path))]
            matches = [p for p in matches if p.is_file()]
            if not matches:
                raise SourceError(source, f"no file matches {path}")
            matches.sort(key=lambda p: (p.stat().st_mtime, p.name))
            chosen = matches if all_files else matches[-1:]
            yield [SourceFile(str(p), p) for p in chosen]
            return
        if not path.exists():
            raise SourceError(str(path), "file not found")
        if not path.is_file():
            raise SourceError(str(path), "not a file")
        yield [SourceFile(str(path), path)]
    finally:
        for t in temps:
            t.unlink(missing_ok=True)
