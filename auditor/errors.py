"""The exception vocabulary of the auditor.

The library raises these; only ``auditor.cli`` turns them into messages and
exit codes.
"""

from __future__ import annotations


class AuditorError(Exception):
    """Base class for every error the auditor reports to a user.

    ``http_status`` is what `auditor serve`'s API answers for it (docs/service.md, "Errors
    and status codes"): 500 unless a subclass knows better.
    """

    http_status = 500


class ConfigError(AuditorError):
    """config.toml is missing, unreadable or invalid. Lists every problem found."""

    def __init__(self, path: str, problems: list[str], heading: str = "invalid config"):
        self.path = path
        self.problems = problems
        self.heading = heading  # "cannot read config" when there is no file to judge
        super().__init__(f"{path}: " + "; ".join(problems))

    def __str__(self) -> str:
        lines = [f"{self.heading} {self.path}:"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


class MasterImportError(AuditorError):
    """A master file was rejected; ``errors`` holds every (location, reason)."""

    def __init__(self, source: str, errors: list[tuple[str, str]], total_rows: int = 0):
        self.source = source
        self.errors = errors
        self.total_rows = total_rows
        super().__init__(str(self))

    def __str__(self) -> str:
        shown = self.errors[:50]
        from auditor.wording import counted

        lines = [f"master import from {self.source} rejected: {counted(len(self.errors), 'error')}"
                 + (f" in {counted(self.total_rows, 'row')}" if self.total_rows else "")]
        lines += [f"  {loc}: {reason}" for loc, reason in shown]
        if len(self.errors) > len(shown):
            lines.append(f"  ... and {len(self.errors) - len(shown)} more")
        return "\n".join(lines)


class SourceError(AuditorError):
    """A whole source could not be read (404, truncated archive, wrong format).

    Its listings are unknown for the run: never "missing".
    """

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class BadRecord(AuditorError):
    """One row, item or page could not be used; the rest of the source is read."""

    def __init__(self, reason: str, field: str | None = None):
        self.reason = reason
        self.field = field
        super().__init__(f"{field}: {reason}" if field else reason)


class FetchError(AuditorError):
    """An HTTP request failed or was refused by the outbound guard."""

    def __init__(self, url: str, reason: str, status: int | None = None):
        self.url = url
        self.reason = reason
        self.status = status
        super().__init__(f"{url}: {reason}")


class LockedError(AuditorError):
    """Another run holds the store lock."""

    http_status = 409


class StoreError(AuditorError):
    """The database cannot be used (schema newer than this auditor, corrupt file), or
    refuses what was asked of it (no such finding). The subclasses below say which."""

    http_status = 503


class StoreUnavailable(StoreError):
    """The store cannot be opened now: its server down or refusing the login, a file
    that is no database, a schema newer than this auditor. The message names the store
    (``auditor.storage.describe``: never its password)."""

    http_status = 503


class NotFound(StoreError):
    """The store holds no such thing (a finding with that fingerprint)."""

    http_status = 404


class Conflict(StoreError):
    """The store holds it, but not in a state that allows what was asked (acknowledging
    a resolved finding), or a fingerprint prefix names more than one finding."""

    http_status = 409


class BadRequest(StoreError):
    """What was asked is malformed (a fingerprint that is no hex prefix)."""

    http_status = 400


class Interrupted(KeyboardInterrupt):
    """A run was stopped by a signal (SIGTERM, SIGINT): raised in the run's process by
    ``auditor.session.interrupt_on_signals``; the run is recorded ``interrupted``."""

    def __init__(self, reason: str, signum: int | None = None):
        self.reason = reason
        self.signum = signum
        super().__init__(reason)


class MasterRequeued(Exception):
    """A distributed run's master job is back in the queue while a job waits for the
    master: the waiting job is retried later so that its worker can take the master
    job (``auditor.distributed``)."""
