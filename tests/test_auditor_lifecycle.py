"""The finding lifecycle rules, without a database."""

import pytest

from auditor import lifecycle as lc
from auditor.lifecycle import Evidence, Previous, transition
from auditor.model import Finding, Outcome, Severity, SourceStatus


def finding(outcome=Outcome.FAILED, expected="1 EUR", actual="2 EUR", key="A"):
    return Finding("price", "google", key, "price", outcome, Severity.CRITICAL,
                   expected=expected, actual=actual, listing_key=key)


def prev(state=lc.OPEN, outcome="failed", expected="1 EUR", actual="2 EUR", check="price",
         key="A"):
    return Previous(state, outcome, expected, actual, check, key)


COMPLETE = Evidence(SourceStatus.COMPLETE, {"A", "B"}, {"price"})


def test_first_sighting_opens():
    t = transition(None, finding(), COMPLETE)
    assert (t.state, t.event, t.seen) == ("open", "opened", True)


def test_open_seen_again_unchanged_has_no_event_but_is_seen():
    t = transition(prev(), finding(), COMPLETE)
    assert (t.state, t.event, t.seen) == ("open", None, True)


@pytest.mark.parametrize("change", [{"actual": "3 EUR"}, {"expected": "9 EUR"},
                                    {"outcome": Outcome.WARN}])
def test_open_seen_with_another_value_or_outcome_changes(change):
    t = transition(prev(), finding(**change), COMPLETE)
    assert (t.state, t.event) == ("open", "changed")


def test_resolved_seen_again_reopens():
    t = transition(prev(state=lc.RESOLVED), finding(), COMPLETE)
    assert (t.state, t.event) == ("open", "reopened")


def test_open_not_seen_resolves_after_a_complete_read():
    t = transition(prev(), None, COMPLETE)
    assert (t.state, t.event, t.seen) == ("resolved", "resolved", False)


def test_resolved_not_seen_stays_as_it_is():
    assert transition(prev(state=lc.RESOLVED), None, COMPLETE) is None
    assert transition(None, None, COMPLETE) is None


def test_a_failed_source_resolves_nothing():
    failed = Evidence(SourceStatus.FAILED, set(), {"price"})
    assert transition(prev(), None, failed) is None
    # ...but what it did see still opens (a failed read may have yielded some listings)
    assert transition(None, finding(), failed).event == "opened"


def test_a_partial_read_resolves_only_listings_it_read():
    partial = Evidence(SourceStatus.PARTIAL, {"A"}, {"price"})
    assert transition(prev(key="A"), None, partial).event == "resolved"
    assert transition(prev(key="B"), None, partial) is None
    assert transition(prev(key=None), None, partial) is None  # a missing-listing finding
    unknown = Evidence(SourceStatus.PARTIAL, None, {"price"})
    assert transition(prev(key="A"), None, unknown) is None


def test_a_check_that_did_not_run_resolves_nothing():
    title_only = Evidence(SourceStatus.COMPLETE, {"A"}, ["title"])
    assert transition(prev(check="price"), None, title_only) is None
    assert transition(prev(check="title"), None, title_only).event == "resolved"


def test_transitions_are_shared_constants():
    """The hot path allocates nothing per finding."""
    assert transition(None, finding(), COMPLETE) is lc.OPEN_NEW
    assert transition(prev(), None, COMPLETE) is lc.RESOLVE
    assert {t.event for t in (lc.OPEN_NEW, lc.OPEN_CHANGED, lc.REOPEN, lc.RESOLVE)} == set(
        lc.EVENTS)


def test_a_whole_history():
    """open -> changed -> resolved -> reopened, over four runs, as a store applies it."""
    events, stored = [], None
    for seen in (finding(), finding(actual="3 EUR"), None, finding(actual="3 EUR")):
        t = transition(stored, seen, COMPLETE)
        events.append(t.event)
        if seen is not None:  # the store keeps the values it saw
            stored = prev(state=t.state, outcome=str(seen.outcome), actual=seen.actual)
        else:
            stored = stored._replace(state=t.state)
    assert events == ["opened", "changed", "resolved", "reopened"]
