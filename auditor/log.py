"""Logging setup: levels from -v/-q, and secrets redacted from every message."""

from __future__ import annotations

import logging
import sys

from auditor.config import SECRET_VALUES


class RedactSecrets(logging.Filter):
    """Replace any value read from a secret environment variable with ***."""

    def filter(self, record: logging.LogRecord) -> bool:
        if SECRET_VALUES:
            msg = record.getMessage()
            for s in SECRET_VALUES:
                if s in msg:
                    msg = msg.replace(s, "***")
            record.msg, record.args = msg, None
        return True


def setup(verbosity: int = 0) -> None:
    """-q: errors only; default: warnings; -v: info; -vv: debug."""
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(
        max(-1, min(verbosity, 2)), logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                           "%H:%M:%S"))
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "apscheduler", "procrastinate.jobs"):  # "Deferred 1 job"
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
