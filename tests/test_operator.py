"""What an operator of the scale features meets (docs/scaling.md): the PostgreSQL store's
errors, `[run]` settings of distributed runs, `auditor worker` and `auditor run
--distributed` when something around them is missing or broken. Each test is a defect
found by trying the documented commands as a new operator would."""

from __future__ import annotations

import pytest

from auditor.errors import StoreError
from auditor.storage import postgres, redact

PW = "Pw-secret-42"


@pytest.mark.parametrize("url", [
    f"postgresql://auditor:{PW}@[bad/auditor",              # libpq quotes the URI it rejects
    "postgres://auditor:Pw%2Dsecret-42@[bad/auditor",      # percent-encoded, other scheme
    f"postgresql://auditor@[bad/auditor?password={PW}",    # libpq's query form
])
def test_a_url_the_driver_cannot_parse_never_shows_its_password(url):
    with pytest.raises(StoreError) as e:
        postgres.connect(url)
    msg = str(e.value)
    assert "cannot open the PostgreSQL store" in msg and "IPv6" in msg  # the driver's reason
    assert PW not in msg and "Pw%2Dsecret" not in msg and "***" in msg


def test_redact_hides_every_form_of_the_password():
    url = "postgresql://auditor:p%40ss-w0rd@db:5432/auditor"
    text = f"bad {url}; again postgresql://auditor:p%40ss-w0rd@db:5432/auditor; raw p@ss-w0rd"
    shown = redact(text, url)
    assert "p@ss-w0rd" not in shown and "p%40ss" not in shown
    assert shown.count("postgresql://auditor:***@db:5432/auditor") == 2
    assert redact("no password here", "postgresql://auditor@db/a") == "no password here"
