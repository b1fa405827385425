"""Alerts: the finding lifecycle beyond open/resolved, routing, receivers and the outbox.

Pure parts (no I/O, no clock: ``now`` is passed in):

* ``policy``    -- what a finding's alert state is now: pending (confirming, in
  propagation grace), firing, or suppressed (acknowledged, snoozed, silenced);
* ``incidents`` -- many findings of one channel sharing a cause become one incident;
* ``routing``   -- routes match labels and send to named receivers, grouped;
* ``messages``  -- what a notification says (text, HTML, JSON).

Edges: ``engine`` reads the store, evaluates the above and records notifications in
the outbox in the same transaction as the alert state they change; ``outbox``
delivers them with retries, backoff and an idempotency key; ``receivers`` speak to
Apprise, a signed JSON webhook, Alertmanager's API v2 and SMTP.
"""
