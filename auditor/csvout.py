"""CSV written for people: cells a spreadsheet would run as formulas are neutralised.

A title from a channel such as ``=HYPERLINK("http://evil.example", "click")`` or
``@SUM(1+1)*cmd|' /C calc'!A0`` runs as a formula when the CSV is opened in
Excel, LibreOffice or Google Sheets (CSV injection). As OWASP recommends, a
cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
(or a line feed) gets a single quote in front, and every cell is quoted as
CSV requires (the ``csv`` module doubles embedded quotes). Plain numbers
such as ``-12.50`` or ``+49`` are left as they are: they are data, not formulas.
Control characters other than tab and line ends (a terminal's escape sequences) are
dropped: ``--format csv`` is printed to terminals too.
"""

from __future__ import annotations

import csv
import re
from typing import IO, Any, Iterable, Mapping, Sequence

FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
_NUMBER = re.compile(r"[+-]?(\d+([.,]\d+)*|\d*[.,]\d+)([eE][+-]?\d+)?")
# Control characters but tab and line ends: a channel's ESC sequences would colour, rewrite
# or hyperlink the terminal `auditor ... --format csv` prints to (and mean nothing in a sheet).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def neutralise(value: Any) -> Any:
    """``value`` safe to open in a spreadsheet (a formula-like string gets a leading ')
    and to print (control characters but tab and line ends dropped)."""
    if isinstance(value, str):
        value = _CONTROL.sub("", value)
        if value.startswith(FORMULA_START) and not _NUMBER.fullmatch(value):
            return "'" + value
    return value


def write_rows(out: IO[str], columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """A header and one line per row (extra keys ignored), every cell neutralised."""
    w = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore",
                       quoting=csv.QUOTE_ALL)
    w.writeheader()
    for r in rows:
        w.writerow({k: neutralise(v) for k, v in r.items()})
