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
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator, Mapping

from auditor.errors import FetchError, SourceError
from auditor import http

# Bytes that are not valid UTF-8 are read as Windows-1252: a UTF-8 file decodes
# exactly, and a legacy export (or one legacy row in a UTF-8 file) still reads right.


def _cp1252_fallback(err: UnicodeError) -> tuple[str, int]:
    if not isinstance(err, UnicodeDecodeError):  # registered for decoding only
        raise err
    bad = err.object[err.start:err.end]
    return bad.decode("cp1252", errors="replace"), err.end


codecs.register_error("auditor-cp1252", _cp1252_fallback)

_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))


def is_url(source: str) -> bool:
    """Whether a source is an http(s) URL rather than a path or glob."""
    return source.lower().startswith(("http://", "https://"))


# Bounds on what one source may make the auditor read (a hostile or broken feed:
# a gzip of one endless line, a 100 MB CSV row). Generous: real feeds never come near.
DEFAULT_MAX_SOURCE_BYTES = 5_000_000_000   # decompressed bytes of one file
DEFAULT_MAX_LINE_LENGTH = 1_048_576        # characters of one physical line (delimited text)
DEFAULT_MAX_FIELD_LENGTH = 131_072         # characters of one cell of a delimited file
# Real feeds compress 5-20x; a compression bomb about 1000x. Past RATIO_FROM bytes a
# file that grew more than this many times its compressed size is refused.
DEFAULT_MAX_COMPRESSION_RATIO = 100
RATIO_FROM = 16 << 20


@dataclass(frozen=True)
class Limits:
    """How much of a source may be read: decompressed bytes, line and field lengths.

    Past any of them the source fails with a SourceError saying which limit and
    where, after reading at most a little more than the limit.
    """

    max_bytes: int = DEFAULT_MAX_SOURCE_BYTES
    max_line: int = DEFAULT_MAX_LINE_LENGTH
    max_field: int = DEFAULT_MAX_FIELD_LENGTH
    max_ratio: int = DEFAULT_MAX_COMPRESSION_RATIO  # 0: no ratio check

    @classmethod
    def from_options(cls, opts: Mapping[str, Any]) -> "Limits":
        """Limits from a channel's or the master's options (missing keys: defaults)."""
        def get(key: str, default: int) -> int:
            v = opts.get(key)
            return default if v is None else int(v)
        return cls(get("max_source_bytes", DEFAULT_MAX_SOURCE_BYTES),
                   get("max_line_length", DEFAULT_MAX_LINE_LENGTH),
                   get("max_field_length", DEFAULT_MAX_FIELD_LENGTH),
                   get("max_compression_ratio", DEFAULT_MAX_COMPRESSION_RATIO))


@dataclass
class SourceFile:
    """One file of a source: ``name`` for messages (path or URL), ``path`` on disk."""

    name: str
    path: Path
    limits: Limits = field(default_factory=Limits)

    def open_binary(self) -> IO[bytes]:
        """The decompressed byte stream (gzip and single-member zip undone), at most
        ``limits.max_bytes`` long: reading past it raises SourceError."""
        return open_decompressed(self.path, self.name, self.limits.max_bytes,
                                 self.limits.max_ratio)

    def open_text(self, encoding: str = "auto") -> IO[str]:
        """The decoded text stream; ``auto`` detects BOMs and UTF-8/Windows-1252."""
        return decode_stream(self.open_binary(), encoding, self.name)

    def head(self, n: int = 4096) -> bytes:
        """The first ``n`` decompressed bytes."""
        with self.open_binary() as f:
            return f.read(n)

    def kind(self) -> str:
        """xml, html, json, xlsx, empty or text (see ``sniff_kind``)."""
        if is_xlsx(self.path):
            return "xlsx"
        return sniff_kind(self.head(2048))


class _Guarded(io.RawIOBase):
    """A decompressing stream whose read errors become SourceError naming the file.

    A truncated gzip or a corrupt zip member only shows when its end is read,
    deep inside a parser: the parser must not mistake it for the end of the feed.
    """

    def __init__(self, inner: IO[bytes] | io.BufferedIOBase, name: str, closers: tuple = (),
                 max_bytes: int | None = None, max_ratio: int = 0,
                 compressed: Any = None):
        self._inner, self._name, self._closers = inner, name, closers
        self._left = max_bytes
        self._max = max_bytes
        # ``compressed()``: compressed bytes consumed so far (for the ratio check).
        self._ratio, self._compressed = max_ratio, compressed
        self._out = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        try:
            data = self._inner.read(len(b))
        except (EOFError, OSError, zlib.error, zipfile.BadZipFile) as e:
            raise SourceError(self._name, f"cannot read compressed data (truncated or "
                                          f"corrupt archive): {e}") from None
        n = len(data)
        if self._left is not None:
            self._left -= n
            if self._left < 0:
                raise SourceError(self._name, f"decompresses to more than max_source_bytes "
                                              f"({self._max:,} bytes); a compression bomb or "
                                              f"a larger feed than allowed (raise "
                                              f"max_source_bytes if it is real)")
        self._out += n
        if self._ratio and self._compressed is not None and self._out > RATIO_FROM:
            packed = max(self._compressed(), 1)
            if self._out > self._ratio * packed:
                raise SourceError(self._name, f"{packed:,} compressed bytes grew to "
                                              f"{self._out:,} (over max_compression_ratio "
                                              f"{self._ratio}:1); a compression bomb, not a "
                                              f"feed")
        b[:n] = data
        return n

    def close(self) -> None:
        if not self.closed:
            self._inner.close()
            for c in self._closers:
                c.close()
        super().close()


def open_decompressed(path: Path, name: str, max_bytes: int | None = None,
                      max_ratio: int = 0) -> IO[bytes]:
    """The file's bytes with gzip or zip undone; OOXML (xlsx) files stay as they are.

    With ``max_bytes``, a file (or its decompressed content) longer than that
    raises SourceError when read past it, or at once when its size says so.
    """
    if max_bytes is not None:
        try:
            size = path.stat().st_size
        except OSError:
            size = 0
        if size > max_bytes:
            raise SourceError(name, f"file of {size:,} bytes exceeds max_source_bytes "
                                    f"({max_bytes:,} bytes)")
    f = open(path, "rb")
    magic = f.read(4)
    f.seek(0)
    if magic[:2] == b"\x1f\x8b":
        return io.BufferedReader(_Guarded(gzip.GzipFile(fileobj=f, mode="rb"), name, (f,),
                                          max_bytes, max_ratio, f.tell), 1 << 16)
    if magic == b"PK\x03\x04" and not name.lower().endswith((".xlsx", ".xlsm")):
        try:
            zf = zipfile.ZipFile(f)
        except zipfile.BadZipFile as e:
            f.close()
            raise SourceError(name, f"broken zip archive: {e}") from None
        names = set(zf.namelist())
        if "[Content_Types].xml" in names:  # an xlsx/docx downloaded without its suffix
            zf.close()
            f.seek(0)
            return f
        members = [m for m in zf.infolist() if not m.is_dir()
                   and not m.filename.startswith(("__MACOSX/", "."))]
        if not members:
            f.close()
            raise SourceError(name, "zip archive holds no file")
        # The largest member is the export; others are readme files and the like.
        member = max(members, key=lambda m: m.file_size)
        where = f"{name}!{member.filename}"
        if max_bytes is not None and member.file_size > max_bytes:
            zf.close()
            f.close()
            raise SourceError(where, f"zip member of {member.file_size:,} bytes exceeds "
                                     f"max_source_bytes ({max_bytes:,} bytes)")
        if max_ratio and member.file_size > RATIO_FROM \
                and member.file_size > max_ratio * max(member.compress_size, 1):
            zf.close()
            f.close()
            raise SourceError(where, f"zip member of {member.compress_size:,} bytes unpacks to "
                                     f"{member.file_size:,} (over max_compression_ratio "
                                     f"{max_ratio}:1); a compression bomb, not a feed")
        return io.BufferedReader(_Guarded(zf.open(member), where, (zf, f), max_bytes), 1 << 16)
    return f


def is_xlsx(path: Path) -> bool:
    """Whether a file is an Office Open XML workbook (by content, not by name)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.startswith("xl/") for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def sniff_kind(head: bytes) -> str:
    """What the first bytes of a (decompressed) file look like.

    One of ``xml``, ``html``, ``json``, ``xlsx``, ``empty`` or ``text``.
    """
    s = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if s.startswith(b"\xff\xfe") or s.startswith(b"\xfe\xff"):
        s = s.decode("utf-16", errors="replace").encode("utf-8").lstrip(b" \t\r\n")
    if not s:
        return "empty"
    low = s[:512].lower()
    if low.startswith(b"pk\x03\x04"):
        return "xlsx"
    if low.startswith((b"<!doctype html", b"<html")) or (
            low.startswith(b"<") and b"<html" in low and b"<rss" not in low
            and b"<feed" not in low):
        return "html"
    if low.startswith(b"<"):
        return "xml"
    if low.startswith((b"{", b"[")):
        return "json"
    return "text"


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
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw, 1 << 16)  # type: ignore[type-var]  # any byte stream will do
    if encoding == "auto":
        sample = buffered.peek(1 << 16)[: 1 << 16]
        encoding = detect_encoding(sample)
    errors = "auditor-cp1252" if encoding in ("utf-8", "utf-8-sig") else "replace"
    try:
        return io.TextIOWrapper(buffered, encoding=encoding, errors=errors, newline="")
    except LookupError:
        raise SourceError(name, f"unknown encoding {encoding!r}") from None


def bounded_lines(text: IO[str], max_line: int, name: str) -> Iterator[str]:
    """The lines of a text stream, each at most ``max_line`` characters (line end aside).

    A longer line raises SourceError naming the file and line after reading at
    most ``max_line + 1`` characters of it: a feed of one endless line costs
    bounded memory and time.
    """
    readline = text.readline
    limit = max_line + 1
    n = 0
    while True:
        line = readline(limit)
        if not line:
            return
        n += 1
        if len(line) == limit and line[-1] not in "\r\n":
            raise SourceError(f"{name}:{n}", f"line longer than max_line_length "
                                             f"({max_line:,} characters); not a delimited "
                                             f"feed, or a broken one")
        yield line


@contextlib.contextmanager
def resolve(source: str, base_dir: Path, policy: http.FetchPolicy | None = None,
            headers: Mapping[str, str] | None = None, auth: tuple[str, str] | None = None,
            all_files: bool = False, limits: Limits | None = None) -> Iterator[list[SourceFile]]:
    """The files a source names; downloaded ones are deleted afterwards.

    A glob yields its newest match (or all matches, oldest first, with
    ``all_files``). Raises SourceError when nothing can be read. ``limits``
    bound what reading each file may cost (defaults: ``Limits()``).
    """
    limits = limits or Limits()
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
            yield [SourceFile(source, resp.path, limits)]
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
            yield [SourceFile(str(p), p, limits) for p in chosen]
            return
        if not path.exists():
            raise SourceError(str(path), "file not found")
        if not path.is_file():
            raise SourceError(str(path), "not a file")
        yield [SourceFile(str(path), path, limits)]
    finally:
        for t in temps:
            t.unlink(missing_ok=True)
