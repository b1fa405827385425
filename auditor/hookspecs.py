"""Every extension point of the auditor, in one place (pluggy hook specifications).

A plugin is a module (or any object) with functions decorated ``@hookimpl`` whose
names are the hooks below. Built-in checks and connectors are plugins too: the
``checks`` and ``connectors`` packages implement ``register_checks`` and
``register_connectors`` exactly as a third-party package does. A third-party
package names its plugin module in the ``omni_auditor.plugins`` entry-point group::

    # pyproject.toml of the plugin package
    [project.entry-points."omni_auditor.plugins"]
    my_plugin = "my_plugin"

    # my_plugin.py
    from auditor.hookspecs import hookimpl

    @hookimpl
    def register_checks():
        return [my_check_spec]          # auditor.check.CheckSpec (or functions made with @check)

    @hookimpl
    def run_finished(event):
        print(f"run {event.run_id}: {event.status}")

Two kinds of hooks:

* **Registration** (``register_*``): called once when the plugins load; each
  returns a list of things to make available by name.
* **Run events** (``run_started`` .. ``run_finished``): called while an audit runs,
  each with one keyword argument ``event``, a frozen dataclass from
  ``auditor.events`` that also travels as a JSON line (``event.to_json()``), so a
  listener sees the same events whether the channels ran in forked workers or the
  whole audit ran in a child process (``auditor.child.run_in_child``). A listener
  passed to one session (``AuditSession(listeners=[...])``) sees that session's
  events only; a plugin registered through the entry point sees every run's.
  A listener that raises is logged and skipped: it never stops the audit.

The events of one run, in order: ``run_started``; ``master_imported`` (accepted,
unchanged or rejected); per channel ``source_progress`` (every 1,000 listings and
at the end), ``source_finished``, ``findings_changed`` (only when something
changed), ``channel_finished``; and last ``run_finished`` — also when the run
was interrupted (status ``interrupted``) or could not audit at all (``failed``).
Channels audited in parallel interleave their events; within one channel the
order holds.
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT = "omni_auditor"

hookspec = pluggy.HookspecMarker(PROJECT)
#: Decorate a plugin's hook functions with this.
hookimpl = pluggy.HookimplMarker(PROJECT)


# ------------------------------------------------------------------ registration

@hookspec
def register_connectors() -> list[type]:
    """Connector classes (subclasses of ``auditor.connector.Connector``) to make
    available under their ``type`` name. A type registered twice is an error."""
    raise NotImplementedError  # a specification: plugins implement it


@hookspec
def register_checks() -> list[Any]:
    """Checks to run on every listing: ``auditor.check.CheckSpec`` objects, or
    functions decorated with ``@auditor.check.check``. A name registered twice is an
    error."""
    raise NotImplementedError  # a specification: plugins implement it


@hookspec
def register_receivers() -> list[Any]:
    """Alert receiver types beyond the built-in ones (apprise, webhook, alertmanager,
    email): objects with a ``name`` (the ``type`` of a ``[[alerts.receivers]]`` table)
    and ``send(receiver, payload, timeout, now)``, which raises when the notification
    was not accepted (the outbox retries it). Collected by ``auditor.plugins.receivers()``."""
    raise NotImplementedError  # a specification: plugins implement it


@hookspec
def register_renderers() -> list[Any]:
    """RESERVED for report renderers: objects with a ``name``. The hook is collected
    (``auditor.plugins.renderers()``) but no command uses renderers yet."""
    raise NotImplementedError  # a specification: plugins implement it


# ------------------------------------------------------------------ run events

@hookspec
def run_started(event: Any) -> None:
    """A run began: ``auditor.events.RunStarted`` (run id, time, channels, pid)."""


@hookspec
def master_imported(event: Any) -> None:
    """The master export was read: ``auditor.events.MasterImported``: accepted (a
    new snapshot, or unchanged) or rejected with every error (location, reason)."""


@hookspec
def source_progress(event: Any) -> None:
    """A channel's source has yielded ``event.listings`` listings so far
    (``auditor.events.SourceProgress``); every 1,000 listings and once at the end."""


@hookspec
def source_finished(event: Any) -> None:
    """A channel's source was read: ``auditor.events.SourceFinished`` (status
    complete / partial / failed, listings, bad rows and the first of them, message)."""


@hookspec
def findings_changed(event: Any) -> None:
    """Findings of a channel moved: ``auditor.events.FindingsChanged`` with every
    finding opened, changed, resolved or reopened in this run, in events of at most
    5,000 changes (``runner.FINDING_CHANGES_PER_EVENT``). Not sent when none did."""


@hookspec
def channel_finished(event: Any) -> None:
    """A channel's audit is done: ``auditor.events.ChannelFinished`` (the channel's
    summary: status, counts, findings, score, seconds)."""


@hookspec
def run_finished(event: Any) -> None:
    """The run ended: ``auditor.events.RunFinished`` (status complete / partial /
    failed / interrupted, exit code, durations)."""


#: The run-event hooks, in the order a run emits them.
EVENT_HOOKS = ("run_started", "master_imported", "source_progress", "source_finished",
               "findings_changed", "channel_finished", "run_finished")
