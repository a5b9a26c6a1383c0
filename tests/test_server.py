"""The embedded Stream API server end to end: a real process on loopback, real HTTP and SQLite."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import schemathesis
import yaml
from conftest import schema_path
from hypothesis import HealthCheck
from hypothesis import settings as hsettings
from schemathesis.specs.openapi import checks as api_checks

from generator.profile import load_profile
from generator.server.faults import Faults
from generator.server.ingest import check_stored
from generator.server.ledger import Ledger, Tenancy
from generator.server.openapi import DESCRIPTION
from generator.server.process import EmbeddedServer
from generator.server.sessions import SessionBook

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "profiles" / "smoke.yaml"
# The spec's schema (or its packaged copy, which test_tracking holds equal to it).
SCHEMA = json.loads(schema_path().read_text())
PROFILE = load_profile(SMOKE)
KEY = PROFILE.client_key
POS = PROFILE.points_of_sale[0].name


class Client:
    """One keep-alive HTTP/1.1 connection to the server; answers are (status, headers, body)."""

    def __init__(self, url: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        assert parsed.hostname == "127.0.0.1"
        self.conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        raw = body if isinstance(body, bytes) or body is None else orjson.dumps(body)
        sent = {"Content-Type": "application/json", **(headers or {})}
        self.conn.request(method, path, body=raw, headers=sent)
        response = self.conn.getresponse()
        data = response.read()
        answer_headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, answer_headers, orjson.loads(data) if data else None

    def browser(self) -> dict[str, Any]:
        status, _, body = self.call(
            "GET", f"/v1.2/browser/create.json?client_key={KEY}&message={{}}"
        )
        assert status == 200
        return dict(body)

    def event(self, browser: str, type_: str = "VIEW", **extra: Any) -> tuple[int, Any]:
        body = {
            "type": type_,
            "browser_id": browser,
            "channel": "WEB",
            "client_key": KEY,
            "currency": "EUR",
            "language": "EN",
            "page": "home",
            "pos": POS,
            **extra,
        }
        status, _, answer = self.call("POST", "/v1.2/events", body, {"X-Library-Version": "1.4.3"})
        return status, answer

    def call_flow(self, browser: str, friendly_id: str = "smoke_popup") -> tuple[int, Any]:
        body = {
            "channel": "WEB",
            "clientKey": KEY,
            "currencyCode": "EUR",
            "friendlyId": friendly_id,
            "language": "EN",
            "pointOfSale": POS,
            "browserId": browser,
            "params": {},
        }
        status, _, answer = self.call("POST", "/v2/callFlows", body)
        return status, answer

    def close(self) -> None:
        self.conn.close()


def stored_event(db: Path, ref: str) -> dict[str, Any] | None:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT body FROM events WHERE ref = ?", (ref,)).fetchone()
    return None if row is None else dict(orjson.loads(row[0]))


def session_of(db: Path, ref: str) -> str:
    event = stored_event(db, ref)
    assert event is not None
    return str(event["sessionRef"])


def stored_refs(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {r for (r,) in conn.execute("SELECT ref FROM events")}


def tracking_profile(tmp_path: Path) -> Path:
    """smoke.yaml plus a flow whose traffic allocation leaves every guest out."""
    data = yaml.safe_load(SMOKE.read_text())
    data["behaviour"]["catalog"].append({"type": "socks", "name": "Socks", "items": 3})
    data["flows"].append(
        {
            "friendlyId": "nobody_sees_this",
            "triggerPages": ["home"],
            "goalProductType": "apparel",
            "trafficAllocation": 0.0,
            "variants": [{"name": "a", "weight": 1.0, "conversionRate": 0.1}],
        }
    )
    path = tmp_path / "tracking.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    base = tmp_path_factory.mktemp("server")
    with EmbeddedServer(tracking_profile(base), db_path=base / "ledger.sqlite3") as s:
        yield s


@pytest.fixture
def client(server: EmbeddedServer) -> Iterator[Client]:
    c = Client(server.url)
    yield c
    c.close()


# --- browser create ---------------------------------------------------------------------------


def test_browser_create_answers_the_documented_shape(client: Client) -> None:
    body = client.browser()
    assert set(body) == {"status", "version", "client_key", "ref", "customer_ref"}
    assert (body["status"], body["version"], body["client_key"]) == ("OK", "1.2", KEY)
    assert body["ref"] != body["customer_ref"]


@pytest.mark.parametrize("query", ["client_key=WrongKey0000000000000000000000XYZ&message={}", ""])
def test_browser_create_refuses_an_unknown_client_key_with_a_json_401(
    client: Client, query: str
) -> None:
    status, headers, body = client.call("GET", f"/v1.2/browser/create.json?{query}")
    assert status == 401 and headers["content-type"] == "application/json"
    assert body["reason"] == "unknown_client_key" and body["error_msg"]
    assert "WrongKey0000" not in body["error_msg"]  # never echoed whole


# --- events -----------------------------------------------------------------------------------


def test_event_post_is_stored_in_stored_form_with_what_the_sdk_sent(
    client: Client, server: EmbeddedServer
) -> None:
    browser = client.browser()["ref"]
    before = server.stats()["stored"]["VIEW"]
    status, answer = client.event(browser, requested_at="2025-03-03T10:00:00.000Z", utm_source="x")
    assert status == 201 and answer["status"] == "OK"
    event = stored_event(server.db_path, answer["ref"])
    assert event is not None
    assert list(event) == [
        "ref",
        "clientKey",
        "createdAt",
        "modifiedAt",
        "type",
        "status",
        "channel",
        "pointOfSale",
        "browserRef",
        "sessionRef",
        "arbitraryData",
    ]
    assert (event["type"], event["status"], event["browserRef"]) == ("VIEW", "PROCESSED", browser)
    assert (event["clientKey"], event["pointOfSale"], event["channel"]) == (KEY, POS, "WEB")
    assert event["arbitraryData"] == {
        "currency": "EUR",
        "language": "EN",
        "page": "home",
        "requested_at": "2025-03-03T10:00:00.000Z",
        "utm_source": "x",
    }
    assert server.stats()["stored"]["VIEW"] == before + 1


def test_event_get_form_and_a_query_string_client_key_are_accepted(
    client: Client, server: EmbeddedServer
) -> None:
    browser = client.browser()["ref"]
    message = urllib.parse.quote(
        json.dumps({"type": "SEARCH", "browser_id": browser, "pos": POS, "product_name": "x"})
    )
    status, _, answer = client.call(
        "GET", f"/v1.2/event/create.json?client_key={KEY}&message={message}"
    )
    assert status == 201
    stored = stored_event(server.db_path, answer["ref"])
    assert stored is not None and stored["type"] == "SEARCH"
    body = {"type": "VIEW", "browser_id": browser, "pos": POS, "page": "p"}
    status, _, answer = client.call("POST", f"/v1.2/events?client_key={KEY}", body)
    assert status == 201


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"browser_id": "b", "client_key": KEY, "pos": POS}, 400, "missing_type"),
        ({"type": "VIEW", "client_key": KEY, "pos": POS}, 400, "missing_browser_id"),
        (
            {"type": "VIEW", "browser_id": "no-such", "client_key": KEY, "pos": POS},
            404,
            "unknown_browser",
        ),
        (
            {"type": "VIEW", "browser_id": "b", "client_key": "nope", "pos": POS},
            401,
            "unknown_client_key",
        ),
        (b'{"type": "VIEW", "browser_id": ', 400, "malformed_json"),
        (b'[{"type": "VIEW"}]', 400, "not_an_object"),
        (b"", 400, "empty_body"),
    ],
)
def test_event_post_bad_inputs_get_clear_json_errors(
    client: Client, server: EmbeddedServer, body: Any, status: int, reason: str
) -> None:
    before = server.stats()
    got, headers, answer = client.call("POST", "/v1.2/events", body)
    assert (got, answer["reason"]) == (status, reason)
    assert headers["content-type"] == "application/json" and len(answer["error_msg"]) > 10
    after = server.stats()
    assert after["total"] == before["total"]
    assert after["rejected"][reason] == before["rejected"].get(reason, 0) + 1


ODD_VALUES: list[Any] = [None, 7, True, [], ["WEB"], {}, {"a": 1}, "", "x" * 300]


def test_odd_field_values_get_a_4xx_never_a_500(client: Client, server: EmbeddedServer) -> None:
    """Every field of each request shape, replaced by each value of the wrong kind."""
    created = client.browser()
    browser = created["ref"]
    _, view = client.event(browser)
    event = {"type": "VIEW", "browser_id": browser, "channel": "WEB", "client_key": KEY}
    event |= {"pos": POS, "page": "home"}
    flow = {"clientKey": KEY, "friendlyId": "smoke_popup", "pointOfSale": POS}
    flow |= {"browserId": browser, "channel": "WEB"}
    status, _, _ = client.call("POST", "/v1/ingest", {"ref": "x"})
    assert status == 400
    for path, body in (("/v1.2/events", event), ("/v2/callFlows", flow)):
        for field in body:
            for odd in ODD_VALUES:
                status, _, answer = client.call("POST", path, {**body, field: odd})
                assert status < 500, (path, field, odd, answer)
                assert status in (200, 201) or answer["reason"]
    stored = stored_event(server.db_path, view["ref"])
    assert stored is not None
    for field in stored:
        for odd in ODD_VALUES:
            line = {**stored, "ref": "0b0e4c1e-2222-4a5a-9a0a-000000000001", field: odd}
            status, _, answer = client.call("POST", "/v1/ingest", line)
            assert status < 500, (field, odd, answer)
            if status == 200:  # any object as arbitraryData, any name as pointOfSale
                assert (field, type(odd)) in {("arbitraryData", dict), ("pointOfSale", str)}


def test_a_body_over_one_mib_is_refused_with_413(client: Client, server: EmbeddedServer) -> None:
    browser = client.browser()["ref"]
    total = server.stats()["total"]
    status, answer = client.event(browser, padding="x" * (1 << 20))
    assert status == 413 and answer["reason"] == "too_large"
    chunks = (b"x" * (1 << 19) for _ in range(3))  # no Content-Length: counted as it arrives
    client.conn.request("POST", "/v1.2/events", body=chunks, encode_chunked=True)
    response = client.conn.getresponse()
    assert response.status == 413 and orjson.loads(response.read())["reason"] == "too_large"
    assert server.stats()["total"] == total
    assert client.event(browser)[0] == 201  # and the connection is still good


def test_wrong_method_gets_405_with_allow_and_unknown_path_404(client: Client) -> None:
    status, headers, body = client.call("GET", "/v1.2/events")
    assert (status, headers["allow"], body["reason"]) == (405, "POST", "method_not_allowed")
    status, headers, body = client.call("POST", "/v1.2/browser/create.json", {})
    assert (status, headers["allow"]) == (405, "GET")
    status, _, body = client.call("GET", "/v1.2/nothing")
    assert (status, body["reason"]) == (404, "not_found")


def test_unknown_pos_is_answered_201_and_dropped_like_cdp(
    client: Client, server: EmbeddedServer
) -> None:
    browser = client.browser()["ref"]
    before = server.stats()
    status, _ = client.event(browser, pos="nowhere/at-all")
    assert status == 201
    after = server.stats()
    assert after["total"] == before["total"]
    assert after["dropped"]["unknown_pos"] == before["dropped"].get("unknown_pos", 0) + 1


# --- sessions ---------------------------------------------------------------------------------


def test_force_close_ends_the_session_and_the_next_event_opens_another(
    client: Client, server: EmbeddedServer
) -> None:
    browser = client.browser()["ref"]
    refs = [client.event(browser, t)[1]["ref"] for t in ("VIEW", "VIEW", "FORCE_CLOSE", "VIEW")]
    sessions = [session_of(server.db_path, r) for r in refs]
    assert sessions[0] == sessions[1] == sessions[2] != sessions[3]
    other = client.browser()["ref"]
    assert session_of(server.db_path, client.event(other)[1]["ref"]) not in sessions


def test_session_book_closes_after_the_timeout_and_on_force_close() -> None:
    counter = iter(range(100))
    book = SessionBook(lambda: f"s{next(counter)}")
    minute = 60_000
    first = book.touch("b", "WEB", 0, 20 * minute)
    assert book.touch("b", "WEB", 19 * minute, 20 * minute) == first
    # Inactivity is measured from the last event, not from the session's start.
    assert book.touch("b", "WEB", 38 * minute, 20 * minute) == first
    later = book.touch("b", "WEB", 58 * minute + 1, 20 * minute)
    assert later != first
    assert book.touch("b", "MOBILE_WEB", 58 * minute + 1, 20 * minute) not in (first, later)
    assert book.touch("b", "WEB", 59 * minute, 20 * minute, close=True) == later
    assert book.touch("b", "WEB", 59 * minute, 20 * minute) not in (first, later)
    assert book.opened == 4


# --- callFlows and TRACKING -------------------------------------------------------------------


def test_call_flows_stores_a_tracking_event_that_meets_the_schema_and_invariants(
    client: Client, server: EmbeddedServer
) -> None:
    created = client.browser()
    browser, guest = created["ref"], created["customer_ref"]
    _, view = client.event(browser)
    status, answer = client.call_flow(browser)
    assert status == 200
    flow = PROFILE.flow("smoke_popup")
    assert flow is not None
    variant_refs = {str(PROFILE.variant_ref(flow, v)): v.name for v in flow.variants}
    assert variant_refs[answer["variant"]["ref"]] == answer["variant"]["name"]
    with sqlite3.connect(server.db_path) as conn:
        (raw,) = conn.execute(
            "SELECT body FROM events WHERE type = 'TRACKING' AND browser_ref = ?", (browser,)
        ).fetchone()
    tracking = orjson.loads(raw)
    jsonschema.Draft202012Validator(SCHEMA).validate(tracking)
    execution = tracking["arbitraryData"]["flowExecution"]
    v3 = tracking["arbitraryData"]["_bx_arbitraryDataV3ga"]
    assert tracking["flowExecutionRef"] == execution["ref"] == answer["flowExecutionRef"]
    assert v3["bxt"]["flowExecution"] == execution
    assert v3["core"] == {"pointOfSale": tracking["pointOfSale"], "channel": tracking["channel"]}
    assert execution["guestRef"] == guest and tracking["browserRef"] == browser
    assert tracking["sessionRef"] == session_of(server.db_path, view["ref"])
    assert execution["flowRef"] == str(PROFILE.flow_ref(flow))
    assert execution["flowFriendlyId"] == "smoke_popup" and execution["status"] == "SUCCESS"
    assert tracking["clientKey"] == KEY
    created_ms = _ms(tracking["createdAt"])
    assert execution["occurredAt"] < created_ms <= _ms(tracking["modifiedAt"])
    assert created_ms - execution["occurredAt"] < 5_000
    assert check_stored(tracking, KEY) is None  # and the ingest endpoint would take it back


def test_call_flows_is_sticky_per_guest_and_has_a_get_form(client: Client) -> None:
    browser = client.browser()["ref"]
    variants = {client.call_flow(browser)[1]["variant"]["ref"] for _ in range(3)}
    message = urllib.parse.quote(
        json.dumps(
            {
                "clientKey": KEY,
                "friendlyId": "smoke_popup",
                "pointOfSale": POS,
                "browserId": browser,
            }
        )
    )
    status, _, answer = client.call("GET", f"/v2/callFlows?message={message}")
    assert status == 200
    variants.add(answer["variant"]["ref"])
    assert len(variants) == 1
    # Across many guests both variants of the 50/50 experiment turn up.
    seen = {client.call_flow(client.browser()["ref"])[1]["variant"]["name"] for _ in range(30)}
    assert seen == {"control", "popup"}


def test_call_flows_unknown_flow_is_404_and_outside_allocation_stores_nothing(
    client: Client, server: EmbeddedServer
) -> None:
    browser = client.browser()["ref"]
    status, answer = client.call_flow(browser, "no_such_flow")
    assert status == 404 and answer["reason"] == "unknown_flow"
    assert "no_such_flow" in answer["error_msg"] and "smoke_popup" in answer["error_msg"]
    before = server.stats()["stored"]["TRACKING"]
    status, answer = client.call_flow(browser, "nobody_sees_this")
    assert status == 200 and answer["variant"] is None
    assert server.stats()["stored"]["TRACKING"] == before


def test_identity_merges_browsers_into_one_guest_and_call_flows_finds_it(
    tmp_path: Path,
) -> None:
    server = EmbeddedServer(SMOKE, db_path=tmp_path / "ledger.sqlite3")
    flow = {"clientKey": KEY, "friendlyId": "smoke_popup", "pointOfSale": POS}
    try:
        server.start()
        client = Client(server.url)
        first, second = client.browser(), client.browser()
        email = "Ann@Example.com"
        sent = client.event(first["ref"], "IDENTITY", email=email)
        assert sent[0] == 400 and sent[1]["reason"] == "missing_identifiers"
        ids = [{"provider": "email", "id": email}]
        assert client.event(first["ref"], "IDENTITY", email=email, identifiers=ids)[0] == 201
        ids = [{"provider": "email", "id": email.lower()}]
        assert client.event(second["ref"], "IDENTITY", identifiers=ids)[0] == 201
        runs = [client.call_flow(b["ref"])[1] for b in (first, second)]
        # The second browser now belongs to the first guest, so the flow is sticky across both.
        assert runs[0]["guestRef"] == runs[1]["guestRef"] == first["customer_ref"]
        assert runs[0]["variant"] == runs[1]["variant"]
        status, _, by_email = client.call(
            "POST", "/v2/callFlows", {**flow, "email": "ann@example.COM"}
        )
        assert status == 200 and by_email["browserRef"] == second["ref"]
        assert by_email["guestRef"] == first["customer_ref"]
        status, _, answer = client.call("POST", "/v2/callFlows", {**flow, "email": "x@example.com"})
        assert (status, answer["reason"]) == (404, "unknown_guest")
        client.close()
        assert server.stop() == 0

        server.start()  # the merge and the identities come back from the ledger
        client = Client(server.url)
        ident = {"provider": "email", "id": "ANN@example.com"}
        status, _, again = client.call("POST", "/v2/callFlows", {**flow, "identifiers": ident})
        client.close()
        assert status == 200 and again["guestRef"] == first["customer_ref"]
        assert again["browserRef"] == second["ref"] and again["variant"] == runs[0]["variant"]
    finally:
        server.kill()


# --- idempotency ------------------------------------------------------------------------------


def test_a_repeated_idempotency_key_is_answered_the_same_and_stored_once(
    client: Client, server: EmbeddedServer
) -> None:
    browser = client.browser()["ref"]
    body = {"type": "VIEW", "browser_id": browser, "client_key": KEY, "pos": POS, "page": "k"}
    key = {"X-Idempotency-Key": f"event-{browser}"}
    before = server.stats()
    first = client.call("POST", "/v1.2/events", body, key)
    again = client.call("POST", "/v1.2/events", body, key)
    assert first[0] == again[0] == 201 and first[2] == again[2]
    created = [
        client.call(
            "GET",
            f"/v1.2/browser/create.json?client_key={KEY}",
            None,
            {"X-Idempotency-Key": f"b-{browser}"},
        )
        for _ in range(2)
    ]
    assert created[0][2]["ref"] == created[1][2]["ref"]
    flow = {"clientKey": KEY, "friendlyId": "smoke_popup", "pointOfSale": POS, "browserId": browser}
    runs = [client.call("POST", "/v2/callFlows", flow, {"X-Idempotency-Key": f"f-{browser}"})]
    runs.append(client.call("POST", "/v2/callFlows", flow, {"X-Idempotency-Key": f"f-{browser}"}))
    assert runs[0][0] == runs[1][0] == 200 and runs[0][2] == runs[1][2]
    after = server.stats()
    assert after["stored"]["TRACKING"] == before["stored"]["TRACKING"] + 1
    assert after["total"] == before["total"] + 2
    assert after["browsers"] == before["browsers"] + 1
    assert after["duplicates"] == before["duplicates"] + 3


def test_concurrent_repeats_of_one_key_store_one_event(server: EmbeddedServer) -> None:
    setup = Client(server.url)
    browser = setup.browser()["ref"]
    before = server.stats()
    body = {"type": "VIEW", "browser_id": browser, "client_key": KEY, "pos": POS}
    answers: list[Any] = []

    def send() -> None:
        c = Client(server.url)
        answers.append(c.call("POST", "/v1.2/events", body, {"X-Idempotency-Key": f"c-{browser}"}))
        c.close()

    threads = [threading.Thread(target=send) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    setup.close()
    assert {a[0] for a in answers} == {201} and len({a[2]["ref"] for a in answers}) == 1
    after = server.stats()
    assert after["total"] == before["total"] + 1
    assert after["duplicates"] == before["duplicates"] + 11


# --- ingest -----------------------------------------------------------------------------------


def test_ingest_checks_every_line_and_counts_known_refs_as_duplicates(
    client: Client, server: EmbeddedServer
) -> None:
    browser = client.browser()["ref"]
    _, view = client.event(browser)
    original = stored_event(server.db_path, view["ref"])
    assert original is not None
    fresh = {**original, "ref": "0b0e4c1e-1111-4a5a-9a0a-000000000001", "type": "ADD"}
    bad_key = {**original, "ref": "0b0e4c1e-1111-4a5a-9a0a-000000000002", "clientKey": "x" * 32}
    lines = [
        orjson.dumps(fresh),
        b"",
        orjson.dumps(original),
        b"{oops",
        orjson.dumps(bad_key),
        b"[1]",
    ]
    before = server.stats()
    status, _, answer = client.call("POST", "/v1/ingest", b"\n".join(lines))
    assert status == 200
    assert (answer["accepted"], answer["stored"], answer["duplicates"]) == (2, 1, 1)
    assert [r["line"] for r in answer["rejected"]] == [4, 5, 6]
    assert "malformed JSON" in answer["rejected"][0]["reason"]
    assert "clientKey" in answer["rejected"][1]["reason"]
    assert stored_event(server.db_path, fresh["ref"]) == fresh  # kept exactly as sent
    after = server.stats()
    assert after["stored"]["ADD"] == before["stored"]["ADD"] + 1
    assert after["duplicates"] == before["duplicates"] + 1
    # One pretty-printed object is one event; sent again it is a duplicate, not a second copy.
    status, _, answer = client.call("POST", "/v1/ingest", json.dumps(fresh, indent=2).encode())
    assert (status, answer["accepted"], answer["stored"], answer["duplicates"]) == (200, 1, 0, 1)


def test_ingest_refuses_a_tracking_event_that_breaks_the_invariants(
    client: Client, server: EmbeddedServer
) -> None:
    browser = client.browser()["ref"]
    assert client.call_flow(browser)[0] == 200
    with sqlite3.connect(server.db_path) as conn:
        (raw,) = conn.execute(
            "SELECT body FROM events WHERE type = 'TRACKING' AND browser_ref = ?", (browser,)
        ).fetchone()
    tracking = orjson.loads(raw)
    tracking["ref"] = "0b0e4c1e-1111-4a5a-9a0a-0000000000aa"
    copy = tracking["arbitraryData"]["_bx_arbitraryDataV3ga"]["bxt"]["flowExecution"]
    copy["flowExecutionTimeMs"] += 1
    status, _, answer = client.call("POST", "/v1/ingest", tracking)
    assert status == 400 and answer["accepted"] == 0
    assert "differs" in answer["rejected"][0]["reason"]


def test_stats_and_health_have_the_agreed_shape(client: Client, server: EmbeddedServer) -> None:
    status, _, health = client.call("GET", "/_cdpsim/healthz")
    assert (status, health) == (200, {"status": "OK"})
    stats = server.stats()
    assert {"stored", "total", "duplicates", "rejected", "browsers", "sessions"} <= set(stats)
    assert {"VIEW", "TRACKING", "FORCE_CLOSE"} <= set(stats["stored"])
    assert stats["total"] == sum(stats["stored"].values())
    with sqlite3.connect(server.db_path) as conn:
        (count,) = conn.execute("SELECT count(*) FROM events").fetchone()
    assert stats["total"] == count
    log = server.log_path.read_text()
    assert KEY not in log and f"****{KEY[-4:]}" in log


def _ms(iso: str) -> int:
    from generator.events.stored import parse_iso_ms

    return parse_iso_ms(iso)


# --- durability, drain, back-pressure, faults -------------------------------------------------


class Flood:
    """Threads posting events until stopped; `acked` holds the refs the server answered 201."""

    def __init__(self, url: str, browser: str, threads: int = 6) -> None:
        self.url, self.browser = url, browser
        self.acked: list[str] = []
        self.stop = threading.Event()
        self.progress = threading.Condition()
        self.threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        client = Client(self.url)
        try:
            while not self.stop.is_set():
                status, answer = client.event(self.browser)
                if status == 201:
                    with self.progress:
                        self.acked.append(answer["ref"])
                        self.progress.notify_all()
        except (OSError, http.client.HTTPException):
            pass  # the server went away mid-request: that request was never acknowledged
        finally:
            client.close()

    def __enter__(self) -> Flood:
        for t in self.threads:
            t.start()
        return self

    def wait_for(self, n: int) -> None:
        with self.progress:
            self.progress.wait_for(lambda: len(self.acked) >= n, timeout=30)
        assert len(self.acked) >= n

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


# Both ledger modes: normal commits on the event loop, full in a writer thread with fsync.
@pytest.mark.timeout(60)
@pytest.mark.parametrize("sync", ["normal", "full"])
def test_sigkill_then_restart_keeps_every_acknowledged_event(tmp_path: Path, sync: str) -> None:
    db = tmp_path / "ledger.sqlite3"
    server = EmbeddedServer(SMOKE, db_path=db, extra_args=["--sync", sync])
    try:
        server.start()
        setup = Client(server.url)
        browser = setup.browser()["ref"]
        keyed = {"type": "VIEW", "browser_id": browser, "client_key": KEY, "pos": POS}
        first = setup.call("POST", "/v1.2/events", keyed, {"X-Idempotency-Key": "before-kill"})
        setup.close()
        with Flood(server.url, browser) as flood:
            flood.wait_for(400)
            server.kill()  # mid-flood: requests are in flight, some already committed, unanswered
        acked = set(flood.acked)
        assert server.kill() == -signal.SIGKILL
        assert acked <= stored_refs(db)
        server.start()
        stats = server.stats()
        assert stats["total"] >= len(acked) + 1 and stats["browsers"] == 1
        client = Client(server.url)
        status, _ = client.event(browser)  # the browser survived the crash too
        again = client.call("POST", "/v1.2/events", keyed, {"X-Idempotency-Key": "before-kill"})
        client.close()
        assert status == 201
        assert again == first and server.stats()["duplicates"] == 1  # and so did the kept answer
    finally:
        server.kill()


@pytest.mark.timeout(60)
def test_sigterm_drains_in_flight_requests_and_exits_cleanly(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite3"
    server = EmbeddedServer(SMOKE, db_path=db)
    try:
        server.start()
        setup = Client(server.url)
        browser = setup.browser()["ref"]
        setup.close()
        with Flood(server.url, browser) as flood:
            flood.wait_for(200)
            code = server.stop()
        assert code == 0
        assert set(flood.acked) <= stored_refs(db)
        assert "drained and closed the ledger" in server.log_path.read_text()
        assert (
            not db.with_name(db.name + "-wal").exists()
            or db.with_name(db.name + "-wal").stat().st_size == 0
        )
    finally:
        server.kill()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sync", ["normal", "full"])
def test_a_full_write_queue_answers_503_with_retry_after(tmp_path: Path, sync: str) -> None:
    db = tmp_path / "ledger.sqlite3"
    args = ["--queue-limit", "1", "--sync", sync]
    with EmbeddedServer(SMOKE, db_path=db, extra_args=args) as server:
        client = Client(server.url)
        browser = client.browser()["ref"]
        # Hold SQLite's write lock so the ledger cannot commit: writes pile up in its queue.
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        first: list[Any] = []
        waiting = threading.Thread(target=lambda: first.append(Client(server.url).event(browser)))
        waiting.start()
        while server.stats()["ledger"]["queued"] < 1:
            time.sleep(0.01)
        status, headers, answer = client.call(
            "POST",
            "/v1.2/events",
            {"type": "VIEW", "browser_id": browser, "client_key": KEY, "pos": POS},
        )
        assert (status, headers["retry-after"], answer["reason"]) == (503, "1", "queue_full")
        blocker.execute("COMMIT")
        waiting.join()
        assert first[0][0] == 201  # what was queued is committed and answered once the lock goes
        assert server.stats()["rejected"]["queue_full"] == 1
        client.close()
        blocker.close()


def test_group_commit_puts_waiting_requests_in_one_transaction(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite3"
    with EmbeddedServer(SMOKE, db_path=db) as server:
        setup = Client(server.url)
        browser = setup.browser()["ref"]
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # nothing commits while the test holds the lock
        commits = server.stats()["ledger"]["commits"]
        answers: list[Any] = []
        threads = [
            threading.Thread(target=lambda: answers.append(Client(server.url).event(browser)))
            for _ in range(20)
        ]
        for t in threads:
            t.start()
        while server.stats()["ledger"]["queued"] < 20:
            time.sleep(0.01)
        assert not answers  # no answer before the commit
        blocker.execute("ROLLBACK")
        for t in threads:
            t.join()
        stats = server.stats()
        setup.close()
        blocker.close()
    assert [a[0] for a in answers] == [201] * 20
    assert stats["ledger"]["commits"] == commits + 1 and stats["ledger"]["largestBatch"] == 20
    assert stats["stored"]["VIEW"] == 20


def test_fail_rate_answers_503_and_retries_with_a_key_store_each_event_once(tmp_path: Path) -> None:
    args = ["--fail-rate", "0.5", "--seed", "3"]
    with EmbeddedServer(SMOKE, db_path=tmp_path / "l.sqlite3", extra_args=args) as server:
        client = Client(server.url)
        browser = None
        while browser is None:
            status, headers, body = client.call(
                "GET", f"/v1.2/browser/create.json?client_key={KEY}"
            )
            if status == 503:
                assert headers["retry-after"] == "1" and body["reason"] == "fault_injected"
            else:
                browser = body["ref"]
        attempts = 0
        for i in range(20):
            body = {
                "type": "VIEW",
                "browser_id": browser,
                "client_key": KEY,
                "pos": POS,
                "page": str(i),
            }
            status = 0
            while status != 201:
                attempts += 1
                status, _, _ = client.call(
                    "POST", "/v1.2/events", body, {"X-Idempotency-Key": f"k{i}"}
                )
                assert status in (201, 503)
        stats = server.stats()
        client.close()
    assert attempts > 20 and stats["rejected"]["fault_injected"] >= attempts - 20
    assert stats["stored"]["VIEW"] == 20


def test_throttle_answers_429_with_retry_after_above_the_rate(tmp_path: Path) -> None:
    with EmbeddedServer(
        SMOKE, db_path=tmp_path / "l.sqlite3", extra_args=["--throttle-rps", "2"]
    ) as server:
        client = Client(server.url)
        statuses = [
            client.call("GET", f"/v1.2/browser/create.json?client_key={KEY}")[:2] for _ in range(40)
        ]
        client.close()
        stats = server.stats()
    assert [s for s, _ in statuses[:2]] == [200, 200]  # the bucket starts with a second's worth
    throttled = [h for s, h in statuses if s == 429]
    assert throttled and all(int(h["retry-after"]) >= 1 for h in throttled)
    assert stats["rejected"]["throttled"] == len(throttled)
    assert stats["browsers"] == 40 - len(throttled)


def test_throttle_bucket_refills_at_the_rate_and_latency_jitters_within_half() -> None:
    now = [100.0]
    faults = Faults(throttle_rps=4, latency_ms=10, rng=random.Random(1), clock=lambda: now[0])
    assert [faults.throttled() for _ in range(6)] == [0, 0, 0, 0, 1, 1]
    now[0] += 0.5  # half a second refills two tokens
    assert [faults.throttled() for _ in range(3)] == [0, 0, 1]
    now[0] += 10  # the bucket holds one second's worth, however long it waited
    assert sum(faults.throttled() == 0 for _ in range(10)) == 4
    delays = [faults.delay_s() for _ in range(1000)]
    assert 0.005 <= min(delays) < 0.006 and 0.014 < max(delays) <= 0.015
    assert not Faults(rng=random.Random(1)).active


def test_latency_holds_each_request_at_least_half_the_mean() -> None:
    with EmbeddedServer(SMOKE, extra_args=["--latency-ms", "200"]) as server:
        own_dir = server.db_path.parent
        client = Client(server.url)
        started = time.monotonic()
        client.browser()
        held = time.monotonic() - started
        client.close()
        assert server.stats()["browsers"] == 1 and server.db_path.exists()
    assert held >= 0.1  # jitter is +-50%, so never less than half of 200 ms
    assert not own_dir.exists()  # a ledger the launcher placed itself goes with it


def test_serve_refuses_a_remote_host_and_a_taken_port(
    server: EmbeddedServer, tmp_path: Path
) -> None:
    cmd = [sys.executable, "-m", "generator.server"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    remote = subprocess.run(
        [*cmd, "--host", "0.0.0.0"], capture_output=True, text=True, env=env, timeout=60
    )
    assert remote.returncode == 2 and "--allow-remote" in remote.stderr
    assert "Traceback" not in remote.stderr
    port = str(server.port)
    taken = subprocess.run(
        [*cmd, "--port", port, "--profile", str(SMOKE), "--db", str(tmp_path / "l.sqlite3")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert taken.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in taken.stderr
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("not a database, just some words\n" * 200)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = str(probe.getsockname()[1])
    bad = subprocess.run(
        [*cmd, "--port", free, "--profile", str(SMOKE), "--db", str(not_a_db)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert bad.returncode == 1 and "cannot open the ledger" in bad.stderr
    assert "Traceback" not in bad.stderr


# --- hostile input: every request answered in the documented JSON shape, never a 500 ----------


def assert_no_traceback(server: EmbeddedServer) -> None:
    log = server.log_path.read_text()
    assert "Traceback" not in log and "Exception in ASGI application" not in log


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize("depth", [254, 300, 1024, 1100])
def test_json_nested_too_deep_gets_a_json_400_never_a_500(
    client: Client, server: EmbeddedServer, depth: int
) -> None:
    browser = client.browser()["ref"]
    total = server.stats()["total"]
    deep = b"[" * depth + b"]" * depth
    event = orjson.dumps({"type": "VIEW", "browser_id": browser, "client_key": KEY, "pos": POS})
    body = event[:-1] + b',"x":' + deep + b"}"
    status, headers, answer = client.call("POST", "/v1.2/events", body)
    assert (status, answer["reason"]) == (400, "too_deep"), answer
    assert headers["content-type"] == "application/json"
    assert "64 levels" in answer["error_msg"]
    query = urllib.parse.urlencode({"message": body.decode()})
    status, _, answer = client.call("GET", f"/v1.2/event/create.json?{query}")
    assert (status, answer["reason"]) == (400, "too_deep")
    status, _, answer = client.call("POST", "/v2/callFlows", body)
    assert (status, answer["reason"]) == (400, "too_deep")
    _, view = client.event(browser)
    stored = stored_event(server.db_path, view["ref"])
    assert stored is not None
    line = orjson.dumps({**stored, "ref": "0b0e4c1e-3333-4a5a-9a0a-000000000001"})
    line = line.replace(b'"arbitraryData":{', b'"arbitraryData":{"x":' + deep + b",")
    for ingest in (line, line + b"\n" + line):  # one event, and NDJSON
        status, _, answer = client.call("POST", "/v1/ingest", ingest)
        assert (status, answer["reason"]) == (400, "no_valid_lines")
        assert answer["rejected"][0]["reason"] == "nested deeper than 64 levels"
    assert server.stats()["total"] == total + 1  # only the plain VIEW
    assert_no_traceback(server)


def test_json_as_deep_as_the_limit_is_stored(client: Client, server: EmbeddedServer) -> None:
    browser = client.browser()["ref"]
    status, answer = client.event(browser, x=nested(63))  # the body's object is level 1
    assert status == 201
    stored = stored_event(server.db_path, answer["ref"])
    assert stored is not None and stored["arbitraryData"]["x"] == nested(63)


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [
        ("type", 5, "a number"),
        ("type", ["VIEW"], "an array"),
        ("browser_id", {"id": "b"}, "an object"),
        ("browser_id", True, "a boolean"),
        ("pos", 7.5, "a number"),
        ("channel", ["WEB"], "an array"),
        ("client_key", 12345, "a number"),
    ],
)
def test_wrong_typed_fields_are_named_as_wrong_not_missing(
    client: Client, field: str, value: Any, kind: str
) -> None:
    browser = client.browser()["ref"]
    body = {"type": "VIEW", "browser_id": browser, "client_key": KEY, "pos": POS, field: value}
    status, _, answer = client.call("POST", "/v1.2/events", body)
    assert (status, answer["reason"]) == (400, "wrong_field_type")
    assert answer["error_msg"].endswith(f"must be a string, not {kind}")
    assert "has no" not in answer["error_msg"]


def test_error_messages_use_json_names_never_python_ones(client: Client) -> None:
    browser = client.browser()["ref"]
    answers = [
        client.call("POST", "/v1.2/events", b"null")[2],
        client.call("POST", "/v1.2/events", b"[1]")[2],
        client.call("POST", "/v1.2/events", {"type": "VIEW", "browser_id": 1.5})[2],
        client.call("POST", "/v1.2/events", {"type": "TRACKING", "browser_id": "b", "pos": POS})[2],
        client.event(browser, channel="TV")[1],
        client.event(browser, type_="IDENTITY", identifiers={"provider": "email", "id": "x"})[1],
        client.call("POST", "/v2/callFlows", {"clientKey": KEY, "friendlyId": 3})[2],
        client.call(
            "POST",
            "/v2/callFlows",
            {"clientKey": KEY, "friendlyId": "smoke_popup", "browserId": browser, "pointOfSale": 1},
        )[2],
        client.call("POST", "/v1/ingest", b"null")[2],
        client.call("POST", "/v1/ingest", {"ref": None, "type": True})[2],
    ]
    python_names = ("NoneType", "None", "True", "False", "int", "float", "dict", "list", "str")
    for answer in answers:
        text = answer["error_msg"] + " ".join(r["reason"] for r in answer.get("rejected", []))
        words = set(text.replace("(", " ").replace(")", " ").replace(",", " ").split())
        assert not words & set(python_names), answer
    assert answers[0]["error_msg"] == "the body must be a JSON object, not null"
    assert answers[7]["reason"] == "wrong_field_type"


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("MY_EVENT", 201),
        ("SUBSCRIBE2", 201),
        ("A" * 64, 201),
        ("A" * 65, 400),
        ("X" * 10_000, 400),
        ("my_event", 400),
        ("MY-EVENT", 400),
        ("SC_RESERVED", 400),
        ("TRACKING", 400),
        ("_LEADING", 400),
    ],
)
def test_custom_event_types_follow_the_sdk_rule_and_stay_short(
    client: Client, server: EmbeddedServer, name: str, status: int
) -> None:
    browser = client.browser()["ref"]
    got, answer = client.event(browser, type_=name)
    assert got == status, answer
    stats = server.stats()
    if status == 201:
        assert stats["stored"][name] >= 1
    else:
        assert answer["reason"] == "bad_type" and len(answer["error_msg"]) < 300
        assert name not in stats["stored"] or name == "TRACKING"  # every CDP type is listed
    _, view = client.event(browser)
    stored = stored_event(server.db_path, view["ref"])
    assert stored is not None
    line = {**stored, "ref": str(uuid.uuid4()), "type": name}
    got, _, answer = client.call("POST", "/v1/ingest", line)
    assert got == (200 if status == 201 else 400), answer
    if got == 400 and name != "TRACKING":  # (a TRACKING needs more fields: refused for those)
        assert "unknown event type" in answer["rejected"][0]["reason"]
        assert len(answer["rejected"][0]["reason"]) < 100


def test_a_url_over_64_kib_and_a_garbled_request_get_json_400s(
    client: Client, server: EmbeddedServer
) -> None:
    status, headers, answer = client.call("GET", "/v1.2/event/create.json?message=" + "a" * 100_000)
    assert (status, headers["content-type"], answer["reason"]) == (
        400,
        "application/json",
        "url_too_long",
    )
    assert answer["status"] == "ERROR" and "POST" in answer["error_msg"]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        reply = raw.makefile("rb").read()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"content-type: application/json" in head
    assert orjson.loads(body)["reason"] == "bad_request"


def test_a_ledger_of_one_profile_is_refused_by_another_naming_both(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite3"
    made = Ledger(db, tenant=Tenancy(PROFILE.name, KEY))  # as `serve --profile smoke` makes it
    made.open()
    made.close()
    again = Ledger(db, tenant=Tenancy(PROFILE.name, KEY))
    again.open()  # its own tenant opens it again
    again.close()
    other = ROOT / "profiles" / "retail-ireland.yaml"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "generator.server", "--db", str(db), "--port", "9"]
    refused = subprocess.run(
        [*cmd, "--profile", str(other)], capture_output=True, text=True, env=env, timeout=60
    )
    assert refused.returncode == 1, refused.stderr
    assert "'smoke'" in refused.stderr and "'retail-ireland'" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert KEY not in refused.stderr and load_profile(other).client_key not in refused.stderr


# --- the served description, under a property-based fuzzer ----------------------------------

# No 5xx (the server adds no faults here), and every answer as the description says: status,
# content type, headers and body; and a request the description calls invalid gets a 4xx.
FUZZ_CHECKS = [
    schemathesis.checks.not_a_server_error,
    api_checks.status_code_conformance,
    api_checks.content_type_conformance,
    api_checks.response_headers_conformance,
    api_checks.response_schema_conformance,
    api_checks.negative_data_rejection,
]


@pytest.fixture(scope="module")
def fuzz_browser(server: EmbeddedServer) -> str:
    c = Client(server.url)
    try:
        return str(c.browser()["ref"])
    finally:
        c.close()


def aim(case: Any, browser: str) -> None:
    """Point a valid generated request at this tenant (its key, a browser, a point of sale), so
    that the fuzzer reaches the code past the look-ups; an invalid one is left as generated."""
    if case.headers and "X-Idempotency-Key" in case.headers:
        # A repeated key gets the first answer whatever the body (as documented); fresh keys
        # keep every generated request its own.
        case.headers["X-Idempotency-Key"] = str(uuid.uuid4())
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return
    path = case.operation.path
    message = case.query.get("message") if case.query else None
    if isinstance(message, str):  # the GET forms: the message as JSON text
        with contextlib.suppress(orjson.JSONDecodeError):
            message = orjson.loads(message)
    for sent in (case.body, message):
        if not isinstance(sent, dict):
            continue
        if path in ("/v1.2/events", "/v1.2/event/create.json"):
            sent.update(client_key=KEY, browser_id=browser, pos=POS)
        elif path == "/v2/callFlows":
            sent.update(clientKey=KEY, browserId=browser, pointOfSale=POS, friendlyId="smoke_popup")
        elif path == "/v1/ingest":
            sent.update(clientKey=KEY, browserRef=browser)
    if isinstance(message, dict):
        case.query["message"] = json.dumps(message)
    if path == "/v1.2/browser/create.json" and case.query:
        case.query["client_key"] = KEY


# The description the server serves (test_the_description_is_served checks it is this one).
fuzz_schema = schemathesis.openapi.from_dict(DESCRIPTION)


def test_the_description_is_served(client: Client) -> None:
    status, headers, served = client.call("GET", "/_cdpsim/openapi.json")
    assert (status, headers["content-type"]) == (200, "application/json")
    assert served == DESCRIPTION
    assert set(served["paths"]) >= {"/v1.2/events", "/v2/callFlows", "/v1/ingest"}


@pytest.mark.timeout(60)
@fuzz_schema.parametrize()
@hsettings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_the_served_description_holds_under_a_fuzzer(
    case: Any, server: EmbeddedServer, fuzz_browser: str
) -> None:
    aim(case, fuzz_browser)
    case.call_and_validate(base_url=server.url, checks=FUZZ_CHECKS)


@pytest.mark.slow
@pytest.mark.timeout(600)
@fuzz_schema.parametrize()
@hsettings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_served_description_holds_under_a_long_fuzz(
    case: Any, server: EmbeddedServer, fuzz_browser: str
) -> None:
    aim(case, fuzz_browser)
    case.call_and_validate(base_url=server.url, checks=FUZZ_CHECKS)


def test_an_idempotency_key_names_one_call_and_an_empty_key_none(
    client: Client, server: EmbeddedServer
) -> None:
    key = {"X-Idempotency-Key": f"shared-{uuid.uuid4()}"}
    status, _, created = client.call(
        "GET", f"/v1.2/browser/create.json?client_key={KEY}&message={{}}", headers=key
    )
    assert status == 200
    browser = created["ref"]
    # The same key on another endpoint is another request, not a repeat of the browser create.
    status, _, answer = client.call("POST", "/v1/ingest", b"", key)
    assert (status, answer["reason"]) == (400, "empty_body")
    event = {"type": "VIEW", "browser_id": browser, "client_key": KEY, "pos": POS}
    status, _, first = client.call("POST", "/v1.2/events", event, key)
    assert status == 201 and first["ref"] != browser
    # ... while the GET form of the same call shares the POST's keys.
    message = urllib.parse.quote(json.dumps(event))
    status, _, again = client.call("GET", f"/v1.2/event/create.json?message={message}", None, key)
    assert (status, again) == (201, first)
    total = server.stats()["total"]
    for _ in range(2):
        assert client.call("POST", "/v1.2/events", event, {"X-Idempotency-Key": ""})[0] == 201
    assert server.stats()["total"] == total + 2
