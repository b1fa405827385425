"""The values a validated configuration is made of, for the modules that use them.

Connectors, checks and alert receivers import these from here, not from ``auditor.config``:
the loader there consults the plugin registry (``auditor.plugins``), which imports the
connectors and checks, so their importing the loader would make an import cycle.
``auditor.config`` re-exports every name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from auditor.errors import ConfigError


# Every secret value read from the environment, so logs can redact it (auditor.log).
SECRET_VALUES: set[str] = set()


@dataclass(frozen=True)
class EnvRef:
    """A value taken from an environment variable when used, never stored."""

    name: str

    def get(self) -> str:
        """The variable's value; a clear error when it is unset."""
        value = os.environ.get(self.name)
        if value is None:
            raise ConfigError("environment", [f"environment variable {self.name} is not set "
                                              f"(referenced as {{ env = \"{self.name}\" }})"])
        if len(value) >= 4:
            SECRET_VALUES.add(value)
        return value

    def __repr__(self) -> str:  # never show the value
        return f"EnvRef({self.name!r})"


def secret_value(v: str | EnvRef) -> str:
    """Resolve a plain value or an environment reference."""
    return v.get() if isinstance(v, EnvRef) else v


def str_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ValueError(f"expected an array of strings, got {value!r}")
    return value


@dataclass(frozen=True)
class ChannelConfig:
    """One channel: the common options, the connector's own and per-check overrides."""

    name: str
    type: str
    source: str | None
    schedule: str | None
    enabled: bool
    options: Mapping[str, Any]  # common + connector options, defaults filled
    checks: Mapping[str, Mapping[str, Any]]  # check name -> merged options
    base_dir: Path = Path(".")

    def opt(self, key: str, default: Any = None) -> Any:
        """A channel or connector option."""
        v = self.options.get(key)
        return default if v is None else v
