from pathlib import Path

import pytest

from auditor.config import EnvRef, load_config
from auditor.errors import ConfigError
from tests.conftest import write

GOOD = """
[store]
path = "a.db"
[master]
type = "csv"
source = "master.csv"
[[channels]]
name = "google"
type = "google_merchant"
source = "feeds/google.xml"
schedule = "0 */4 * * *"
[checks.title]
warn_below = 90
[checks.price]
"""


def load(tmp_path: Path, text: str):
    return load_config(write(tmp_path / "config.toml", text))


def problems(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as e:
        load(tmp_path, text)
    return str(e.value)


def test_good_config_loads_with_defaults(tmp_path):
    cfg = load(tmp_path, GOOD)
    assert cfg.store_url == str(tmp_path / "a.db")
    assert [c.name for c in cfg.channels] == ["google"]
    ch = cfg.channels[0]
    assert ch.checks["title"]["warn_below"] == 90.0
    assert ch.checks["title"]["fail_below"] == 85.0  # default filled in
    assert cfg.http["allow_private"] is False


def test_store_url_relative_to_the_config_and_checked(tmp_path):
    with_url = GOOD.replace('path = "a.db"', 'url = "sqlite:///data/b.db"')
    assert load(tmp_path, with_url).store_url == f"sqlite:///{tmp_path / 'data/b.db'}"
    absolute = GOOD.replace('path = "a.db"', 'url = "sqlite:////srv/x.db"')
    assert load(tmp_path, absolute).store_url == "sqlite:////srv/x.db"
    msg = problems(tmp_path, GOOD.replace('path = "a.db"', 'url = "mongodb://h/db"'))
    assert "[store].url" in msg and "unknown scheme 'mongodb'" in msg
    # A PostgreSQL URL is accepted without connecting; a wrong driver is named, not its password.
    pg = GOOD.replace('path = "a.db"', 'url = "postgresql://u:pw@h/db"')
    assert load(tmp_path, pg).store_url == "postgresql://u:pw@h/db"
    msg = problems(tmp_path, GOOD.replace('path = "a.db"', 'url = "postgresql+pg8000://u:pw@h/db"'))
    assert "unknown driver 'postgresql+pg8000'" in msg and "pw@" not in msg
    # `store = "URL"` at the top is short for [store] url = "URL"
    short = 'store = "postgresql://auditor@db:5432/audit"\n' + GOOD.replace(
        '[store]\npath = "a.db"\n', "")
    assert load(tmp_path, short).store_url == "postgresql://auditor@db:5432/audit"
    msg = problems(tmp_path, 'store = "mongodb://h/db"\n' + GOOD.replace(
        '[store]\npath = "a.db"\n', ""))
    assert "unknown scheme 'mongodb'" in msg


def test_example_config_is_valid():
    cfg = load_config(Path(__file__).parent.parent / "config.toml")
    assert cfg.channels


@pytest.mark.parametrize("edit,expected", [
    (('[checks.title]\nwarn_below = 90', '[checks.title]\nwarn_belowe = 90'),
     "[checks.title]: unknown key 'warn_belowe' (did you mean 'warn_below'?)"),
    (('type = "google_merchant"', 'type = "google_merchnt"'),
     "[[channels]] 'google'.type: unknown connector 'google_merchnt' (did you mean 'google_merchant'?)"),
    (('type = "google_merchant"', 'tpye = "google_merchant"'),
     "[[channels]] 'google'.type: missing (expected one of: amazon_listings, google_merchant,"),
    (('[store]', '[smtp]\nhost = "mail.example"\nfrom = "a@example.com"\n[store]'),
     "[smtp]: unknown key 'from' (did you mean 'sender'?)"),
    (('schedule = "0 */4 * * *"', 'schedule = "every hour"'),
     "[[channels]] 'google'.schedule: invalid cron expression 'every hour'"),
    (('[checks.price]', '[checks.prize]'), "[checks.prize]: unknown check (did you mean 'price'?)"),
    (('[store]', '[stor]'), "unknown table [stor] (did you mean 'store'?)"),
    (('warn_below = 90', 'warn_below = "high"'), "[checks.title].warn_below: expected a number, got 'high'"),
    (('type = "csv"', 'type = "xml"'), "[master].type: expected one of csv, jsonl, got 'xml'"),
    (('name = "google"', 'name = "Google Shopping"'), "[[channels]] 'Google Shopping'.name: expected lowercase"),
    (('source = "feeds/google.xml"', 'source = "https://user:pw@feeds.example/x.xml"'),
     "credentials inside a URL are not allowed"),
])
def test_errors_name_table_and_key(tmp_path, edit, expected):
    old, new = edit
    assert old in GOOD
    msg = problems(tmp_path, GOOD.replace(old, new, 1))
    assert str(tmp_path / "config.toml") in msg
    assert expected in msg


def test_every_problem_is_listed_at_once(tmp_path):
    msg = problems(tmp_path, GOOD.replace("warn_below", "warnbelow").replace("[store]", "[stor]"))
    assert "warnbelow" in msg and "[stor]" in msg


def test_missing_master_and_syntax_errors(tmp_path):
    assert "[master] is missing" in problems(tmp_path, '[store]\npath = "x.db"\n')
    assert "TOML syntax error" in problems(tmp_path, "[store\npath=1")
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")


def test_duplicate_channel_names(tmp_path):
    text = GOOD + '\n[[channels]]\nname = "google"\ntype = "google_merchant"\nsource = "x.xml"\n'
    assert "duplicate channel name" in problems(tmp_path, text)


def test_per_channel_check_override_and_unknown_override_key(tmp_path):
    cfg = load(tmp_path, GOOD.replace('schedule = "0 */4 * * *"',
                                      'schedule = "0 */4 * * *"\n[channels.checks.title]\nwarn_below = 80'))
    assert cfg.channels[0].checks["title"]["warn_below"] == 80.0
    assert cfg.checks["title"]["warn_below"] == 90.0
    msg = problems(tmp_path, GOOD.replace('schedule = "0 */4 * * *"',
                                          'schedule = "0 */4 * * *"\n[channels.checks.title]\nwarm = 1'))
    assert "[[channels]] 'google'.checks.title: unknown key 'warm'" in msg


def test_secrets_must_come_from_environment(tmp_path, monkeypatch):
    literal = GOOD.replace('schedule = "0 */4 * * *"',
                           'schedule = "0 */4 * * *"\nheaders = { Authorization = "Bearer abc" }')
    assert "carries a secret" in problems(tmp_path, literal)
    ref = GOOD.replace('schedule = "0 */4 * * *"',
                       'schedule = "0 */4 * * *"\nheaders = { Authorization = { env = "FEED_TOKEN" }, Accept = "text/xml" }')
    cfg = load(tmp_path, ref)
    h = cfg.channels[0].options["headers"]
    assert h["Accept"] == "text/xml"
    assert isinstance(h["Authorization"], EnvRef)
    monkeypatch.delenv("FEED_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="FEED_TOKEN is not set"):
        h["Authorization"].get()
    monkeypatch.setenv("FEED_TOKEN", "s3cret-value")
    assert h["Authorization"].get() == "s3cret-value"
    assert "s3cret" not in repr(cfg)
