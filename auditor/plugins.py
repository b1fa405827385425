"""One way to add a thing: every plugin registers through the hooks of ``auditor.hookspecs``.

The plugin manager (pluggy) holds, in this order: the built-in ``auditor.connectors``
and ``auditor.checks`` packages (plugin names ``connectors`` and ``checks``; each
implements ``register_connectors`` / ``register_checks`` by importing its modules),
then every module named in the ``omni_auditor.plugins`` entry-point group.
``connectors()`` and ``checks()`` are what those hooks returned.

``@register_connector`` and ``@check`` (``auditor.check``) only *declare*: they note
the class or check in the module that defines it, and that module's package
returns its declarations from its hook (``declared(prefix)``). An entry-point
module that declares with the decorators and implements no registration hook is
served the same way, so plugins written before the hooks keep working.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

from auditor import hookspecs
from auditor.hookspecs import hookimpl

if TYPE_CHECKING:
    from auditor.check import CheckSpec
    from auditor.connector import Connector

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "omni_auditor.plugins"

CONNECTORS: dict[str, type["Connector"]] = {}
CHECKS: dict[str, "CheckSpec"] = {}
RECEIVERS: dict[str, Any] = {}
RENDERERS: dict[str, Any] = {}
_loaded = False
_pm: pluggy.PluginManager | None = None

# What the decorators declared, in declaration order: (module name, kind, thing).
_DECLARED: list[tuple[str, str, Any]] = []

C = TypeVar("C")


def register_connector(cls: type[C]) -> type[C]:
    """Class decorator: declare a connector (registered under its ``type`` name by its
    package's ``register_connectors`` hook)."""
    name = getattr(cls, "type", None)
    if not name:
        raise ValueError(f"connector {cls.__name__} has no 'type' attribute")
    _DECLARED.append((cls.__module__, "connector", cls))
    return cls


def register_check(spec: "CheckSpec") -> "CheckSpec":
    """Declare a check (``@check`` calls this); its package's hook registers it."""
    _DECLARED.append((spec.fn.__module__, "check", spec))
    return spec


def declared(prefix: str, kind: str) -> list[Any]:
    """What modules under ``prefix`` (a package or module name) declared, by module name
    then in declaration order (not in the order something happened to import them):
    ``kind`` is ``"connector"`` or ``"check"``. Later declarations of the same name
    (a module imported again) replace earlier ones."""
    out: dict[Any, Any] = {}
    for module, k, thing in sorted(_DECLARED, key=lambda d: d[0]):
        if k == kind and (module == prefix or module.startswith(prefix + ".")):
            key = thing.type if kind == "connector" else thing.name
            out[key] = thing
    return list(out.values())


def import_package_modules(package: str) -> None:
    """Import every public module of a package (its modules declare themselves)."""
    pkg = importlib.import_module(package)
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        importlib.import_module(f"{package}.{info.name}")


class _Declarations:
    """The registration hooks for a module that declared with the decorators only."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    @hookimpl
    def register_connectors(self) -> list[Any]:
        return declared(self.prefix, "connector")

    @hookimpl
    def register_checks(self) -> list[Any]:
        return declared(self.prefix, "check")


def new_manager() -> pluggy.PluginManager:
    """An empty plugin manager that knows the auditor's hooks."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def manager() -> pluggy.PluginManager:
    """The process's plugin manager, with the built-in and entry-point plugins."""
    load()
    assert _pm is not None
    return _pm


def _register_entry_points(pm: pluggy.PluginManager) -> None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            plugin = ep.load()
            if pm.is_registered(plugin):
                continue
            pm.register(plugin, name=f"entry:{ep.name}")
            impls = {h for h in ("register_connectors", "register_checks")
                     if any(i.plugin is plugin for i in getattr(pm.hook, h).get_hookimpls())}
            if not impls:  # declared with the decorators only
                prefix = getattr(plugin, "__name__", ep.value.split(":")[0]).split(".")[0]
                pm.register(_Declarations(prefix), name=f"entry:{ep.name}:declared")
        except Exception as e:  # a broken plugin must not stop the auditor
            log.error("plugin %s (%s) failed to load: %s", ep.name, ep.value, e)


def _collect(pm: pluggy.PluginManager) -> None:
    """Fill the registries from the registration hooks (built-ins first)."""
    CONNECTORS.clear()
    CHECKS.clear()
    RECEIVERS.clear()
    RENDERERS.clear()
    # get_hookimpls() lists in registration order: the built-ins come first.
    for impl in pm.hook.register_connectors.get_hookimpls():
        for cls in _call(impl, "register_connectors"):
            name = getattr(cls, "type", None)
            if not name:
                raise ValueError(f"connector {cls!r} from {impl.plugin_name} has no 'type'")
            existing = CONNECTORS.get(name)
            if existing is not None and existing is not cls:
                raise ValueError(f"connector type {name!r} registered twice "
                                 f"({existing} and {cls})")
            CONNECTORS[name] = cls
    for impl in pm.hook.register_checks.get_hookimpls():
        for item in _call(impl, "register_checks"):
            spec = getattr(item, "check_spec", item)  # a function made with @check
            known = CHECKS.get(spec.name)
            if known is not None and known.fn is not spec.fn:
                raise ValueError(f"check {spec.name!r} registered twice")
            CHECKS[spec.name] = spec
    for hook, registry in (("register_receivers", RECEIVERS), ("register_renderers", RENDERERS)):
        for impl in getattr(pm.hook, hook).get_hookimpls():
            for thing in _call(impl, hook):
                registry[getattr(thing, "name", repr(thing))] = thing


def _call(impl: Any, hook: str) -> list[Any]:
    try:
        return list(impl.function() or ())
    except Exception as e:  # one broken plugin must not hide the others
        if impl.plugin_name in ("connectors", "checks"):
            raise
        log.error("plugin %s: %s failed: %s", impl.plugin_name, hook, e)
        return []


def load() -> None:
    """Register the built-in and entry-point plugins once, and collect what they add."""
    global _loaded, _pm
    if _loaded:
        return
    _loaded = True
    pm = new_manager()
    for package in ("connectors", "checks"):
        pm.register(importlib.import_module(f"auditor.{package}"), name=package)
    _register_entry_points(pm)
    _pm = pm
    _collect(pm)


def connectors() -> dict[str, type["Connector"]]:
    """Every registered connector by type name."""
    load()
    return CONNECTORS


def checks() -> dict[str, "CheckSpec"]:
    """Every registered check by name, in registration order."""
    load()
    return CHECKS


def receivers() -> dict[str, Any]:
    """Reserved: alert receivers registered by plugins, by name (none are used yet)."""
    load()
    return RECEIVERS


def renderers() -> dict[str, Any]:
    """Reserved: report renderers registered by plugins, by name (none are used yet)."""
    load()
    return RENDERERS
