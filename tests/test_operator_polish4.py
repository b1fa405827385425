"""Fourth operator pass: what a new user and an operator met. The API takes the fingerprint
prefixes the CLI shows, counted words read right, `runs --format csv` keeps held presence
in columns of its own. Each test is a defect met on the product."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditor.cli import main
from auditor.config import load_config
from auditor.storage import open_store
from tests.service_helpers import build_world

HTML = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
TOKEN = "tok-polish4"


@contextlib.contextmanager
def _service(config: Path):
    from fastapi.testclient import TestClient

    from auditor.service.app import Service, create_app

    service = Service(config, load_config(config), schedule=False)
    with TestClient(create_app(service)) as client:
        yield client


def _cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("world")
    config = build_world(d)
    assert _cli("run", "-c", str(config)).exit_code == 1
    return config


def _open_fingerprints(config: Path) -> list[str]:
    store = open_store(config.parent / "auditor.db")
    try:
        return [f.fingerprint for f in store.findings(state="open")]
    finally:
        store.close()


def _unique_prefix(fp: str, others: list[str]) -> str:
    """The shortest prefix (4 characters or more) of ``fp`` no other fingerprint shares."""
    for n in range(4, len(fp) + 1):
        if not any(o.startswith(fp[:n]) for o in others if o != fp):
            return fp[:n]
    raise AssertionError(f"{fp} has no unique prefix")


# ------------------------------------------------------- the API takes unique prefixes

def test_the_api_takes_a_unique_fingerprint_prefix_as_the_cli_does(world, monkeypatch):
    """`auditor findings` shows fingerprints shortened and `findings ack 3f2a9c` takes a
    prefix; the API wanted the whole fingerprint and answered 404 for the same prefix."""
    monkeypatch.setenv("AUDITOR_API_TOKEN", TOKEN)
    auth = {"authorization": f"Bearer {TOKEN}"}
    fps = _open_fingerprints(world)
    fp = fps[0]
    prefix = _unique_prefix(fp, fps)
    assert len(prefix) < len(fp)
    with _service(world) as client:
        one = client.get(f"/api/findings/{prefix}")
        upper = client.get(f"/api/findings/{prefix.upper()}")
        acked = client.post(f"/api/findings/{prefix}/ack", json={"by": "ana"}, headers=auth)
        after = client.get(f"/api/findings/{fp}").json()
        page = client.get(f"/findings/{prefix}", headers=HTML, follow_redirects=False)
    assert one.status_code == 200 and one.json()["fingerprint"] == fp
    assert upper.status_code == 200 and upper.json()["fingerprint"] == fp
    # The answer names the whole fingerprint, so a client can keep it.
    assert acked.status_code == 200 and acked.json() == {"ok": True, "fingerprint": fp}
    assert after["state"] == "acknowledged" and after["ack_by"] == "ana"
    assert after["events"][-1]["event"] == "acknowledged"
    # The web UI's finding page opens it too, at its full address.
    assert page.status_code == 303 and page.headers["location"] == f"/findings/{fp}"


def test_no_finding_is_404_and_an_ambiguous_prefix_409_in_the_api(world, monkeypatch):
    monkeypatch.setenv("AUDITOR_API_TOKEN", TOKEN)
    auth = {"authorization": f"Bearer {TOKEN}"}
    fps = _open_fingerprints(world)
    # Two findings whose fingerprints share a prefix (renamed in place: a store of a few
    # dozen findings rarely has two sharing four characters by chance).
    a, b = fps[-2], fps[-1]
    db = sqlite3.connect(world.parent / "auditor.db")
    with db:
        db.execute("UPDATE findings SET fingerprint = ? WHERE fingerprint = ?",
                   ("fedc01" + a[6:], a))
        db.execute("UPDATE findings SET fingerprint = ? WHERE fingerprint = ?",
                   ("fedc02" + b[6:], b))
    db.close()
    with _service(world) as client:
        ambiguous = client.get("/api/findings/fedc0")
        ambiguous_ack = client.post("/api/findings/fedc0/ack", json={}, headers=auth)
        unique = client.get("/api/findings/fedc01")
        none = client.get("/api/findings/0000000")
        not_hex = client.get("/api/findings/not-a-fingerprint")
        too_short = client.post("/api/findings/fed/resolve", json={}, headers=auth)
        ui_ambiguous = client.get("/findings/fedc0", headers=HTML)
        schema = client.get("/openapi.json").json()
    assert ambiguous.status_code == 409 and "ambiguous" in ambiguous.json()["detail"]
    assert ambiguous_ack.status_code == 409 and "ambiguous" in ambiguous_ack.json()["detail"]
    assert unique.status_code == 200 and unique.json()["fingerprint"] == "fedc01" + a[6:]
    assert none.status_code == 404 and "no finding" in none.json()["detail"]
    assert not_hex.status_code == 404 and "hex, 4 characters or more" in not_hex.json()["detail"]
    assert too_short.status_code == 404
    assert ui_ambiguous.status_code == 404 and "ambiguous" in ui_ambiguous.text
    # Documented where a client reads the API.
    get = schema["paths"]["/api/findings/{fingerprint}"]["get"]
    assert {"404", "409"} <= set(get["responses"])
    assert "unique prefix" in get["parameters"][0]["description"]
