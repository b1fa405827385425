"""Cron means cron: weekdays counted from Sunday = 0 (and 7), translated for APScheduler 3."""

from datetime import datetime, timedelta, timezone

import pytest
from apscheduler.triggers.cron import CronTrigger

from auditor.service.cron import cron_trigger, fire_times, interval, translate_weekdays

WED = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)  # a Wednesday


def days(expr: str, n: int = 7) -> list[str]:
    return [t.strftime("%a") for t in fire_times(cron_trigger(expr), WED, n)]


@pytest.mark.parametrize("expr, weekday", [
    ("0 6 * * 1", "Mon"), ("0 6 * * 0", "Sun"), ("0 6 * * 7", "Sun"), ("0 6 * * 6", "Sat"),
    ("0 6 * * mon", "Mon"), ("0 6 * * SUN", "Sun"),
])
def test_single_weekdays_are_crons_weekdays(expr, weekday):
    assert set(days(expr, 3)) == {weekday}


def test_apscheduler_from_crontab_alone_would_be_wrong():
    # the reason for the translation: APScheduler 3 counts Monday = 0
    t = CronTrigger.from_crontab("0 6 * * 1", timezone="UTC")
    assert t.get_next_fire_time(None, WED).strftime("%a") == "Tue"
    with pytest.raises(ValueError):
        CronTrigger.from_crontab("0 6 * * 7", timezone="UTC")


@pytest.mark.parametrize("field, names", [
    ("1-5", "mon,tue,wed,thu,fri"), ("0", "sun"), ("7", "sun"), ("0,7", "sun"),
    ("*/2", "tue,thu,sat,sun"), ("1-7/3", "mon,thu,sun"), ("5-7", "fri,sat,sun"),
    ("sat,sun", "sat,sun"), ("mon-fri", "mon,tue,wed,thu,fri"), ("*", "*"),
])
def test_weekday_fields_translate(field, names):
    assert translate_weekdays(field) == names


def test_weekday_range_fires_monday_to_friday_only():
    assert days("30 2 * * 1-5", 10) == ["Thu", "Fri", "Mon", "Tue", "Wed", "Thu", "Fri",
                                        "Mon", "Tue", "Wed"]


def test_day_of_month_and_weekday_are_ored_as_in_cron():
    # the 1st of the month OR every Monday
    times = fire_times(cron_trigger("0 6 1 * 1"), WED, 4)
    assert [t.strftime("%a %d") for t in times] == ["Mon 30", "Tue 01", "Mon 07", "Mon 14"]


@pytest.mark.parametrize("expr", ["0 6 * * 8", "0 6 * * x", "0 6 * *", "61 * * * *",
                                  "0 6 * * 5-1", 42])
def test_bad_expressions_are_refused_clearly(expr):
    with pytest.raises(ValueError):
        cron_trigger(expr)


def test_config_accepts_7_for_sunday_and_names_a_bad_schedule(tmp_path):
    from auditor.config import parse_config
    from auditor.errors import ConfigError

    raw = {"master": {"source": "m.csv", "schedule": "0 6 * * 7"},
           "channels": [{"name": "g", "type": "google_merchant", "source": "g.xml",
                         "schedule": "0 6 * * 0"}]}
    cfg = parse_config(raw, tmp_path / "config.toml")
    assert cfg.master["schedule"] == "0 6 * * 7"
    raw["channels"][0]["schedule"] = "0 6 * * 9"
    with pytest.raises(ConfigError) as e:
        parse_config(raw, tmp_path / "config.toml")
    assert "[[channels]] 'g'.schedule" in str(e.value) and "0-7" in str(e.value)


def test_interval_is_the_longest_gap():
    assert interval(cron_trigger("0 */4 * * *"), WED) == timedelta(hours=4)
    assert interval(cron_trigger("0 6 * * 1-5"), WED) == timedelta(days=3)
    assert interval(cron_trigger("0 6 * * 0"), WED) == timedelta(days=7)


def test_time_zone_is_honoured():
    t = cron_trigger("0 6 * * *", "Europe/Berlin")
    first = fire_times(t, WED, 1)[0]
    assert first.astimezone(timezone.utc).hour == 5  # 06:00 CET = 05:00 UTC in November
