"""Reading delimited text robustly: encodings, sniffed delimiters, line numbers."""

from __future__ import annotations

import csv
import io
import sys
from typing import IO, Callable, Iterator

from auditor.sources import SourceFile, detect_encoding

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

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
                  on_error: Callable[[str, str], None]) -> Iterator[str]:
    for n, line in enumerate(raw, 1):
        try:
            yield line.decode(encoding)
        except UnicodeDecodeError as e:
            on_error(f"{name}:{n}", f"bytes not valid {encoding} at column {e.start + 1} "
                                    f"(set encoding = \"auto\" or the file's real encoding)")
            yield line.decode(encoding, errors="replace")


def open_rows(sf: SourceFile, encoding: str = "auto", delimiter: str = "auto",
              on_error: Callable[[str, str], None] | None = None
              ) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header and an iterator of (line number, cells) for a delimited file.

    With ``encoding = "auto"`` bytes are read as UTF-8 (BOM stripped) with a
    Windows-1252 fallback per byte; with an explicit encoding undecodable lines
    are reported through ``on_error`` with their line numbers.
    """
    raw = sf.open_binary()
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw, 1 << 16)  # type: ignore[arg-type]
    sample_bytes = buffered.peek(1 << 16)[: 1 << 16]
    enc = detect_encoding(sample_bytes) if encoding == "auto" else encoding
    if encoding == "auto" or on_error is None:
        errors = "auditor-cp1252" if enc.startswith("utf-8") else "replace"
        text: Iterator[str] = io.TextIOWrapper(buffered, encoding=enc, errors=errors, newline="")
    else:
        text = _strict_lines(buffered, enc, sf.name, on_error)
    sample = sample_bytes.decode(enc if enc != "utf-8-sig" else "utf-8-sig", errors="replace")
    if sample.startswith("\ufeff"):
        sample = sample[1:]
    delim = sniff_delimiter(sample) if delimiter == "auto" else _delim(delimiter)
    reader = csv.reader(text, delimiter=delim, strict=False)
    try:
        header = next(reader)
    except StopIteration:
        return [], iter(())
    if header and header[0].startswith("\ufeff"):
        header[0] = header[0][1:]
    header = [h.strip() for h in header]

    def rows() -> Iterator[tuple[int, list[str]]]:
        last = reader.line_num
        try:
            for cells in reader:
                start = last + 1
                last = reader.line_num
                if not cells or (len(cells) == 1 and not cells[0].strip()):
                    continue
                yield start, cells
        except csv.Error as e:
            if on_error:
                on_error(f"{sf.name}:{last + 1}", f"CSV syntax error: {e}")
        finally:
            raw.close()

    return header, rows()


def _delim(d: str) -> str:
    return {"\\t": "\t", "tab": "\t", "TAB": "\t"}.get(d, d)
