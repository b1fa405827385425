"""One way to add a thing: connectors and checks register themselves here.

Built-in connectors (modules in the ``connectors`` package) and checks (modules
in ``checks``) are found by importing every module of those packages; third-party
ones by the ``omni_auditor.plugins`` entry-point group, whose modules register
themselves with the same decorators. There is no list to update elsewhere.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from auditor.check import CheckSpec
    from auditor.connector import Connector

log = logging.getLogger(__name__)

CONNECTORS: dict[str, type["Connector"]] = {}
CHECKS: dict[str, "CheckSpec"] = {}
_loaded = False

C = TypeVar("C")


def register_connector(cls: type[C]) -> type[C]:
    """Class decorator: make a connector available under its ``type`` name."""
    name = getattr(cls, "type", None)
    if not name:
        raise ValueError(f"connector {cls.__name__} has no 'type' attribute")
    existing = CONNECTORS.get(name)
    if existing is not None and existing.__qualname__ != cls.__qualname__:
        raise ValueError(f"connector type {name!r} registered twice ({existing} and {cls})")
    CONNECTORS[name] = cls  # type: ignore[assignment]
    return cls


def register_check(spec: "CheckSpec") -> "CheckSpec":
    """Make a check available under ``spec.name``."""
    existing = CHECKS.get(spec.name)
    if existing is not None and existing.fn.__qualname__ != spec.fn.__qualname__:
        raise ValueError(f"check {spec.name!r} registered twice")
    CHECKS[spec.name] = spec
    return spec


def _import_package_modules(package: str) -> None:
    pkg = importlib.import_module(package)
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        importlib.import_module(f"{package}.{info.name}")


def load() -> None:
    """Import built-in and entry-point plugins once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for package in ("connectors", "checks"):
        _import_package_modules(package)
    for ep in entry_points(group="omni_auditor.plugins"):
        try:
            ep.load()
        except Exception as e:  # a broken plugin must not stop the auditor
            log.error("plugin %s (%s) failed to load: %s", ep.name, ep.value, e)


def connectors() -> dict[str, type["Connector"]]:
    """Every registered connector by type name."""
    load()
    return CONNECTORS


def checks() -> dict[str, "CheckSpec"]:
    """Every registered check by name, in registration order."""
    load()
    return CHECKS

