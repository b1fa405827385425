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


def test_a_failed_source_opens_and_resolves_nothing():
    failed = Evidence(SourceStatus.FAILED, {"A"}, {"price"})
    assert transition(prev(), None, failed) is None
    # what a failed read did yield before it failed is no evidence either
    assert transition(None, finding(), failed) is None
    assert transition(prev(state=lc.RESOLVED), finding(), failed) is None
    note = prev(outcome="not_evaluated", actual=None)
    assert transition(note, finding(), failed) is None  # a note stays a note
    # an open finding it saw again is still updated (seen), and may change
    assert transition(prev(), finding(), failed) is lc.STILL_OPEN
    assert transition(prev(), finding(actual="3 EUR"), failed) is lc.OPEN_CHANGED


def missing(outcome=Outcome.FAILED):
    """A finding about no listing: a master missing from the channel."""
    return Finding("presence", "google", "M1", "listing", outcome, Severity.CRITICAL,
                   expected="M1", details={"kind": "missing"})


def test_a_partial_read_is_evidence_about_the_listings_it_read():
    partial = Evidence(SourceStatus.PARTIAL, {"A"}, {"price"})
    # an outcome on a listing it read opens, reopens and changes as on a complete read
    assert transition(None, finding(), partial) is lc.OPEN_NEW
    assert transition(prev(state=lc.RESOLVED), finding(), partial) is lc.REOPEN
    assert transition(prev(), finding(), partial) is lc.STILL_OPEN
    assert transition(prev(), finding(actual="3 EUR"), partial) is lc.OPEN_CHANGED
    note = prev(outcome="not_evaluated", actual=None)
    assert transition(note, finding(), partial) is lc.OPEN_NEW  # compared at last
    # an open finding not seen resolves only when its listing was read, its check run
    assert transition(prev(key="A"), None, partial) is lc.RESOLVE
    assert transition(prev(key="B"), None, partial) is None      # B was not read
    assert transition(prev(key="A", check="title"), None, partial) is None  # not run
    assert transition(prev(key="A", state=lc.RESOLVED), None, partial) is None


def test_a_partial_read_concludes_nothing_about_masters_or_unknown_keys():
    partial = Evidence(SourceStatus.PARTIAL, {"A"}, {"price", "presence"})
    # a missing-listing finding neither opens, reopens nor resolves
    assert transition(None, missing(), partial) is None
    assert transition(prev(state=lc.RESOLVED, check="presence", key=None), missing(),
                      partial) is None
    assert transition(prev(check="presence", key=None), None, partial) is None
    # the keys read unknown: nothing resolves
    unknown = Evidence(SourceStatus.PARTIAL, None, {"price"})
    assert transition(prev(key="A"), None, unknown) is None
    assert transition(None, finding(), unknown) is lc.OPEN_NEW  # what it saw still opens
    # a complete read does conclude about masters
    full = Evidence(SourceStatus.COMPLETE, None, {"presence"})
    assert transition(None, missing(), full) is lc.OPEN_NEW
    assert transition(prev(check="presence", key=None), None, full) is lc.RESOLVE


def test_not_evaluated_neither_opens_nor_resolves():
    ne = finding(Outcome.NOT_EVALUATED, actual=None)
    assert transition(prev(), ne, COMPLETE) is None            # stays as it was
    assert transition(prev(state=lc.RESOLVED), ne, COMPLETE) is None
    assert transition(None, ne, COMPLETE) is lc.OPEN_NEW       # kept as a note
    assert transition(None, ne, Evidence(SourceStatus.PARTIAL, {"A"}, {"price"})) is None
    assert transition(prev(state=lc.RESOLVED), ne,
                      Evidence(SourceStatus.PARTIAL, {"A"}, {"price"})) is None
    note = prev(outcome="not_evaluated", actual=None)
    assert transition(note, finding(), COMPLETE).event == "opened"  # compared at last


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
