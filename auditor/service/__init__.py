"""`auditor serve`: schedules, Prometheus metrics, the JSON API and health endpoints.

One concept per module: ``cron`` (crontab → APScheduler triggers), ``launcher`` (an audit
in a child process), ``scheduler`` (when each source runs), ``metrics`` (the store read at
scrape time), ``api`` (the JSON API), ``app`` (the ASGI app and its lifespan). Nothing
here is imported by ``auditor run``, except ``metrics`` for ``--metrics-file``.
"""
