"""Reading delimited text robustly: encodings, sniffed delimiters, line numbers."""

from __future__ import annotations

import codecs
import csv
import functools
import io
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Generator, Iterable, Iterator

from auditor.errors import SourceError
from auditor.sources import SourceFile, detect_encoding

CANDIDATES = ",;\t|"


def sniff_delimiter(sample: str, candidates: str = CANDIDATES) -> str:
    """The delimiter of a CSV sample: csv.Sniffer, then the most frequent in the header."""
    header = sample.split("\n", 1)[0]
    try:
        d = csv.Sniffer().sniff(sample[:65536], delimiters=candidates).delimiter
        if d in header:
            return d
    except csv.Error:
        pass
    counts = {c: header.count(c) for c in candidates}
    best = max(counts, key=counts.get)  # type: ignore[arg-type]
    return best if counts[best] else ","


def _strict_lines(raw: IO[bytes], encoding: str, name: str,
                  on_error: Callable[[str, str], None], max_line: int) -> Iterator[str]:
    n = 0
    while True:
        line = raw.readline(max_line + 1)
        if not line:
            return
        n += 1
        if len(line) == max_line + 1 and line[-1:] not in (b"\n", b"\r"):
            raise SourceError(f"{name}:{n}", f"line longer than max_line_length "
                                             f"({max_line:,} bytes); not a delimited feed, "
                                             f"or a broken one")
        try:
            yield line.decode(encoding)
        except UnicodeDecodeError as e:
            on_error(f"{name}:{n}", f"bytes not valid {encoding} at column {e.start + 1} "
                                    f"(set encoding = \"auto\" or the file's real encoding)")
            yield line.decode(encoding, errors="replace")


# A quoted field may hold line breaks (descriptions do), but a record running on
# for this many physical lines is an unbalanced quote eating the rows after it.
MAX_RECORD_LINES = 5000


class _LineFeed:
    """The physical lines of a text stream, numbered, with push-back.

    csv.reader pulls lines from ``lines()``; the lines of the record being read
    are kept in ``buf`` so that a record spoiled by an unbalanced quote can be
    re-read line by line. A record running on past ``max_lines`` ends the
    generator early (``runaway``) so the reader stops swallowing the file.
    """

    __slots__ = ("_text", "back", "buf", "n", "max_lines", "runaway", "max_line", "name",
                 "stop", "stopped")

    def __init__(self, text: Iterable[str], max_lines: int = MAX_RECORD_LINES,
                 max_line: int = 0, name: str = "", stop: Callable[[], bool] | None = None,
                 n: int = 0):
        self._text = iter(text)
        self.back: list[tuple[int, str]] = []
        self.buf: list[tuple[int, str]] = []
        self.n = n
        self.max_lines = max_lines
        self.runaway = False
        # With max_line, ``text`` yields lines cut at max_line + 1 characters
        # (readline's size): a cut line (no line end) is a line over the limit.
        self.max_line = max_line
        self.name = name
        # ``stop`` is asked before the first line of each record is read from the
        # stream (nothing pushed back): True ends the lines there (``stopped``), at a
        # record's start. A reader of part of a file (``RowsAt``) stops so.
        self.stop = stop
        self.stopped = False

    def lines(self) -> Generator[str, None, None]:
        """Pushed-back lines first, then the stream; a generator (the hot path)."""
        back, buf, mx = self.back, self.buf, self.max_lines
        self.runaway = False
        while back:
            item = back.pop()
            buf.append(item)
            if len(buf) > mx:
                self.runaway = True
                return
            yield item[1]
        n = self.n
        cap = self.max_line
        if self.stop is not None:
            yield from self._lines_until(buf, mx)
            return
        try:
            for line in self._text:
                n += 1
                if cap and len(line) > cap and line[-1] not in "\r\n":
                    raise SourceError(f"{self.name}:{n}", f"line longer than max_line_length "
                                                          f"({cap:,} characters); not a "
                                                          f"delimited feed, or a broken one")
                buf.append((n, line))
                if len(buf) > mx:
                    self.runaway = True
                    return
                yield line
        finally:
            self.n = n

    def _lines_until(self, buf: list[tuple[int, str]], mx: int) -> Generator[str, None, None]:
        """``lines()`` from the stream, asking ``stop`` at each record's start."""
        n, stop, text = self.n, self.stop, self._text
        assert stop is not None
        try:
            while True:
                if not buf and stop():
                    self.stopped = True
                    return
                line = next(text, None)
                if line is None:
                    return
                n += 1
                buf.append((n, line))
                if len(buf) > mx:
                    self.runaway = True
                    return
                yield line
        finally:
            self.n = n

    def push_back(self, items: list[tuple[int, str]]) -> None:
        """Lines to be read again, in order, before the rest of the stream."""
        self.back.extend(reversed(items))


def _sniff(sf: SourceFile, encoding: str, delimiter: str
           ) -> tuple[IO[bytes], Any, str, str]:
    """The file opened, buffered, its encoding and its delimiter."""
    raw = sf.open_binary()
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw, 1 << 16)  # type: ignore[type-var]  # any byte stream will do
    sample_bytes = buffered.peek(1 << 16)[: 1 << 16]
    enc = detect_encoding(sample_bytes) if encoding == "auto" else encoding
    sample = sample_bytes.decode(enc if enc != "utf-8-sig" else "utf-8-sig", errors="replace")
    if sample.startswith("\ufeff"):
        sample = sample[1:]
    delim = sniff_delimiter(sample) if delimiter == "auto" else _delim(delimiter)
    return raw, buffered, enc, delim


def _errors(enc: str) -> str:
    """The decoding error handler of a file in ``enc`` read with ``encoding = "auto"``."""
    return "auditor-cp1252" if enc.startswith("utf-8") else "replace"


def open_rows(sf: SourceFile, encoding: str = "auto", delimiter: str = "auto",
              on_error: Callable[[str, str], None] | None = None, ragged: str = "keep",
              header_at: Callable[[list[str]], bool] | None = None,
              ) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header and an iterator of (line number, cells) for a delimited file.

    With ``encoding = "auto"`` bytes are read as UTF-8 (BOM stripped) with a
    Windows-1252 fallback per byte; with an explicit encoding undecodable lines
    are reported through ``on_error`` with their line numbers.

    A record broken by an unbalanced quote (it swallows following lines and has
    the wrong number of cells) is reported and its lines are read again one by
    one, so one bad quote costs one row, not the rest of the file. With
    ``ragged = "report"`` a row with more non-empty cells than the header is
    reported and skipped, and short rows are padded; ``"keep"`` yields rows as
    they are (the caller judges).

    The file's ``limits`` hold: a physical line longer than ``max_line`` or a
    cell longer than ``max_field`` characters fails the source (SourceError
    naming the line) after reading little more than the limit.

    ``header_at`` tells a header row: when the first row is not one (a title such as
    "Stock list, store 12" above the header, as spreadsheet exports write), the first of
    the next ``MAX_PREAMBLE`` rows that is becomes the header, and the rows above it
    are left out. When none is, the first row stays the header.
    """
    report = on_error or (lambda loc, reason: None)
    limits = sf.limits
    # The csv module's own guard, so a cell never grows past the limit in memory
    # (process-wide; every reader sets its file's limit before reading).
    csv.field_size_limit(min(limits.max_field, sys.maxsize))
    raw, buffered, enc, delim = _sniff(sf, encoding, delimiter)
    if encoding == "auto" or on_error is None:
        errors = _errors(enc)
        # Lines are read at most max_line + 1 characters at a time (bounded memory
        # on a file of one endless line); _LineFeed tells a cut line from a whole one.
        wrapper = io.TextIOWrapper(buffered, encoding=enc, errors=errors, newline="")
        text: Iterator[str] = iter(functools.partial(wrapper.readline, limits.max_line + 1), "")
        cap = limits.max_line
    else:
        text = _strict_lines(buffered, enc, sf.name, report, limits.max_line)
        cap = 0  # _strict_lines checks its lines itself
    feed = _LineFeed(text, MAX_RECORD_LINES, cap, sf.name)
    return _header_and_rows(feed, delim, sf.name, limits.max_field, report, ragged, raw.close,
                            header_at)


def _header_and_rows(feed: _LineFeed, delim: str, name: str, max_field: int,
                     report: Callable[[str, str], None], ragged: str, close: Callable[[], None],
                     header_at: Callable[[list[str]], bool] | None = None,
                     ) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    gen = feed.lines()
    reader = csv.reader(gen, delimiter=delim, strict=False)
    try:
        header = next(reader)
    except StopIteration:
        close()
        return [], iter(())
    except csv.Error as e:
        close()
        _field_limit(e, name, 1, max_field)
        raise SourceError(name, f"unreadable header row: {e}") from None
    except BaseException:
        close()
        raise
    if feed.runaway:
        close()
        raise SourceError(name, "unreadable header row: an unbalanced quote")
    feed.buf.clear()
    if header and header[0].startswith("\ufeff"):
        header[0] = header[0][1:]
    header = [h.strip() for h in header]
    if header_at is not None and not header_at(header):
        header = _header_below(reader, feed, header, header_at)
    return header, _rows(feed, gen, reader, header, delim, name, max_field, report, ragged, close)


# Rows above the header (titles, dates, notes) looked through for the header row.
MAX_PREAMBLE = 20


def _header_below(reader: Any, feed: _LineFeed, first: list[str],
                  header_at: Callable[[list[str]], bool]) -> list[str]:
    """The first of the next MAX_PREAMBLE rows that ``header_at`` accepts, else ``first``
    (the rows read past are then lost: the caller rejects that header anyway)."""
    for _ in range(MAX_PREAMBLE):
        try:
            row = next(reader)
        except (StopIteration, csv.Error):
            break
        feed.buf.clear()
        row = [h.strip() for h in row]
        if header_at(row):
            return row
    return first


def _rows(feed: _LineFeed, gen: Generator[str, None, None], reader: Any, header: list[str],
          delim: str, name: str, max_field: int, report: Callable[[str, str], None],
          ragged: str, close: Callable[[], None]) -> Iterator[tuple[int, list[str]]]:
    """The data rows (see ``open_rows``), read by ``reader`` from ``feed``'s lines
    (``gen``); ``close`` is called at the end."""
    width = len(header)
    report_ragged = ragged == "report"
    head0 = header[0] if header else None

    def rows() -> Iterator[tuple[int, list[str]]]:
        buf = feed.buf

        def restart(reason: str) -> None:
            nonlocal reader, gen
            gen.close()
            lines = list(buf)
            buf.clear()
            if lines:
                report(f"{name}:{lines[0][0]}", reason)
                feed.push_back(lines[1:])
            gen = feed.lines()
            reader = csv.reader(gen, delimiter=delim, strict=False)

        try:
            while True:
                try:
                    for cells in reader:
                        if len(buf) > 1 and (feed.runaway or len(cells) != width
                                             or _open_quote_at_end(buf, delim)):
                            # A quote opened and never closed: the record swallowed
                            # the lines after it. Report the first, re-read the rest.
                            restart(f"unbalanced quote: the row runs on over {len(buf)} "
                                    f"lines" + (f" with {len(cells)} cells where the header "
                                                f"has {width}" if len(cells) != width else
                                                " without its closing quote"))
                            break
                        if len(buf) == 1 and cells and (
                                cells[-1].endswith(("\n", "\r"))
                                or (not buf[0][1].endswith(("\n", "\r"))
                                    and _open_quote_at_end(buf, delim))):
                            # One line whose quote never closes, at the end of the file: the
                            # lenient reader kept its line end inside the last cell (or, the
                            # file ending without one, a strict reader says so).
                            restart("unbalanced quote: the row ends the file without its "
                                    "closing quote")
                            break
                        start = buf[0][0] if buf else feed.n
                        buf.clear()
                        if not cells or (not cells[0].strip()
                                         and not any(c.strip() for c in cells)):
                            continue  # a blank row, also one of delimiters only (;;;;)
                        if cells[0].strip() == head0 and [c.strip() for c in cells] == header:
                            continue  # the header again (files joined end to end): not data
                        if report_ragged and len(cells) != width:
                            if len(cells) > width:
                                if any(c.strip() for c in cells[width:]):
                                    report(f"{name}:{start}",
                                           f"row has {len(cells)} cells, the header {width} "
                                           f"(an unquoted delimiter inside a value?); "
                                           f"row skipped")
                                    continue
                                cells = cells[:width]
                            else:
                                cells = cells + [""] * (width - len(cells))
                        yield start, cells
                    else:
                        if feed.runaway or feed.back:
                            restart(f"unbalanced quote: a quoted field runs on for more "
                                    f"than {feed.max_lines} lines")
                            continue
                        return
                except csv.Error as e:
                    _field_limit(e, name, buf[0][0] if buf else feed.n, max_field)
                    restart(f"CSV syntax error: {e}")
        finally:
            close()

    return rows()


def _field_limit(e: csv.Error, name: str, line: int, limit: int) -> None:
    """Raise SourceError when ``e`` is the csv module's field size limit."""
    if "field larger than field limit" in str(e):
        raise SourceError(f"{name}:{line}", f"a cell longer than max_field_length "
                                            f"({limit:,} characters); the file is not read "
                                            f"further") from None


def _open_quote_at_end(buf: list[tuple[int, str]], delim: str) -> bool:
    """Whether a multi-line record's lines end inside a quoted field.

    The lenient reader accepts a quote left open until the end of the file (or
    of the line budget) as one long field; when the header has few columns the
    cell count can even come out right. Only multi-line records are checked.
    """
    try:
        for _ in csv.reader((line for _, line in buf), delimiter=delim, strict=True):
            pass
    except csv.Error as e:
        return "unexpected end of data" in str(e)
    return False


def _delim(d: str) -> str:
    return {"\\t": "\t", "tab": "\t", "TAB": "\t"}.get(d, d)


# ------------------------------------------------------------------ reading a file in parts

class Unsplittable(Exception):
    """The file cannot be read in parts exactly as ``open_rows`` reads it whole (a line
    over the length limit, a line break other than the bytes CR and LF): read it whole."""


# Encodings in which every line break is the byte LF or CR, and no character holds those
# bytes otherwise: a byte offset just after one is the start of a line.
_SPLITTABLE = re.compile(r"(utf[-_]?8(_sig|-sig)?|ascii|latin[-_]?1|iso8859[-_]\d+|cp125\d"
                         r"|mac[-_]roman|windows[-_]125\d)")
_MAGIC = (b"\x1f\x8b", b"PK\x03\x04")  # gzip, zip: decompressed by open_binary


@dataclass
class Layout:
    """How ``open_rows`` reads a file, so that parts of it can be read the same way
    (``RowsAt``): its encoding, error handler, delimiter and, once read, header."""

    name: str
    path: Path
    size: int
    encoding: str        # as open_rows decodes it ("utf-8-sig": a BOM skipped at offset 0)
    errors: str
    strict: bool         # undecodable lines reported (an explicit encoding)
    delimiter: str
    max_line: int
    max_field: int
    header: list[str] = field(default_factory=list)


def layout(sf: SourceFile, encoding: str = "auto", delimiter: str = "auto",
           strict: bool = False) -> Layout | None:
    """The layout of ``sf`` as ``open_rows(sf, encoding, delimiter, on_error)`` reads it
    (``strict``: an ``on_error`` is given), or None when it cannot be read in parts: a
    compressed file, an encoding whose line breaks are not the bytes CR and LF, a file
    over ``max_bytes`` (read whole, it fails)."""
    path = Path(sf.path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError:
        return None
    if magic.startswith(_MAGIC) or (sf.limits.max_bytes is not None
                                    and size > sf.limits.max_bytes):
        return None
    strict = strict and encoding != "auto"
    raw, _, enc, delim = _sniff(sf, encoding, delimiter)
    raw.close()
    try:
        name = codecs.lookup(enc).name
    except LookupError:
        return None
    if not _SPLITTABLE.fullmatch(name):
        return None
    return Layout(sf.name, path, size, enc, "strict" if strict else _errors(enc), strict, delim,
                  sf.limits.max_line, sf.limits.max_field)


class ByteLines:
    """The physical lines of a file from byte ``offset`` (a line's start) on, decoded
    as ``open_rows`` decodes them, counting ``pos`` (the byte offset after the last
    line given) and ``n`` (its number, from ``n``)."""

    def __init__(self, lay: Layout, offset: int, n: int, report: Callable[[str, str], None]):
        self.lay = lay
        self.pos = offset
        self.n = n
        self.report = report
        self.f = open(lay.path, "rb")
        self.f.seek(offset)

    def __iter__(self) -> Iterator[str]:
        lay, f = self.lay, self.f
        readline = functools.partial(f.readline, lay.max_line + 1)
        enc, errors, strict, cap = lay.encoding, lay.errors, lay.strict, lay.max_line
        if not strict and enc == "utf-8-sig":
            enc = "utf-8"  # a stream's BOM is at its start only
            if self.pos == 0 and f.peek(3)[:3] == codecs.BOM_UTF8:
                f.read(3)
                self.pos = 3
        while True:
            raw = readline()
            if not raw:
                return
            if len(raw) > cap:  # open_rows cuts such a line; a whole read says what then
                raise Unsplittable(f"{lay.name}: a line of more than {cap:,} bytes")
            if strict:
                self.n += 1
                self.pos += len(raw)
                try:
                    line = raw.decode(enc)
                except UnicodeDecodeError as e:
                    self.report(f"{lay.name}:{self.n}",
                                f"bytes not valid {enc} at column {e.start + 1} "
                                f"(set encoding = \"auto\" or the file's real encoding)")
                    line = raw.decode(enc, errors="replace")
                yield line
                continue
            # open_rows reads with universal newlines: a lone CR ends a line too.
            for part in raw.splitlines(True) if b"\r" in raw else (raw,):
                self.n += 1
                self.pos += len(part)
                yield part.decode(enc, errors)

    def close(self) -> None:
        self.f.close()


class RowsAt:
    """The rows of ``lay``'s file from byte ``offset`` on, read as ``open_rows`` reads
    them, the same rows with the same line numbers and reports, provided a record
    starts at ``offset`` (line ``n`` + 1). At offset 0 the header is read first
    (``lay.header`` is set).

    ``stop(pos, n)`` is asked at each record's start (``pos``: its byte offset; ``n``:
    the number of the line before it); True ends the rows there: ``stopped`` is then
    set and ``pos`` / ``n`` say where the next record starts.
    """

    def __init__(self, lay: Layout, offset: int, n: int, report: Callable[[str, str], None],
                 stop: Callable[[int, int], bool] | None = None, ragged: str = "keep"):
        self.lines = lines = ByteLines(lay, offset, n, report)
        self.feed = feed = _LineFeed(
            lines, MAX_RECORD_LINES, 0, lay.name,
            None if stop is None else (lambda: stop(lines.pos, lines.n)), n)
        csv.field_size_limit(min(lay.max_field, sys.maxsize))
        if offset == 0:
            lay.header, self.rows = _header_and_rows(feed, lay.delimiter, lay.name,
                                                     lay.max_field, report, ragged, lines.close)
        else:
            gen = feed.lines()
            reader = csv.reader(gen, delimiter=lay.delimiter, strict=False)
            self.rows = _rows(feed, gen, reader, lay.header, lay.delimiter, lay.name,
                              lay.max_field, report, ragged, lines.close)

    @property
    def stopped(self) -> bool:
        return self.feed.stopped

    @property
    def pos(self) -> int:
        return self.lines.pos

    @property
    def n(self) -> int:
        return self.lines.n
