"""Images, in three parts:

* ``auditor.images.signatures``: pure signatures (decode with guards, perceptual
  hashes, colour, comparison, the view the check reads); the only part the image
  check imports.
* ``auditor.images.fetch``: fetching (the shared HTTP client, conditional GET)
  and caching (the store), and reading the master's DAM folder, nothing outside it.
* ``auditor.images.prepare``: the preparation stage the image check declares
  (``@check(..., prepare=...)``), run before each batch of listings is checked.

Names of all three are reachable from here (``auditor.images.compare``) for
callers that want one import; importing one part does not load the others.
"""

from __future__ import annotations

import importlib
from typing import Any

_PARTS = ("signatures", "fetch", "prepare")


def __getattr__(name: str) -> Any:
    for part in _PARTS:
        module = importlib.import_module(f"{__name__}.{part}")
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
