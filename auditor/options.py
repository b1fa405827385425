"""Declared options: every configurable component states its settings once.

A setting has a name, a type, a default and a help text. Config validation,
``auditor config options`` and the documentation test all read these
declarations, so a setting cannot exist without being documented.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Sequence


@dataclass(frozen=True)
class Opt:
    """One setting: ``kind`` is str, int, float, bool, decimal, list, dict or a callable."""

    name: str
    kind: Any
    default: Any = None
    help: str = ""
    choices: Sequence[Any] | None = None

    def coerce(self, value: Any) -> Any:
        """Validate and convert a TOML value; raise ValueError saying what was expected."""
        kind = self.kind
        if kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"expected true or false, got {value!r}")
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"expected an integer, got {value!r}")
        elif kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"expected a number, got {value!r}")
            value = float(value)
        elif kind is Decimal or kind == "decimal":
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise ValueError(f"expected a number, got {value!r}")
            try:
                value = Decimal(str(value))
            except InvalidOperation:
                raise ValueError(f"expected a number, got {value!r}") from None
        elif kind is str:
            if not isinstance(value, str):
                raise ValueError(f"expected a string, got {value!r}")
        elif kind is list:
            if not isinstance(value, list):
                raise ValueError(f"expected an array, got {value!r}")
        elif kind is dict:
            if not isinstance(value, dict):
                raise ValueError(f"expected a table, got {value!r}")
        elif callable(kind):
            value = kind(value)
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"expected one of {', '.join(map(str, self.choices))}, got {value!r}")
        return value


def resolve(opts: Sequence[Opt], given: dict[str, Any], where: str,
            problems: list[str], extra_ok: Callable[[str], bool] | None = None) -> dict[str, Any]:
    """Check ``given`` against ``opts``; return every option with defaults filled in.

    Problems are appended to ``problems`` naming ``where`` and the key.
    """
    by_name = {o.name: o for o in opts}
    out = {o.name: o.default for o in opts}
    for key, value in given.items():
        opt = by_name.get(key)
        if opt is None:
            if extra_ok and extra_ok(key):
                out[key] = value
                continue
            hint = _did_you_mean(key, by_name)
            problems.append(f"{where}: unknown key {key!r}{hint}")
            continue
        try:
            out[key] = opt.coerce(value)
        except ValueError as e:
            problems.append(f"{where}.{key}: {e}")
    return out


# Keys that mean the same in another table of the config: [smtp] has `sender` where an
# email receiver has `from`, a webhook `url` where an apprise receiver has `urls` ...
_SYNONYMS = {"from": ("sender",), "sender": ("from",), "url": ("urls", "source"),
             "urls": ("url",), "user": ("username",), "login": ("username",),
             "pass": ("password",), "passwd": ("password",), "server": ("host",),
             "smtp_host": ("host",)}


def _did_you_mean(key: str, names: Sequence[str] | dict) -> str:
    import difflib

    same = [n for n in _SYNONYMS.get(key, ()) if n in names]
    if same:
        return f" (did you mean {same[0]!r}?)"
    close = difflib.get_close_matches(key, list(names), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    known = sorted(names)
    return f" (expected one of: {', '.join(known)})" if known else ""


did_you_mean = _did_you_mean
