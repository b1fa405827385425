"""What a check is: declared options plus a pure function.

A check function receives ``(master, listing, ctx)`` and returns findings. It
does no I/O and reads no clock: ``ctx.now`` is the run's time. It is called

* with both sides for every linked listing,
* with ``listing=None`` for an in-scope master the channel does not show
  (only when the channel's source was read completely),
* with ``master=None`` for a listing that links to no master.

Checks that have nothing to say about a one-sided call return nothing.

A check that needs I/O done first (the image check: fetching and hashing
pictures) declares a preparation stage, ``@check(..., prepare=...)``: a
``Preparation`` class (or ``"module:Class"``, imported only when a run needs
it). The runner knows no check by name: for every check that declares one it
holds listings back in batches, lets the preparation fill the check's
``ctx.extras`` for the batch, then runs the checks (``Preparations``).
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence

from auditor.model import (Finding, Link, Listing, MasterRecord, Outcome, Severity,
                           listing_fields_of)
from auditor.alerts.config import CHECK_ALERT_OPTIONS
from auditor.options import Opt
from auditor.plugins import register_check

CheckFn = Callable[[MasterRecord | None, Listing | None, "CheckContext"], Iterable[Finding]]

# Options every check has, whatever it declares itself.
COMMON_OPTIONS = (
    Opt("enabled", bool, True, "Run this check (globally or for one channel)."),
) + CHECK_ALERT_OPTIONS


@dataclass(frozen=True)
class CheckSpec:
    """A registered check: its name, function, options and one-line description."""

    name: str
    fn: CheckFn
    options: tuple[Opt, ...] = ()
    help: str = ""
    # Fields this check compares, for documentation and scores.
    fields: tuple[str, ...] = ()
    # Its preparation stage: a Preparation subclass or "module:Class" (None: none).
    prepare: "type[Preparation] | str | None" = None

    @property
    def all_options(self) -> tuple[Opt, ...]:
        """Declared options plus the common ones."""
        return COMMON_OPTIONS + self.options


@dataclass
class CheckContext:
    """Everything a check may know besides the two records: options, time, history."""

    check: str
    channel: str
    options: Mapping[str, Any]
    now: datetime
    # Earlier master versions by SKU, oldest first: (valid_until, record).
    history: Mapping[str, Sequence[tuple[datetime, MasterRecord]]] = field(default_factory=dict)
    # Options of the channel itself (tax, currency, locale), read-only.
    channel_options: Mapping[str, Any] = field(default_factory=dict)
    # Data a preparation step computed for this check before it runs (image
    # signatures under "images"); checks only read it.
    extras: dict[str, Any] = field(default_factory=dict)
    # Per-run memo of the check: compiled options, tables and shared passed findings
    # (keys: functions, tuples and field names); it lives as long as the context.
    # Per-master values are not memoized here: within a channel each master comes
    # once, so a per-master memo would only cost (measured); checks cache by value
    # (a price point, a title) where values repeat.
    cache: dict = field(default_factory=dict, repr=False)
    # The link of the listing being checked, set by the runner before each call
    # (lets presence tell an ambiguous link from an orphan).
    link: Link | None = None

    def option(self, name: str) -> Any:
        """An option of this check, falling back to its declared default."""
        if name in self.options:
            return self.options[name]
        from auditor import plugins

        spec = plugins.checks().get(self.check)
        for o in (spec.all_options if spec else ()):
            if o.name == name:
                return o.default
        raise KeyError(f"check {self.check!r} has no option {name!r}")

    def prepared(self, build: Callable[["CheckContext"], Any]) -> Any:
        """``build(self)`` computed once per context (compiled options, tables)."""
        cache = self.cache
        value = cache.get(build)
        if value is None:
            value = cache[build] = build(self)
        return value

    def finding(self, master: MasterRecord | None, listing: Listing | None, field_name: str,
                outcome: Outcome, severity: Severity = Severity.INFO, *,
                expected: Any = None, actual: Any = None, score: float | None = None,
                message: str = "", **details: Any) -> Finding:
        """Build a finding for this check and channel.

        A failed or warn outcome on a field the channel read with low confidence
        (``Listing.confidence``) becomes not_evaluated, saying why and which selector
        would make the read certain (auditor/confidence.py).
        """
        if listing is not None and listing.confidence and outcome in (Outcome.FAILED,
                                                                      Outcome.WARN):
            from auditor.confidence import uncertain

            u = uncertain(listing, field_name, outcome)
            if u is not None:
                outcome, severity, why = u
                message = f"{why}; {message}" if message else why
        return Finding(
            check=self.check,
            channel=self.channel,
            sku=master.sku if master is not None else (listing.sku if listing else None),
            field=field_name,
            outcome=outcome,
            severity=severity,
            expected=None if expected is None else str(expected),
            actual=None if actual is None else str(actual),
            score=score,
            message=message,
            listing_key=listing.key if listing is not None else None,
            details=details,
        )

    def passed(self, master: MasterRecord | None, listing: Listing | None,
               field_name: str) -> Finding:
        """A passed comparison: counted in scores, never stored.

        One shared Finding per field (no SKU, no listing key): passed outcomes
        are the bulk of all comparisons and building one each time is what
        made checks slow.
        """
        f = self.cache.get(field_name)
        if f is None:
            f = self.cache[field_name] = Finding(self.check, self.channel, None, field_name,
                                                 Outcome.PASSED)
        return f

    def ok(self, field_name: str) -> tuple[Finding]:
        """``(passed,)`` for one field, shared: what a check returns on its fast path.

        Stored under ``"ok:<field>"``, so a hot path may read ``ctx.cache.get("ok:title")``.
        """
        key = "ok:" + field_name
        t = self.cache.get(key)
        if t is None:
            t = self.cache[key] = (self.passed(None, None, field_name),)
        return t

    def previous_values(self, sku: str, getter: Callable[[MasterRecord], Any]
                        ) -> list[tuple[datetime, Any]]:
        """Earlier master values of one field: [(valid_until, value)], newest first."""
        out = []
        for until, rec in reversed(self.history.get(sku, ())):
            value = getter(rec)
            if value is not None:
                out.append((until, value))
        return out


def check(name: str, *, options: Sequence[Opt] = (), fields: Sequence[str] = (),
          prepare: "type[Preparation] | str | None" = None) -> Callable[[CheckFn], CheckFn]:
    """Decorator: declare ``fn`` as the check ``name``; its docstring is the help.

    Its package's (or plugin's) ``register_checks`` hook makes it available; the
    decorated function may also be returned from that hook itself. ``prepare``: the
    check's preparation stage (see ``Preparation``), as a class or as
    ``"package.module:Class"`` so the check module need not import it."""

    def deco(fn: CheckFn) -> CheckFn:
        doc = (fn.__doc__ or "").strip().splitlines()
        spec = register_check(CheckSpec(name, fn, tuple(options), doc[0] if doc else "",
                                        tuple(fields), prepare))
        fn.check_spec = spec  # type: ignore[attr-defined]  # a plugin may return the function
        return fn

    return deco


# --------------------------------------------------------------------------- preparation

log = logging.getLogger(__name__)


@dataclass
class PrepareEnv:
    """What a preparation stage may use during one run (it may do I/O; checks may not)."""

    store: Any
    master: Mapping[str, MasterRecord]
    http_options: Mapping[str, Any]
    base_dir: Path
    now: datetime
    # The check's options: the global ones, or one channel's in a channel's own process.
    options: Mapping[str, Any] = field(default_factory=dict)


class Preparation:
    """The I/O a check needs before it runs, declared with ``@check(..., prepare=Cls)``.

    One instance per run (its caches shared by every channel audited in that
    process). ``prepare`` gets a batch of (master, listing) pairs of one
    channel and puts what the check reads into ``ctx.extras``; if it raises,
    the batch is still checked, with ``ctx.extras`` holding only
    ``"prepare_error"`` (the check then says what it could not evaluate).
    """

    #: Pairs prepared together, unless the check has a ``batch_size`` option.
    batch_size: ClassVar[int] = 200

    def __init__(self, env: PrepareEnv):
        self.env = env

    def prepare(self, batch: Sequence[tuple[MasterRecord | None, Listing | None]],
                ctx: CheckContext, policy: Any) -> None:
        """Fill ``ctx.extras`` for ``batch``; ``policy`` is the channel's fetch policy."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the run held (clients, threads)."""


def _load_preparation(ref: "type[Preparation] | str") -> "type[Preparation]":
    if isinstance(ref, str):
        module, _, name = ref.partition(":")
        return getattr(importlib.import_module(module), name)
    return ref


class Preparations:
    """The preparation stages of one run, made when a channel first needs them."""

    def __init__(self, store: Any, master: Mapping[str, MasterRecord],
                 http_options: Mapping[str, Any], base_dir: Path, now: datetime,
                 options: Mapping[str, Mapping[str, Any] | None] | None = None):
        self._env = (store, master, http_options, base_dir, now)
        self._options = options or {}
        self._made: dict[str, Preparation] = {}

    def get(self, spec: CheckSpec) -> Preparation | None:
        """The run's preparation for ``spec`` (None when it declares none)."""
        if spec.prepare is None:
            return None
        prep = self._made.get(spec.name)
        if prep is None:
            env = PrepareEnv(*self._env, options=dict(self._options.get(spec.name) or {}))
            prep = self._made[spec.name] = _load_preparation(spec.prepare)(env)
        return prep

    def batcher(self, specs: Sequence[CheckSpec], contexts: Mapping[str, CheckContext],
                policy: Any) -> "PreparedChecks | None":
        """One channel's batching step, or None when no enabled check declares a stage."""
        stages = [(p, contexts[s.name]) for s in specs if (p := self.get(s)) is not None]
        return PreparedChecks(stages, policy) if stages else None

    def close(self) -> None:
        """Close every stage made (errors are logged: closing must not fail a run)."""
        for name, prep in self._made.items():
            try:
                prep.close()
            except Exception:
                log.exception("closing the preparation of check %s failed", name)
        self._made = {}


class PreparedChecks:
    """One channel's listings held back in batches, prepared, then checked.

    ``add`` queues a pair until the batch is full; ``flush`` has every stage
    prepare the batch (a stage that fails leaves ``"prepare_error"`` in its
    check's context) and hands each pair to ``run_checks``.
    """

    def __init__(self, stages: Sequence[tuple[Preparation, CheckContext]], policy: Any):
        self.stages = list(stages)
        self.policy = policy
        self.batch_size = max(1, min(int(ctx.options.get("batch_size") or prep.batch_size)
                                     for prep, ctx in self.stages))
        self.pending: list[tuple[Any, Any, Any]] = []

    def add(self, master: MasterRecord | None, listing: Listing | None,
            run_checks: Callable[..., None], link: Link | None = None) -> None:
        """Queue one linked (or unlinked) listing; checks run when its batch is prepared."""
        self.pending.append((master, listing, link))
        if len(self.pending) >= self.batch_size:
            self.flush(run_checks)

    def flush(self, run_checks: Callable[..., None]) -> None:
        """Prepare the queued batch, then run every check on it."""
        batch, self.pending = self.pending, []
        if not batch:
            return
        pairs = [(m, li) for m, li, _ in batch]
        for prep, ctx in self.stages:
            try:
                prep.prepare(pairs, ctx, self.policy)
                ctx.extras.pop("prepare_error", None)
            except Exception as e:  # a preparation must never take the channel down
                log.exception("channel %s: preparation of check %s failed", ctx.channel,
                              ctx.check)
                ctx.extras.clear()
                ctx.extras["prepare_error"] = f"{e.__class__.__name__}: {e}"
        for m, li, link in batch:
            run_checks(m, li, link)


def _unread_reason(finding_field: str, unread: Mapping[str, str]) -> str | None:
    for name in listing_fields_of(finding_field):
        why = unread.get(name)
        if why is not None:
            return why
    return None


def with_unread(fields: Sequence[str], findings: Iterable[Finding], master: MasterRecord | None,
                listing: Listing, ctx: CheckContext) -> list[Finding]:
    """A check's findings on a listing with unread cells (``listing.unread``).

    A comparison of a field whose cell could not be read is ``not_evaluated``, with
    the file, line and reason, whatever the check concluded from the empty field; a
    field the check compares (``fields``) is said not evaluated even when the check
    had nothing to say about it. Other fields keep their outcomes.
    """
    unread = listing.unread
    out: list[Finding] = []
    done: set[str] = set()

    def not_evaluated(name: str, why: str) -> Finding:
        done.add(name)
        return ctx.finding(master, listing, name, Outcome.NOT_EVALUATED, Severity.INFO,
                           message=f"{name} not compared: the cell could not be read ({why})",
                           unread=why)

    for f in findings:
        why = _unread_reason(f.field, unread)
        if why is None:
            out.append(f)
        elif f.field not in done:
            out.append(not_evaluated(f.field, why))
    if master is not None:
        for name in fields:
            if name not in done and (why := _unread_reason(name, unread)) is not None:
                out.append(not_evaluated(name, why))
    return out


# Listing fields that can be absent from a whole source (a column or element it lacks).
CARRIABLE = ("title", "description", "brand", "gtin", "mpn", "price", "sale_price",
             "sale_start", "sale_end", "quantity", "availability", "images", "url")


def is_carried(finding_field: str, carried: Iterable[str] | set[str]) -> bool:
    """Whether a source carrying the listing fields ``carried`` can show ``finding_field``.

    Only the fields in ``CARRIABLE`` can be absent; attributes are compared only where
    a listing shows them, so an attribute a channel lacks never yields a finding.
    """
    names = listing_fields_of(finding_field)
    relevant = [n for n in names if n in CARRIABLE]
    if not relevant:
        return True
    return any(n in carried for n in relevant)


class CarriedFields:
    """Which listing fields a channel's source carries, for the checks' fields.

    The connector may declare them (``SourceContext.carries``: a header's columns,
    a feed's elements); without a declaration a field counts as carried once any
    listing shows it. Cheap per listing: only the fields not yet seen are looked at.
    """

    def __init__(self, specs: Sequence[CheckSpec]):
        wanted = {n for s in specs for f in s.fields for n in listing_fields_of(f)}
        self.unseen = [n for n in CARRIABLE if n in wanted]
        self.shown: set[str] = set()

    def see(self, listing: Listing) -> None:
        """Note the fields ``listing`` shows (only the ones no listing showed yet)."""
        for name in self.unseen:
            if getattr(listing, name) or name in listing.unread:
                self.shown.add(name)
        if self.shown.intersection(self.unseen):
            self.unseen = [n for n in self.unseen if n not in self.shown]

    def missing(self, specs: Sequence[CheckSpec], declared: set[str] | None,
                listings: int) -> dict[str, list[str]]:
        """Check -> its fields the source never carries (none when it yielded nothing)."""
        if not listings:
            return {}
        carried = self.shown | (declared or set())
        out: dict[str, list[str]] = {}
        for s in specs:
            gone = [f for f in s.fields if not is_carried(f, carried)]
            if gone:
                out[s.name] = gone
        return out
