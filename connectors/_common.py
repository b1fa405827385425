"""Helpers shared by the built-in connectors (not a connector: the name starts with _)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Iterable, Iterator, Mapping

from auditor.connector import SourceContext
from auditor.errors import SourceError
from auditor.model import Listing


def dedupe(ctx: SourceContext, listings: Iterable[Listing], what: str = "id") -> Iterator[Listing]:
    """Drop repeated keys (the first wins), recording each repeat as a bad row."""
    seen: set[str] = set()  # keys only: a million locations would not fit the memory budget
    for li in listings:
        if li.key in seen:
            ctx.bad(li.evidence or li.key, f"duplicate {what} {li.key!r}; kept the first")
            continue
        seen.add(li.key)
        yield li


def header_key(h: str) -> str:
    """A header compared loosely: case, spaces, dashes and underscores ignored."""
    return re.sub(r"[\s_\-]+", "", h.strip().lower())


def map_columns(header: list[str], columns: Mapping[str, str | list[str]],
                name: str, required: tuple[str, ...] = ()) -> dict[str, int]:
    """Our field -> column index, from a map of our field -> their header(s).

    Headers match ignoring case, spaces, dashes and underscores; a field may
    list several candidate headers (report variants), the first present wins.
    Raises SourceError naming the missing required fields and the header.
    """
    return {f: idx[0] for f, idx in map_columns_all(header, columns, name, required).items()}


def map_columns_all(header: list[str], columns: Mapping[str, str | list[str]],
                    name: str, required: tuple[str, ...] = ()) -> dict[str, list[int]]:
    """Like ``map_columns``, with every present candidate column, in the map's order.

    For exports that carry a value in one of several columns (Lightspeed's UPC
    or EAN): the first non-empty one in a row wins.
    """
    index: dict[str, int] = {}
    for i, h in enumerate(header):
        index.setdefault(header_key(h), i)
    out: dict[str, list[int]] = {}
    for field, theirs in columns.items():
        found = [index[k] for cand in ([theirs] if isinstance(theirs, str) else theirs)
                 if (k := header_key(cand)) in index]
        if found:
            out[field] = list(dict.fromkeys(found))
    missing = [f for f in required if f not in out]
    if missing:
        want = ", ".join(f"{f} ({_show(columns.get(f, f))})" for f in missing)
        raise SourceError(name, f"header has no column for {want}; header is: "
                                f"{', '.join(header[:20])}"
                                f"{' ...' if len(header) > 20 else ''}")
    return out


def _show(v: Any) -> str:
    return v if isinstance(v, str) else " or ".join(v)


def listing_maker(*names: str) -> Callable[..., Listing]:
    """A positional constructor for Listing taking the fields ``names``, in that order.

    Listing's generated ``__init__`` sets each field through
    ``object.__setattr__`` (the price of ``frozen=True``) and parses keyword
    arguments; a function generated here sets the slots through their
    descriptors from positional arguments, about three times faster, which
    matters at 100,000 rows/s. Fields not named get their defaults, so a field
    added to the model is picked up; a name the model lacks fails at import.
    """
    fields = dataclasses.fields(Listing)
    known = {f.name for f in fields}
    unknown = [n for n in names if n not in known]
    if unknown or len(set(names)) != len(names):
        raise TypeError(f"listing_maker: unknown or repeated fields {unknown or names}")
    if hasattr(Listing, "__post_init__"):  # validation added to the model: honour it
        return lambda *args: Listing(**dict(zip(names, args, strict=True)))
    ns: dict[str, Any] = {"_new": object.__new__, "_cls": Listing}
    body = []
    for i, f in enumerate(fields):
        ns[f"_s{i}"] = Listing.__dict__[f.name].__set__
        if f.name in names:
            value = f.name
        elif f.default is not dataclasses.MISSING:
            ns[f"_d{i}"] = f.default
            value = f"_d{i}"
        elif f.default_factory is not dataclasses.MISSING:
            ns[f"_f{i}"] = f.default_factory
            value = f"_f{i}()"
        else:
            raise TypeError(f"listing_maker: required field {f.name!r} not named")
        body.append(f"    _s{i}(o, {value})")
    src = f"def make({', '.join(names)}):\n    o = _new(_cls)\n" + "\n".join(body) \
        + "\n    return o\n"
    exec(compile(src, "<listing_maker>", "exec"), ns)  # noqa: S102 - source built above
    return ns["make"]


_ALL_FIELDS = tuple(f.name for f in dataclasses.fields(Listing))
_make_all = listing_maker(*_ALL_FIELDS)


def make_listing(**values: Any) -> Listing:
    """A Listing from keyword values, without the frozen-dataclass ``__init__``.

    Convenient where speed matters less (Shopify); hot loops use ``listing_maker``.
    """
    unknown = set(values) - set(_ALL_FIELDS)
    if unknown:
        raise TypeError(f"make_listing: unknown fields {sorted(unknown)}")
    return _make_all(*(values[n] if n in values else _default(n) for n in _ALL_FIELDS))


def _default(name: str) -> Any:
    f = Listing.__dataclass_fields__[name]
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    if f.default is dataclasses.MISSING:
        raise TypeError(f"make_listing: missing required field {name!r}")
    return f.default


def row_values(columns: Mapping[str, list[int]]):
    """A function cells -> {field: stripped non-empty value} for mapped columns.

    Only the fields the header has are visited, so a wide column map costs
    nothing per row for the columns an export lacks; of several candidate
    columns the first non-empty one wins.
    """
    single = [(f, idx[0]) for f, idx in columns.items() if len(idx) == 1]
    multi = [(f, idx) for f, idx in columns.items() if len(idx) > 1]
    top = max((i for idx in columns.values() for i in idx), default=-1)

    def values(cells: list[str]) -> dict[str, str]:
        if len(cells) <= top:
            cells = cells + [""] * (top + 1 - len(cells))
        out = {}
        for f, i in single:
            v = cells[i]
            if v and (v := v.strip()):
                out[f] = v
        for f, idx in multi:
            for i in idx:
                v = cells[i].strip()
                if v:
                    out[f] = v
                    break
        return out

    return values
