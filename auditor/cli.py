"""The `auditor` command: parses arguments, calls the library, formats results.

Exit codes: 0 all consistent; 1 findings; 2 could not run, or ran only partly.
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import shutil
import signal
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from auditor import __version__, log as logsetup, plugins, wording
from auditor.config import (CHANNEL_OPTIONS, HTTP_OPTIONS, LINKING_OPTIONS, MASTER_OPTIONS,
                            REPORT_OPTIONS, RUN_OPTIONS, SERVE_OPTIONS, SMTP_OPTIONS,
                            STORE_OPTIONS, UI_OPTIONS, Config, load_config)
from auditor.errors import AuditorError, ConfigError, Interrupted
from auditor.hookspecs import hookimpl
from auditor.terminal import safe

if TYPE_CHECKING:
    from auditor.storage import Store

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
EXIT_SIGINT, EXIT_SIGTERM = 130, 143  # interrupted: 128 + the signal's number

# In a pipe there is no terminal width: use a wide one rather than folding tables.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)  # never folded mid-phrase


class AuditorGroup(click.Group):
    """Turns library errors into messages and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AuditorError as e:
            err.print(f"[bold red]error:[/] {safe(e)}")
            sys.exit(EXIT_ERROR)


def _config_path(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path:
    """The config file: this command's --config, else the one given before the
    subcommand (``auditor --config x.toml run``), else AUDITOR_CONFIG, else config.toml."""
    if value is not None:
        return value
    parent = ctx.parent
    while parent is not None:
        given = parent.params.get("config_path")
        if given is not None:
            return given
        parent = parent.parent
    return Path("config.toml")


config_option = click.option(
    "--config", "-c", "config_path", default=None, callback=_config_path,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Config file [default: the --config before the command, else $AUDITOR_CONFIG, "
         "else config.toml].")


@click.group(cls=AuditorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="auditor")
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True,
              help="Only errors: no progress, no summary (exit codes still tell).")
@click.option("--config", "-c", "config_path", default=None, envvar="AUDITOR_CONFIG",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Config file for every command (or set AUDITOR_CONFIG); default config.toml.")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool, config_path: Path | None) -> None:
    """omni-auditor: audits product data on every sales channel against the master record.

    \b
    Start here:
      auditor demo                      # a full audit of bundled demo data
      auditor init pim.csv feeds/*      # config.toml guessed from your own files
      auditor config check              # validate config.toml
      auditor run                       # audit every channel in config.toml
      auditor findings --open           # what is wrong now
      auditor serve                     # schedules, web UI, API and /metrics
    """
    logsetup.setup(-1 if quiet else verbose)
    ctx.obj = {"quiet": quiet}


def _load(config_path: Path) -> Config:
    return load_config(config_path)


class FormatChoice(click.Choice):
    """table, json or csv (``text`` is read as ``table``, as earlier versions spelt it)."""

    def __init__(self) -> None:
        super().__init__(["table", "json", "csv"])

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        return super().convert("table" if value == "text" else value, param, ctx)


def format_option(fn: Any) -> Any:
    """The one ``--format table|json|csv`` option of every command that prints records."""
    return click.option("--format", "fmt", type=FormatChoice(), default="table",
                        show_default=True, help="Output: a table for people, JSON or CSV "
                        "for programs.")(fn)


def _quiet() -> bool:
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx is not None else None
    return bool(root and root.obj and root.obj.get("quiet"))


def _width() -> int:
    """Columns for tables: $COLUMNS, else the terminal's, else 200 (pipes)."""
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return 200


def _csv_out(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """The one CSV writer of every command (``--format csv``): every cell quoted, and a
    cell a spreadsheet would run as a formula neutralised (``auditor.csvout``)."""
    from auditor.csvout import write_rows

    buf = io.StringIO()
    write_rows(buf, columns, ({k: (json.dumps(v) if isinstance(v, (dict, list)) else v)
                               for k, v in r.items()} for r in rows))
    click.echo(buf.getvalue(), nl=False)


def _known(kind: str, given: Iterable[str], known: Iterable[str]) -> None:
    """An unknown filter value is an error (a typo must not read as "nothing found")."""
    known = sorted(set(known))
    for v in given:
        if v not in known:
            import difflib

            close = difflib.get_close_matches(v, known, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise click.BadParameter(f"unknown {kind} {v!r}{hint}; known: "
                                     f"{', '.join(known) or 'none yet'}",
                                     param_hint=f"--{kind}")


# ---------------------------------------------------------------------------- run

@main.command()
@config_option
@click.option("--channel", "channels", multiple=True, help="Only this channel (repeatable).")
@click.option("--wait", type=float, default=0.0, show_default=True,
              help="Seconds to wait for another run holding the store lock.")
@format_option
@click.option("--now", "now_text", metavar="ISO-TIME",
              help="Evaluate sale windows and history as of this time (replays, tests).")
@click.option("--master-only", is_flag=True,
              help="Import the master and read no channel (the master's own schedule).")
@click.option("--metrics-file", type=click.Path(dir_okay=False, path_type=Path),
              help="After the run, write the metrics here in the node-exporter textfile "
                   "format (atomically), e.g. /var/lib/node_exporter/textfile/auditor.prom.")
@click.option("--fail-on", "fail_on", type=click.Choice(["any", "new", "critical"]),
              default="any", show_default=True,
              help="What makes the exit code 1: any open finding, findings opened or reopened "
                   "by this run, or open critical findings nobody acknowledged or snoozed.")
@click.option("--distributed", is_flag=True,
              help="Audit the channels as jobs on the queue in the PostgreSQL store, taken by "
                   "`auditor worker` processes on any machines; wait for them (docs/scaling.md). "
                   "`[run] distributed = true` makes every run of the config so, the scheduled "
                   "audits of `auditor serve` too.")
def run(config_path: Path, channels: tuple[str, ...], wait: float, fmt: str,
        now_text: str | None, master_only: bool, metrics_file: Path | None,
        fail_on: str, distributed: bool = False) -> None:
    """Import the master, read the channels, link, check and store findings.

    Then alerts are evaluated and due notifications recorded in the outbox and
    delivered (see [alerts] and `auditor alerts`).

    \b
    Examples:
      auditor run --config config.toml --channel google --fail-on new
      auditor -q run                    # cron: nothing printed but errors; the exit code tells
      auditor run --format json         # the summary for a program (csv: one row per channel)
      auditor run --metrics-file /var/lib/node_exporter/textfile/auditor.prom
      auditor run --distributed         # jobs for `auditor worker` processes; waits for them
    Exit codes: 0 all consistent, 1 findings (see --fail-on), 2 could not run or partial;
    130 / 143 interrupted by Ctrl-C / SIGTERM (the run is recorded `interrupted`).
    """
    import logging

    from auditor.session import AuditSession, interrupt_on_signals
    from auditor.storage import open_store

    cfg = _load(config_path)
    _known("channel", channels, [c.name for c in cfg.channels])  # a typo, not a bad config
    if master_only:
        if channels:
            raise click.BadParameter("--master-only reads no channel; drop --channel",
                                     param_hint="--master-only")
        import dataclasses

        cfg = dataclasses.replace(cfg, channels=())
    now = None
    if now_text:
        from auditor.values import parse_datetime

        try:
            now = parse_datetime(now_text)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--now") from None
    report = None
    session: AuditSession | None = None
    if not _quiet() and fmt in ("table", "json"):  # the summary shows a rejected master
        _drop_logged("master_error")
    try:
        with interrupt_on_signals():
            store = open_store(cfg.store_url)
            try:
                with store.run_lock(wait), _progress(_quiet()) as progress:
                    kw: dict[str, Any] = dict(channels=list(channels) or None, now=now,
                                              listeners=[progress] if progress else [])
                    if distributed or cfg.run.get("distributed"):
                        from auditor.distributed import DistributedSession

                        session = DistributedSession(cfg, store, cfg.path, **kw)
                    else:
                        session = AuditSession(cfg, store, **kw)
                    report = session.run()
                after = session.after
                # (the run lock released: delivery may wait)
                _after_run_alerts(cfg, store, now, after)
                with after("exit code"):
                    exit_code = _exit_code(report, store, fail_on)
                logging.getLogger("auditor.run").info(
                    "run %s: after the audit %.1f s: %s", report.run_id, after.seconds(),
                    after)
            finally:
                store.close()
    except KeyboardInterrupt as e:  # Interrupted (SIGTERM, SIGINT) or a plain Ctrl-C
        reason = e.reason if isinstance(e, Interrupted) else "SIGINT (Ctrl-C)"
        run_id = session.run_id if session is not None else None
        where = f"run {run_id}" if run_id else "the run"
        err.print(f"[bold red]interrupted:[/] {where} stopped by {safe(reason)}"
                  + ("; recorded as interrupted" if run_id else ""))
        sys.exit(EXIT_SIGTERM if isinstance(e, Interrupted) and e.signum == signal.SIGTERM
                 else EXIT_SIGINT)
    finally:
        if metrics_file is not None:
            _write_metrics(cfg, metrics_file)
    from auditor.runner import _summary_dict

    if _quiet():
        pass  # -q: the exit code says it all
    elif fmt == "json":
        click.echo(json.dumps({"run_id": report.run_id, "status": report.status.value,
                               "exit_code": exit_code, "master": report.master,
                               "master_error": report.master_error,
                               "interrupted_before": report.interrupted_before,
                               "channels": [_summary_dict(s) for s in report.channels]},
                              default=str, indent=2))
    elif fmt == "csv":
        # the fields the source never carries as a list of names, not JSON in one cell
        rows = [{"run_id": report.run_id, **_summary_dict(s),
                 "not_carried": ", ".join(sorted({f for fs in s.not_carried.values()
                                                  for f in fs}))}
                for s in report.channels]
        _csv_out(rows, ["run_id", "channel", "status", "listings", "linked", "unlinked",
                        "ambiguous", "failed", "warn", "opened", "resolved", "score", "errors",
                        "message", "presence_held", "not_carried"])
    else:
        print_report(report, exit_code)
    sys.exit(exit_code)


def _drop_logged(summary: str) -> None:
    """Leave out of this process's log output the records that repeat what the command's
    own summary prints (logged with ``extra={"summary": NAME}``; a run of `auditor serve`,
    whose summary nobody sees, keeps them)."""
    import logging

    class Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return getattr(record, "summary", None) != summary

    for handler in logging.getLogger().handlers:
        handler.addFilter(Drop())


def _exit_code(report, store, fail_on: str) -> int:
    """``auditor run``'s exit code under ``--fail-on``: 2 whenever the run was partial."""
    code = report.exit_code
    if code == EXIT_ERROR or fail_on == "any":
        return code
    if fail_on == "new":
        return EXIT_FINDINGS if any(c.opened for c in report.channels) else EXIT_OK
    from datetime import datetime, timezone

    from auditor.alerts.policy import display_state

    # Only the open critical findings of the run's channels are read (a filter in the
    # store), with their episodes: not every open finding.
    if not report.channels:
        return EXIT_OK
    critical = store.query_findings(states=["open"], severities=["critical"],
                                    channels=sorted({c.channel for c in report.channels}))
    if not critical:
        return EXIT_OK
    episodes = store.finding_episodes(f.fingerprint for f in critical)
    now = datetime.now(timezone.utc)
    for f in critical:
        r = f.to_dict()
        ep = episodes.get(r["fingerprint"])
        if display_state({**r, "episode_event": ep and ep[0], "since": ep and ep[1]},
                         now) in ("open", "reopened"):
            return EXIT_FINDINGS
    return EXIT_OK


def _after_run_alerts(cfg: Config, store, now, step: Any) -> None:
    """The deliver step after a run: evaluate alerts into the outbox, then deliver.
    An alert problem is logged; it never changes the run's outcome. ``step``: the run's
    ``session.Steps``, which times them."""
    import logging

    from auditor.alerts.engine import evaluate
    from auditor.alerts.outbox import deliver

    try:
        with step("alerts evaluated"):
            evaluate(store, cfg, now)  # records propagation latency even with alerts off
        if cfg.alerts.get("enabled") and cfg.alerts.get("deliver_after_run") \
                and cfg.alerts.receivers:
            with step("delivered"):
                deliver(store, cfg)
    except Exception:
        logging.getLogger("auditor.alerts").exception("alerts after the run failed")


@main.command()
@config_option
@click.option("--once", is_flag=True, help="Stop when the queue is empty (tests, batch jobs).")
@click.option("--heartbeat", type=click.FloatRange(min=0.5), default=5.0, show_default=True,
              help="Seconds between the worker's heartbeats (a job of a worker silent for "
                   "[run] stalled_after seconds is given to another).")
@click.option("--prune-after", "prune_after", type=click.IntRange(min=0), default=None,
              metavar="HOURS",
              help="Delete jobs that ended (failed, cancelled, aborted) this many hours ago "
                   "from the queue, at start and then hourly; 0 = keep them. Default: [run] "
                   "job_retention_hours (168).")
def worker(config_path: Path, once: bool, heartbeat: float, prune_after: int | None) -> None:
    """Take the jobs of distributed runs (`auditor run --distributed`) from the queue.

    \b
    The queue lives in the PostgreSQL store of the config ([store] url); start as
    many workers as cores, on any machines that reach the database and see the
    config and its sources at the same paths. SIGTERM or Ctrl-C: the job in hand is
    finished first.

    \b
    Examples:
      auditor worker --config /etc/auditor/config.toml
      auditor worker --once            # until the queue is empty
      auditor worker --prune-after 24  # keep failed jobs a day (default: a week)
    """
    import logging

    from auditor.distributed import run_worker
    from auditor.jobqueue import Pruner
    from auditor.storage import _postgres_url

    cfg = _load(config_path)
    level = logging.getLogger().getEffectiveLevel()

    def announce(url: str) -> None:  # one line, also without -v (-v logs it)
        if not _quiet() and level > logging.INFO:
            err.print(f"auditor worker {os.getpid()} taking jobs of {safe(url)}"
                      + (" until the queue is empty" if once else "")
                      + "; Ctrl-C stops it after the job in hand")

    hours = cfg.run.get("job_retention_hours", 168) if prune_after is None else prune_after
    pruner = Pruner(cfg.store_url, hours) if hours and _postgres_url(cfg.store_url) else None
    if pruner is not None:
        pruner.start()
    try:
        run_worker(cfg.path, once=once, heartbeat=heartbeat, announce=announce)
    finally:
        if pruner is not None:
            pruner.stop()


def _write_metrics(cfg: Config, path: Path) -> None:
    from auditor.service.metrics import store_opener, write_metrics_file

    try:
        write_metrics_file(path, store_opener(cfg.store_url))
    except OSError as e:
        err.print(f"[bold red]error:[/] could not write the metrics file {safe(path)}: {safe(e)}")


class _progress:
    """A rich progress display on a terminal, as a run listener; nothing in pipes or
    with -q."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet

    def __enter__(self):
        if self.quiet or not err.is_terminal:
            return None
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.p = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                          TextColumn("{task.completed:,} listings"), TimeElapsedColumn(),
                          console=err, transient=True)
        self.p.__enter__()
        return ProgressListener(self.p)

    def __exit__(self, *exc: Any) -> None:
        if getattr(self, "p", None) is not None:
            self.p.__exit__(*exc)


class ProgressListener:
    """Listings read per channel, on a rich ``Progress``: the ``source_progress`` hook."""

    def __init__(self, progress: Any):
        self.p = progress
        self.tasks: dict[str, Any] = {}

    @hookimpl
    def source_progress(self, event: Any) -> None:
        if event.channel not in self.tasks:
            self.tasks[event.channel] = self.p.add_task(event.channel, total=None)
        self.p.update(self.tasks[event.channel], completed=event.listings)

    @hookimpl
    def channel_finished(self, event: Any) -> None:
        """A channel done says so (its spinner stops): in a distributed run the count
        shows once the read job is done, and the shard jobs take their time after it."""
        if event.channel not in self.tasks:
            self.tasks[event.channel] = self.p.add_task(event.channel, total=None)
        self.p.update(self.tasks[event.channel], description=f"{event.channel} {event.status}",
                      total=event.listings, completed=event.listings)


def print_report(report, code: int | None = None, exit_line: bool = True) -> None:
    """The run summary; ``exit_line``: end with the exit code and what to do next
    (the demo, whose exit code means something else, leaves it out)."""
    for r in getattr(report, "interrupted_before", ()):
        out.print(f"[yellow]note:[/] the previous run {r['id']} was interrupted at "
                  f"{safe(r['at'])}: {safe(r['reason'])}")
    m = report.master
    if report.master_error and m.get("kept_previous"):
        out.print(f"[red]master import rejected[/]; the previous snapshot "
                  f"({m.get('records')} records) stays in force:")
        out.print(safe(report.master_error))
    elif report.master_error and m.get("rejected"):
        out.print("[red]master import rejected[/]; there is no earlier snapshot, so no "
                  "channel was audited:")
        out.print(safe(report.master_error))
    elif report.master_error:
        out.print(f"[red]master problem:[/] {safe(report.master_error)}")
    else:
        out.print(f"master: {m.get('records')} records (added {m.get('added')}, changed "
                  f"{m.get('changed')}, removed {m.get('removed')}) from {safe(m.get('source'))}")
    t = Table(title=f"run {report.run_id}: {report.status.value}", title_justify="left")
    for col in ("channel", "status", "listings", "linked", "unlinked", "failed", "warn",
                "new", "resolved", "score", "errors"):
        t.add_column(col, justify="left" if col in ("channel", "status") else "right")
    for s in report.channels:
        colour = {"complete": "green", "partial": "yellow", "failed": "red"}[s.status.value]
        t.add_row(safe(s.channel), f"[{colour}]{s.status.value}[/]", f"{s.listings:,}",
                  f"{s.linked:,}", f"{s.unlinked + s.ambiguous:,}", str(s.open_failed),
                  str(s.open_warn), str(s.opened), str(s.resolved),
                  "-" if s.score is None else f"{s.score:.1%}", str(s.errors))
    if report.channels:
        out.print(t)
    else:  # not an empty table
        out.print(f"run {report.run_id}: {report.status.value}, no channel audited")
    suggested = sum(s.suggested for s in report.channels)
    if suggested:
        out.print(f"{wording.counted(suggested, 'suggested link')} wait for a person (no "
                  f"findings until "
                  f"confirmed): `auditor links --state suggested`")
    for s in report.channels:
        if s.message:
            out.print(f"[yellow]{safe(s.channel)}:[/] {safe(s.message)}")
        if s.presence_held:
            out.print(f"[yellow]{safe(s.channel)}: presence held:[/] {safe(s.presence_held)}")
        for note in s.notes:
            out.print(f"{safe(s.channel)}: {safe(note)}")
        if s.not_carried:
            fields = {f for fs in s.not_carried.values() for f in fs}
            out.print(f"{safe(s.channel)}: {safe(wording.not_carried(fields))}")
    if not exit_line:
        return
    code = report.exit_code if code is None else code
    hint = {0: "all consistent" if report.exit_code == 0 else "nothing to fail on "
            "(see --fail-on)", 1: "findings: see `auditor findings --open`",
            2: "some sources could not be read completely: see `auditor runs --errors`"}[code]
    if code == 2 and report.master_error and not report.channels:
        hint = "the master was rejected: see `auditor runs --errors`"
    elif code == 2 and report.master_error and all(s.status.value == "complete"
                                                   for s in report.channels):
        # every channel was read: it is the master that was not
        hint = ("the master was rejected, the channels were audited against the previous "
                "snapshot: see `auditor runs --errors`")
    held = [s.channel for s in report.channels if s.presence_held]
    if code == 2 and held and report.status.value == "complete" and not report.master_error:
        hint = (f"presence held for {', '.join(held)} (see above): findings of the listings "
                f"read are in `auditor findings --open`")
    out.print(f"exit {code}: {hint}")


# ---------------------------------------------------------------------------- findings

FINDING_COLUMNS = ["channel", "sku", "check", "field", "outcome", "severity", "expected",
                   "actual", "state", "message", "fingerprint"]
# What a person reads first, in a terminal of 100 columns: the message whole, and the
# fingerprint shortened (``fp``) as `findings ack|snooze|resolve|show FP` take it.
FINDING_VIEW = ["sku", "channel", "check", "severity", "message", "fp"]
FINDING_WIDE = ["sku", "channel", "check", "field", "outcome", "severity", "state", "expected",
                "actual", "message", "fingerprint"]
FINDING_STATES = ("open", "resolved", "acknowledged", "snoozed", "reopened", "not_evaluated")


def _rows_out(rows: list[dict[str, Any]], columns: list[str], fmt: str, title: str,
              widths: dict[str, int] | None = None) -> None:
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, default=str, ensure_ascii=False))
    elif fmt == "csv":
        _csv_out(rows, columns)
    elif not rows:  # "0 silences", not an empty table
        out.print(title)
    else:
        _table_out(rows, columns, title, widths)


def _table_out(rows: list[dict[str, Any]], columns: list[str], title: str,
               widths: dict[str, int] | None = None, wrap: tuple[str, ...] = (),
               wrap_min: int = 20) -> None:
    """A table sized to the terminal ($COLUMNS in pipes and tests). Short identifying
    columns are never folded; the columns in ``wrap`` (a message) take the rest of
    the width (at least ``wrap_min`` each) and wrap at spaces, whole; other long values
    are cut at ``widths``."""
    con = Console(highlight=False, width=_width())
    t = Table(title=title, title_justify="left", expand=False)
    for c in columns:
        if c in wrap:
            t.add_column(c, overflow="fold", ratio=1, min_width=wrap_min)
        else:
            t.add_column(c, no_wrap=True, overflow="ellipsis")
    for r in rows:
        t.add_row(*[safe(_cell(r.get(c)), None if c in wrap else (widths or {}).get(c, 60))
                    for c in columns])
    con.print(t)


_ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?")


def _cell(v: Any) -> Any:
    """A table cell: an empty list or mapping is blank (not `[]`, `{}`), a list is its items
    joined, a mapping compact JSON, a time in UTC to the second as the other lines print
    it (`2026-11-30 03:18:37 UTC`, not `2026-11-30T03:18:37.686516+00:00`)."""
    if isinstance(v, (list, tuple)):
        return ", ".join(str(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v, ensure_ascii=False, default=str) if v else ""
    if isinstance(v, datetime) or (isinstance(v, str) and _ISO_TIME.fullmatch(v)):
        return f"{_utc(v):%Y-%m-%d %H:%M:%S} UTC"
    return v


def _utc(v: Any) -> datetime:
    """A time (a datetime or ISO text; naive is UTC) in UTC."""
    d = v if isinstance(v, datetime) else datetime.fromisoformat(str(v))
    return (d if d.tzinfo else d.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def _store_for(config_path: Path) -> Store:
    """The configured store, which must exist already (the read-only commands)."""
    from auditor.storage import open_store

    return open_store(_load(config_path).store_url, create=False)



def _short_fingerprints(rows: list[dict[str, Any]]) -> None:
    """Each row's ``fp``: its fingerprint's first 8 characters, more when two rows shown
    would share them (as git shortens commit ids); the commands on one finding take it."""
    n = 8
    while n < 40 and len({r["fingerprint"][:n] for r in rows}) < len(rows):
        n += 2
    for r in rows:
        r["fp"] = r["fingerprint"][:n]


def _findings_title(rows: list[dict[str, Any]]) -> str:
    """'N findings', and how many failed or could not be compared when both are listed
    (a channel whose images cannot be fetched lists one not_evaluated finding per image)."""
    from collections import Counter

    n = Counter(r.get("outcome") for r in rows)
    title = wording.counted(len(rows), "finding")
    if n.get("not_evaluated") and len(n) > 1:
        parts = [f"{n[o]} {label}" for o, label in (("failed", "failed"), ("warn", "warn"),
                                                     ("not_evaluated", "not evaluated"))
                 if n.get(o)]
        title += ": " + ", ".join(parts) + " (--state open leaves out the not evaluated)"
    return title


@main.group(invoke_without_command=True)
@config_option
@click.option("--open", "only_open", is_flag=True,
              help="Only findings not resolved: open, reopened, acknowledged, snoozed and "
                   "not evaluated (--state open: the open ones alone).")
@click.option("--state", "states", multiple=True, help="Only findings in this state "
              "(open, resolved, ...; repeatable).")
@click.option("--channel", "channels", multiple=True, help="Only this channel (repeatable).")
@click.option("--check", "check_names", multiple=True,
              help="Only this check: title, price, ... (repeatable).")
@click.option("--severity", "severities", multiple=True,
              help="Only this severity: critical, major, minor, info (repeatable).")
@click.option("--sku", help="Only this SKU.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many rows (1 or more).")
@click.option("--wide", is_flag=True, help="Table: every column, not only SKU, channel, "
              "check, severity and message.")
@format_option
@click.pass_context
def findings(ctx: click.Context, config_path: Path, only_open: bool, states: tuple[str, ...],
             channels: tuple[str, ...], check_names: tuple[str, ...],
             severities: tuple[str, ...], sku: str | None, limit: int | None, wide: bool,
             fmt: str) -> None:
    """List findings, most severe first; or act on one (ack, snooze, resolve, show).

    The state column shows the lifecycle: open, acknowledged, snoozed, resolved or
    reopened (not_evaluated: kept only to say why a comparison could not be made); the
    alert column whether it alerts (firing), waits (pending: confirming or in
    propagation grace) or is muted (suppressed). --open: every finding not resolved.
    The fp column is the fingerprint shortened, as `findings ack|snooze|resolve|show`
    take it (--wide shows it whole).

    An unknown channel, check, severity or state is an error, never an empty list.

    \b
    Examples:
      auditor findings --open
      auditor findings --channel google --channel meta --check price --format json
      auditor findings --severity critical --wide
      auditor findings ack 3f2a9c --note "feed fix deployed tonight"
    """
    if ctx.invoked_subcommand is not None:
        return
    from datetime import datetime, timezone

    from auditor.alerts.policy import display_state
    from auditor.model import Severity

    cfg = _load(config_path)
    store = _store_for(config_path)
    try:
        _known("channel", channels, [c.name for c in cfg.channels] +
               list(store.finding_values("channel")))
        _known("check", check_names, list(plugins.checks()) +
               list(store.finding_values("check_name")))
        _known("severity", severities, [v.value for v in Severity])
        _known("state", states, list(FINDING_STATES) + list(store.finding_values("state")))
        if only_open and "resolved" in states:
            raise click.BadParameter("--open contradicts --state resolved", param_hint="--open")
        # stored: open (any of open, acknowledged, snoozed, reopened, not_evaluated) or resolved
        stored = sorted({"resolved" if st == "resolved" else "open" for st in states}
                        | ({"open"} if only_open else set()))
        rows = [f.to_dict() for f in store.query_findings(
            states=stored, channels=channels, checks=check_names, severities=severities,
            sku=sku, limit=None if states else limit)]
        episodes = store.finding_episodes([r["fingerprint"] for r in rows])
    finally:
        store.close()
    now = datetime.now(timezone.utc)
    for r in rows:
        ep = episodes.get(r["fingerprint"])
        r["state"] = display_state({**r, "episode_event": ep and ep[0], "since": ep and ep[1]},
                                   now)
        r["alert"] = r.get("alert_state") if r["state"] != "resolved" else None
    if states:
        rows = [r for r in rows if r["state"] in states][:limit]
    if fmt == "table" and not rows:  # not an empty table
        out.print("0 findings" + (" match these filters" if only_open or channels or
                                  check_names or severities or states or sku else ""))
        return
    if fmt == "table":
        _short_fingerprints(rows)
        _table_out(rows, FINDING_WIDE + ["alert"] if wide else FINDING_VIEW,
                   _findings_title(rows), {"expected": 40, "actual": 40}, wrap=("message",))
    else:
        _rows_out(rows, FINDING_COLUMNS[:-2] + ["alert", "message", "fingerprint"], fmt,
                  wording.counted(len(rows), "finding"))


@main.group(invoke_without_command=True)
@config_option
@click.option("--channel", "channels", multiple=True, help="Only this channel (repeatable).")
@click.option("--state", type=click.Choice(["linked", "suggested", "unlinked"]),
              help="Only listings in this state: linked (checks run), suggested (a person "
                   "decides; no findings until then) or unlinked.")
@format_option
@click.pass_context
def links(ctx: click.Context, config_path: Path, channels: tuple[str, ...], state: str | None,
          fmt: str) -> None:
    """Show how each listing was linked to its master: state, method, confidence, and for
    a listing not linked the reason and the evidence; confirm or reject suggested pairs.

    \b
    Examples:
      auditor links --channel google --format csv
      auditor links --state suggested
      auditor links confirm GGL-1234 SKU-9       # link the listing to SKU-9 from now on
      auditor links reject GGL-1234 SKU-9        # never suggest SKU-9 for it again
    """
    if ctx.invoked_subcommand is not None:
        if len(channels) > 1:
            raise click.BadParameter("confirm and reject take one channel", param_hint="--channel")
        ctx.obj = {"config_path": config_path, "channel": channels[0] if channels else None}
        return
    cfg = _load(config_path)
    store = _store_for(config_path)
    try:
        _known("channel", channels, [c.name for c in cfg.channels] +
               list(store.finding_values("channel")))
        rows = [r.to_dict() for ch in (dict.fromkeys(channels) or [None])
                for r in store.link_states(ch, state)]
    finally:
        store.close()
    columns = ["channel", "listing_key", "state", "sku", "method", "confidence", "candidates",
               "reason", "evidence"]
    if fmt == "table" and rows:
        # the key is given whole to `links confirm|reject` (a page URL on a `site` channel):
        # folded, never cut; the free text wraps, and candidates or evidence no listing shown
        # has are left out, so channel, state and SKU keep their width in a terminal
        shown = [c for c in columns if c not in ("candidates", "evidence")
                 or any(_cell(r.get(c)) not in (None, "") for r in rows)]
        _table_out(rows, shown, wording.counted(len(rows), "link"),
                   wrap=("listing_key", "candidates", "reason", "evidence"), wrap_min=12)
    else:
        _rows_out(rows, columns, fmt, wording.counted(len(rows), "link"))


_sub_config = click.option(
    "--config", "-c", "sub_config", default=None, type=click.Path(dir_okay=False, path_type=Path),
    help="Config file [default: the --config before the command, else $AUDITOR_CONFIG, "
         "else config.toml].")


def _decide(ctx: click.Context, listing: str, sku: str, channel: str | None,
            decision: str, note: str | None, sub_config: Path | None) -> None:
    from datetime import datetime, timezone

    config_path = sub_config or (ctx.obj["config_path"] if ctx.obj else Path("config.toml"))
    channel = channel or (ctx.obj or {}).get("channel")
    store = _store_for(config_path)
    try:
        chans = store.listing_channels(listing)
        if channel is None:
            if not chans:
                raise AuditorError(f"no listing {listing!r} on any channel (see `auditor links`)")
            if len(chans) > 1:
                raise AuditorError(f"listing {listing!r} is on {', '.join(chans)}: "
                                   f"name one with --channel")
            channel = chans[0]
        elif channel not in chans:
            raise AuditorError(f"no listing {listing!r} on channel {channel!r}")
        if decision == "confirmed" and store.master_for(sku) is None:
            raise AuditorError(f"no master record with SKU {sku!r}")
        store.decide_link(channel, listing, sku, decision, datetime.now(timezone.utc), note)
    finally:
        store.close()
    out.print(f"{escape(channel)}: {escape(listing)} -> {escape(sku)} {decision}"
              + (" (applies from now on; findings follow the next run)"
                 if decision == "confirmed" else " (never suggested again)"))


@links.command("confirm")
@click.argument("listing")
@click.argument("sku")
@click.option("--channel", help="The listing's channel (needed when its key is on several).")
@click.option("--note", help="Why (kept with the decision).")
@_sub_config
@click.pass_context
def links_confirm(ctx: click.Context, listing: str, sku: str, channel: str | None,
                  note: str | None, sub_config: Path | None) -> None:
    """Confirm that LISTING shows SKU: linked from now on, over any automatic link.

    \b
    Example:
      auditor links confirm GGL-1234 SKU-9 --channel google
    """
    _decide(ctx, listing, sku, channel, "confirmed", note, sub_config)


@links.command("reject")
@click.argument("listing")
@click.argument("sku")
@click.option("--channel", help="The listing's channel (needed when its key is on several).")
@click.option("--note", help="Why (kept with the decision).")
@_sub_config
@click.pass_context
def links_reject(ctx: click.Context, listing: str, sku: str, channel: str | None,
                 note: str | None, sub_config: Path | None) -> None:
    """Reject the pair: SKU is never linked to or suggested for LISTING again.

    \b
    Example:
      auditor links reject GGL-1234 SKU-9
    """
    _decide(ctx, listing, sku, channel, "rejected", note, sub_config)


@main.group(invoke_without_command=True)
@config_option
@click.option("--limit", type=click.IntRange(min=1), default=10, show_default=True,
              help="The latest this many runs (1 or more).")
@click.option("--errors", "show_errors", is_flag=True, help="Also list recorded bad rows/pages.")
@format_option
@click.pass_context
def runs(ctx: click.Context, config_path: Path, limit: int, show_errors: bool, fmt: str) -> None:
    """Recent runs with each source's status (complete, partial, failed).

    \b
    Examples:
      auditor runs --limit 3 --errors
      auditor runs accept 12 google     # accept the drop run 12 held for google
    """
    if ctx.invoked_subcommand is not None:
        return
    store = _store_for(config_path)
    rows = []
    for run_rec in store.runs(limit):
        r = run_rec.to_dict()
        r["sources"] = [s.to_dict() for s in store.run_sources(run_rec.id)]
        held = {h.channel: h for h in store.presence_holds(run_rec.id)}
        for s in r["sources"]:
            h = held.get(s["source"])
            s["presence_held"] = None if h is None else {
                "reason": h.reason, "state": h.state, "vanished": len(h.vanished),
                "held_findings": len(h.findings)}
        if show_errors:
            r["errors"] = [e.to_dict() for e in store.run_errors(run_rec.id, limit=200)]
        summary = r.pop("summary", None) or {}
        if summary.get("master"):
            r["master"] = summary["master"]
        if summary.get("interrupted"):
            r["interrupted"] = summary["interrupted"]
        if summary.get("pid"):
            r["pid"] = summary["pid"]
        rows.append(r)
    store.close()
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if fmt == "csv":  # a row per run and source (the run's times, not the source's)
        flat = [{**s, "run_id": r["id"], "run_status": r["status"],
                 "started_at": r["started_at"], "finished_at": r["finished_at"],
                 "interrupted": (r.get("interrupted") or {}).get("reason"),
                 # held presence in columns of its own, not as JSON in one cell
                 **{f"presence_{k}": v for k, v in (s.get("presence_held") or {}).items()}}
                for r in rows for s in r["sources"] or [{}]]  # a run that read none: a row
        _csv_out(flat, ["run_id", "run_status", "started_at", "finished_at", "source", "status",
                        "listings", "errors", "message", "presence_state", "presence_reason",
                        "presence_vanished", "presence_held_findings", "interrupted"])
        return
    if not rows:
        from auditor.storage import describe

        out.print(f"no runs yet in {safe(describe(_load(config_path).store_url))}: run "
                  f"`auditor run`")
    for r in rows:
        out.print(f"[bold]run {r['id']}[/] {_span(r['started_at'], r['finished_at'])}: "
                  f"{r['status']}")
        if r.get("interrupted"):
            out.print(f"  interrupted at {r['interrupted'].get('at')}: "
                      f"{safe(r['interrupted'].get('reason'))}")
        elif r["status"] == "interrupted":
            out.print("  interrupted: no reason recorded (its process was stopped or lost)")
        elif r["status"] == "running" and r.get("pid") and not _pid_alive(r["pid"]):
            out.print(f"  its process {r['pid']} is gone: the next run records it interrupted")
        m = r.get("master")
        if m and m.get("rejected"):
            out.print(f"  master: rejected, {wording.counted(m.get('error_count', 0), 'error')} in "
                      f"{safe(m.get('source'))}; "
                      + (f"the previous snapshot ({m.get('records')} records) stayed in force"
                         if m.get("kept_previous") else "no earlier snapshot: nothing audited"))
        elif m and m.get("unchanged"):
            out.print(f"  master: unchanged, {m.get('records')} records")
        elif m:
            out.print(f"  master: {m.get('records')} records (added {m.get('added')}, changed "
                      f"{m.get('changed')}, removed {m.get('removed')}"
                      + (f", {m.get('skipped_rows')} bad rows skipped" if m.get("skipped_rows")
                         else "") + ")")
        for s in r["sources"]:
            out.print(f"  {safe(s['source'])}: {s['status']}, {s['listings']} listings, "
                      f"{s['errors']} errors" + (f" ({safe(s['message'])})" if s["message"] else ""))
            h = s["presence_held"]
            if h:
                out.print(f"    presence {h['state']}: {safe(h['reason'])}"
                          + (f" ({wording.counted(h['held_findings'], 'presence finding')} held)"
                             if h["state"] == "held" else ""))
            elif s["status"] in ("partial", "failed"):
                out.print(f"    presence not concluded ({_read_was(s['status'])}): no "
                          f"listing counts as missing or removed")
        for e in r.get("errors", []):
            out.print(f"    {safe(e['source'])} {safe(e['location'])}: {safe(e['reason'])}")


def _span(started: Any, finished: Any) -> str:
    """'2026-11-30 00:21:49 -> 00:21:51 UTC (1.9 s)' for a run's times (ISO text or
    datetimes), the day again when it ended on another; '... -> …' while it runs."""
    a = _utc(started)
    if not finished:
        return f"{a:%Y-%m-%d %H:%M:%S} UTC -> …"
    b = _utc(finished)
    end = f"{b:%H:%M:%S}" if b.date() == a.date() else f"{b:%Y-%m-%d %H:%M:%S}"
    return f"{a:%Y-%m-%d %H:%M:%S} -> {end} UTC ({(b - a).total_seconds():.1f} s)"


@runs.command("accept")
@config_option
@click.argument("run_id", metavar="RUN", type=int)
@click.argument("channel")
def runs_accept(config_path: Path, run_id: int, channel: str) -> None:
    """Accept what a run held for a channel: a sharp drop in items is real.

    The presence findings the run computed open now (missing listings), the open
    ones it would have resolved resolve, and the listings that vanished count as
    removed. Only the channel's latest run can be accepted.

    \b
    Example:
      auditor runs accept 12 google
    """
    from datetime import datetime, timezone

    cfg = _load(config_path)
    try:
        _known("channel", [channel], [c.name for c in cfg.channels])
    except click.BadParameter as e:
        raise click.BadParameter(e.message, param_hint="CHANNEL") from None
    store = _store_for(config_path)
    try:
        with store.run_lock():
            counts = store.accept_presence_hold(run_id, channel, datetime.now(timezone.utc))
    finally:
        store.close()
    out.print(f"run {run_id}, {safe(channel)}: accepted; "
              f"{wording.counted(counts['opened'], 'finding')} opened, {counts['resolved']} "
              f"resolved, {wording.counted(counts['removed'], 'listing')} removed")


def _read_was(status: str) -> str:
    return "the read failed" if status == "failed" else "the read was partial"


def _pid_alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


@main.group(invoke_without_command=True)
@config_option
@click.option("--run", "run_id", type=int, help="Run id (default: the latest).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("report.html"), show_default=True, help="Where to write the HTML.")
@click.pass_context
def report(ctx: click.Context, config_path: Path, run_id: int | None, output: Path) -> None:
    """Write an HTML consistency report of a run: sources, scores, open findings.

    `auditor report weekly` writes the weekly report for managers instead.

    \b
    Example:
      auditor report --output /tmp/report.html && xdg-open /tmp/report.html
    """
    if ctx.invoked_subcommand is not None:
        return
    from auditor.reports.run_report import write_report

    store = _store_for(config_path)
    try:
        path = write_report(store, output, run_id)
    finally:
        store.close()
    # the address a browser opens (as `auditor demo` prints it)
    out.print(f"wrote {safe(path)}: {safe(Path(path).resolve().as_uri())}")


@report.command("weekly")
@config_option
@click.option("--week", metavar="YYYY-Www",
              help="ISO week, e.g. 2026-W47 (default: the last complete week).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Archive folder (default: [report].out_dir); the report goes in <out>/<week>/.")
@click.option("--email", "send_email", is_flag=True,
              help="Also email it to [report].email_to through [smtp].")
@click.option("--to", "recipients", multiple=True, help="Email recipient instead of [report].email_to (repeatable).")
@click.option("--now", "now_text", metavar="ISO-TIME", help="Report as if it were this time (tests, back-filling).")
def report_weekly(config_path: Path, week: str | None, out_dir: Path | None, send_email: bool,
                  recipients: tuple[str, ...], now_text: str | None) -> None:
    """Write the weekly consistency report: per channel the share of live SKUs fully
    consistent, grade, trend, findings, incidents and the products with most impact.

    \b
    Writes <out>/<week>/index.html (self-contained), report.txt, the open findings
    as CSV and a fix file per drifting channel (a supplemental feed for Google
    Merchant), and refreshes <out>/index.html, the archive.

    \b
    Example:
      auditor report weekly --week 2026-W47 --out reports/ --email
    """
    from datetime import datetime, timezone

    from auditor import mail
    from auditor.reports.weekly import make_report, write_archive

    cfg = _load(config_path)
    now = None
    if now_text:
        try:
            now = datetime.fromisoformat(now_text)
        except ValueError:
            raise click.BadParameter(f"{now_text!r} is not an ISO 8601 time",
                                     param_hint="--now") from None
        if now.tzinfo is None:
            now = now.replace(tzinfo=timezone.utc)
    store = _store_for(config_path)
    try:
        rep = make_report(store, cfg, week, now, cfg.report.get("ui_base_url"))
    finally:
        store.close()
    folder = write_archive(rep, out_dir or cfg.resolve_path(cfg.report.get("out_dir")
                                                            or "weekly-reports"))
    out.print(f"wrote {safe(folder / 'index.html')} "
              f"({wording.counted(len(rep.attachments), 'attachment')})")
    if send_email:
        to = list(recipients) or list(cfg.report.get("email_to") or [])
        msg = mail.build_message(cfg.smtp, to, rep.subject, rep.text, rep.html, rep.attachments)
        mail.send(cfg.smtp, msg)
        out.print(f"emailed to {safe(', '.join(to))}")


# ---------------------------------------------------------------------------- config

@main.group("config")
def config_group() -> None:
    """Validate the config and list every setting.

    \b
    Examples:
      auditor config check                 # the file, then every source it names
      auditor config check --offline -c /etc/auditor/config.toml
      auditor config options | grep -A3 '\\[http\\]'
    """


@config_group.command("check")
@config_option
@click.option("--offline", is_flag=True,
              help="Only validate the file: do not try to open the sources or the store "
                   "it names.")
def config_check(config_path: Path, offline: bool) -> None:
    """Validate a config file (every bad table and key named), then try to open every
    source it names: files exist, URLs answer, environment variables are set; and the
    store: a PostgreSQL server accepts the URL's login to its database (no table is
    created), a SQLite file's folder exists and an existing file is a database; neither
    has a schema newer than this auditor.

    \b
    Examples:
      auditor config check --config config.toml
      auditor config check --offline        # the file only, no source opened
    Exit codes: 0 valid (and every source opens), 2 problems (each listed).
    """
    try:
        cfg = _load(config_path)
    except ConfigError as e:
        err.print(f"[bold red]error:[/] {safe(e)}")
        sys.exit(EXIT_ERROR)
    from auditor.alerts.config import unrouted_warnings

    for warning in unrouted_warnings(cfg.alerts):
        err.print(f"[yellow]warning:[/] {safe(warning)}")
    if not offline:
        from auditor.probe import probe_sources

        problems = probe_sources(cfg)
        if problems:
            err.print(f"[bold red]error:[/] {safe(config_path)} is valid, but "
                      f"{wording.counted(len(problems), 'source problem')}:")
            for p in problems:
                err.print(f"  - {safe(p)}")
            sys.exit(EXIT_ERROR)
    from auditor.storage import describe as describe_store

    out.print(f"{safe(config_path)}: OK, store {safe(describe_store(cfg.store_url))}, master "
              f"{cfg.master['type']} from {safe(cfg.master['source'])}, "
              f"{wording.counted(len(cfg.channels), 'channel')}: "
              + ", ".join(f"{safe(c.name)} ({c.type})" for c in cfg.channels)
              + ("" if offline else "; every source opens"))


@config_group.command("options")
@format_option
def config_options(fmt: str) -> None:
    """Every setting with its default and meaning: tables, connectors and checks.

    \b
    Examples:
      auditor config options
      auditor config options --format csv   # section, name, default, help
    """
    sections = settings_reference()
    if fmt == "json":
        click.echo(json.dumps(sections, indent=2, default=str))
        return
    if fmt == "csv":
        _csv_out([{"section": title, "name": o["name"],
                   "default": json.dumps(o["default"], default=str), "help": o["help"]}
                  for title, opts in sections.items() for o in opts],
                 ["section", "name", "default", "help"])
        return
    for title, opts in sections.items():
        out.print(f"[bold]{escape(title)}[/]")
        for o in opts:
            out.print(f"  {o['name']} = {safe(json.dumps(o['default'], default=str))}  "
                      f"{safe(o['help'])}")


def settings_reference() -> dict[str, list[dict[str, Any]]]:
    """Every declared setting by section (also used by the documentation test)."""

    def rows(opts: Iterable) -> list[dict[str, Any]]:
        return [{"name": o.name, "default": o.default, "help": o.help} for o in opts]

    sections = {"[store]": rows(STORE_OPTIONS), "[run]": rows(RUN_OPTIONS),
                "[http]": rows(HTTP_OPTIONS), "[serve]": rows(SERVE_OPTIONS),
                "[master]": rows(MASTER_OPTIONS), "[linking]": rows(LINKING_OPTIONS),
                "[smtp]": rows(SMTP_OPTIONS), "[report]": rows(REPORT_OPTIONS),
                "[ui]": rows(UI_OPTIONS),
                "[[channels]] (all types)": rows(CHANNEL_OPTIONS)}
    from auditor.alerts.config import ALERTS_OPTIONS, RECEIVER_OPTIONS, ROUTE_OPTIONS

    sections["[alerts]"] = rows(ALERTS_OPTIONS)
    sections["[[alerts.receivers]]"] = rows(RECEIVER_OPTIONS)
    sections["[[alerts.routes]]"] = rows(ROUTE_OPTIONS)
    for name, conn in sorted(plugins.connectors().items()):
        sections[f"[[channels]] type = \"{name}\""] = rows(conn.options)
    for name, spec in sorted(plugins.checks().items()):
        sections[f"[checks.{name}]"] = rows(spec.all_options)
    return sections


@main.command("connectors")
@format_option
def list_connectors(fmt: str) -> None:
    """List the channel types this auditor can read.

    \b
    Examples:
      auditor connectors
      auditor connectors --format json     # for a program
    """
    rows = [{"type": name, "help": conn.help or (conn.__doc__ or "").strip()}
            for name, conn in sorted(plugins.connectors().items())]
    if fmt != "table":
        _rows_out(rows, ["type", "help"], fmt, "")
        return
    for r in rows:
        out.print(f"[bold]{escape(r['type'])}[/]  {safe(r['help'])}")


@main.command("checks")
@format_option
def list_checks(fmt: str) -> None:
    """List the checks that run on every listing.

    \b
    Examples:
      auditor checks
      auditor checks --format csv
    """
    rows: list[dict[str, Any]] = [{"name": name, "fields": list(spec.fields), "help": spec.help}
                                  for name, spec in plugins.checks().items()]
    if fmt != "table":
        _rows_out(rows, ["name", "fields", "help"], fmt, "")
        return
    for r in rows:
        out.print(f"[bold]{escape(r['name'])}[/]  {safe(r['help'])}")


# ---------------------------------------------------------------------------- init

@main.command("init")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False,
                                                    path_type=Path))
@click.option("--master", "master", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The master export among FILES (default: the first file that is not a "
                   "known channel format).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("config.toml"), show_default=True, help="Where to write the config.")
@click.option("--force", is_flag=True, help="Overwrite an existing config file.")
def init_cmd(files: tuple[Path, ...], master: Path | None, output: Path, force: bool) -> None:
    """Write a commented config.toml from your master and channel files, saying what it
    guessed: each file's connector (Google feed, Amazon report, Shopify export, Square,
    Lightspeed, Meta, any table) and, for tables, which column holds which field, and
    whether its prices include VAT (compared with the master's prices of the SKUs both
    carry: net, or net x (1 + a common VAT rate); it says when it cannot tell).

    Without FILES, the commented template to edit by hand is written.

    \b
    Examples:
      auditor init exports/pim.csv feeds/google.xml pos/berlin.csv
      auditor init --master pim.xlsx pim.xlsx amazon.txt --output audit.toml
    """
    from auditor.init import write_config

    if not files:
        if output.exists() and not force:
            raise AuditorError(f"{output} exists: pass --force to overwrite it")
        template = Path(__file__).resolve().parent.parent / "config.toml"
        if not template.is_file():
            raise AuditorError("no FILES given and no template found: name your master and "
                               "channel files, e.g. auditor init pim.csv google.xml")
        output.write_text(template.read_text(encoding="utf-8"), encoding="utf-8")
        out.print(f"wrote {safe(output)}: the commented template; edit its sources")
        return
    if master is not None and master.resolve() not in {f.resolve() for f in files}:
        files = (master, *files)
    path, guesses = write_config(list(files), output, master, force)
    for g in guesses:
        what = f"master ({g.kind})" if g.role == "master" else \
            f"channel {g.name!r} ({g.kind}{', preset ' + g.options['preset'] if g.options.get('preset') else ''})"
        out.print(f"{safe(g.path)}: {safe(what)}")
        if g.columns:
            out.print("  columns: " + safe(", ".join(f"{f} = {h!r}" for f, h in g.columns.items())))
        for n in g.notes:
            out.print(f"  {safe(n)}")
    out.print(f"wrote {safe(path)}; check the guesses, then `auditor config check --config "
              f"{safe(path)}`")


# ---------------------------------------------------------------------------- extract

@main.command("extract")
@click.argument("target")
@click.option("--url", "page_url", help="The page's URL when TARGET is a saved file "
              "(resolves relative links and the variant= parameter).")
@click.option("--sku", help="Choose the variant or offer with this SKU or GTIN.")
@format_option
@click.option("--json", "as_json", is_flag=True, help="The same as --format json (kept for "
              "scripts written for earlier versions).")
@click.option("--allow-private", is_flag=True,
              help="Allow loopback and private addresses (a shop on your own machine).")
@click.option("--user-agent", default="omni-auditor/0.1 (+https://github.com/omni-auditor/omni-auditor)",
              show_default=True, help="User-Agent for fetching a URL.")
def extract_cmd(target: str, page_url: str | None, sku: str | None, fmt: str, as_json: bool,
                allow_private: bool, user_agent: str) -> None:
    """Show what the auditor reads from one product page, and where each value came from.

    TARGET is an http(s) URL (fetched through the shared client and its outbound
    guard) or a saved HTML file.

    \b
    Examples:
      auditor extract https://shop.example/products/tee --sku TEE-M
      auditor extract saved.html --url https://shop.example/p/1 --format json
      auditor extract http://127.0.0.1:8000/p/1 --allow-private
    Exit codes: 0 product data found, 1 none found, 2 could not read the page.
    """
    from auditor.crawl import fetch_page
    from auditor.extract import LOW_CONFIDENCE, extract as extract_page

    from auditor.errors import FetchError

    if re.match(r"^https?://", target, re.I):
        try:
            body, ctype, final = fetch_page(target, allow_private=allow_private,
                                            user_agent=user_agent)
        except FetchError as e:
            if "allow_private" in e.reason and not allow_private:
                reason = e.reason.replace("; set allow_private to permit)", ")")
                raise AuditorError(f"{target}: {reason}; pass --allow-private to read a shop "
                                   "on this machine or a private network") from None
            raise
        url = page_url or final
    else:
        path = Path(target)
        if not path.is_file():
            raise click.BadParameter(f"{target} is neither an http(s) URL nor a file",
                                     param_hint="TARGET")
        body, ctype, url = path.read_bytes(), None, page_url or path.resolve().as_uri()
    ex = extract_page(body, url, sku=sku, content_type=ctype)
    data = ex.summary()
    if as_json:
        fmt = "json"
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    elif fmt == "csv":
        rows = [{"field": k, "value": ", ".join(v) if isinstance(v, list) else v,
                 "source": data["sources"].get(k, "")}
                for k, v in data.items() if k != "sources"]
        if ex.sale_price is not None:
            rows.append({"field": "sale_price", "value": str(ex.sale_price),
                         "source": ex.sources.get("sale_price")})
        _csv_out(rows, ["field", "value", "source"])
    else:
        table = Table(title=safe(url), show_lines=False)
        for col in ("field", "value", "source", "confidence", "selector that makes it certain"):
            table.add_column(col)

        def conf(k: str) -> str:
            c = ex.confidence.get(k)
            if c is None:
                return ""
            return f"{c:.2f}" + (" (low)" if c < LOW_CONFIDENCE else "")

        for k, v in data.items():
            if k in ("sources", "confidence", "hints", "reason"):
                continue
            shown = ", ".join(v) if isinstance(v, list) else v
            table.add_row(k, safe(shown, 100), safe(data["sources"].get(k, "")), conf(k),
                          safe(ex.hints.get(k, "") if ex.confidence.get(k, 1) < 0.9 else "", 80))
        if ex.sale_price is not None:
            table.add_row("sale_price", safe(ex.sale_price), safe(ex.sources.get("sale_price")),
                          conf("sale_price"), "")
        out.print(table)
        if ex.blocked or ex.reason:
            out.print(f"not a product page: {safe(ex.blocked or ex.reason)}")
        if ex.variants:
            out.print(f"{len(ex.variants)} variants (choose one with --sku or a variant= URL):")
        for i, v in enumerate(ex.variants):
            vs = v.summary()
            out.print(f"variant {i + 1}: sku={safe(vs['sku'])} price={safe(vs['price'])} "
                      f"{safe(vs['currency'])} availability={safe(vs['availability'])}")
    sys.exit(EXIT_OK if ex.is_product else EXIT_FINDINGS)


# ---------------------------------------------------------------------------- serve

@main.command()
@config_option
@click.option("--host", help="Address to listen on (default: [serve] host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535),
              help="Port to listen on (default: [serve] port, 8080).")
@click.option("--no-schedule", is_flag=True,
              help="Serve the web UI, metrics and the API only; run no scheduled audits.")
def serve(config_path: Path, host: str | None, port: int | None, no_schedule: bool) -> None:
    """Run the schedules, and serve the web UI (/), /metrics, /healthz, /readyz and the API.

    Each source (the master, every channel) is audited on its `schedule` (cron) in a
    child process, one at a time per source; sources not read completely within their
    interval run once at start-up. SIGTERM stops gracefully (exit 0), SIGHUP reloads
    the config (a broken one is refused and the old one kept). Write calls of the API
    need the bearer token in AUDITOR_API_TOKEN (or [serve] token).

    \b
    Examples:
      auditor serve --config config.toml
      auditor serve --host 0.0.0.0 --port 9108
      curl -s localhost:8080/metrics | grep auditor_consistency_ratio
    Exit codes: 0 stopped cleanly, 2 could not start.
    """
    from auditor.service.app import serve as run_service

    _load(config_path)  # a broken config stops here, with every problem listed
    import logging

    level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()

    def announce(base: str) -> None:  # one line, also without -v (Ctrl-C stops)
        if not _quiet() and level not in ("info", "debug"):
            err.print(f"auditor serve on {base}: web UI {base}/, metrics {base}/metrics, "
                      f"API {base}/docs; Ctrl-C stops")

    sys.exit(run_service(config_path, host, port, schedule=not no_schedule, log_level=level,
                         announce=announce))


# ---------------------------------------------------------------------------- demo

@main.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=Path("auditor-demo"), show_default=True,
              help="Where the demo data, config and store go.")
@click.option("--serve", is_flag=True,
              help="After the audit, keep the demo shop running and run `auditor serve` on "
                   "the demo world (metrics, API, schedules) until Ctrl-C.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True,
              help="Port of `auditor serve` with --serve.")
def demo(directory: Path, serve: bool, port: int) -> None:
    """Generate the demo world, serve its shop on loopback and audit everything.

    \b
    Examples:
      auditor demo --dir /tmp/auditor-demo
      auditor demo --serve --port 8080     # then open the web UI, http://127.0.0.1:8080/
    Exit codes: 0 the demo ran (its findings are planted on purpose), 2 it could not run.
    """
    from auditor.demo import run_demo

    code = run_demo(directory, serve=serve, console=out, port=port, show_report=functools.partial(print_report, exit_line=False))
    sys.exit(code)


# The alert commands (findings ack|snooze|resolve|show, silence, alerts) live beside the
# alerts package; importing the module registers them on the groups above.
from auditor.alerts import commands as _alert_commands  # noqa: E402,F401


if __name__ == "__main__":  # pragma: no cover
    main()
