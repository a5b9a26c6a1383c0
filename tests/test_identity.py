"""Identity: few guests identify, buyers may check out as guests, an anonymous VISITOR carries
no name or email, and Japanese emails are romanized."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import orjson
from conftest import make_dataset

from generator.dataset.reader import open_dataset
from generator.dataset.realism import measure
from generator.dataset.validate import validate_dataset

_PERSONAL = {"firstName", "lastName", "name", "email"}


def _identified_and_buyers(path: Path) -> tuple[dict[str, str], set[str], set[str]]:
    ds = open_dataset(path)
    owner = {b["browserRef"]: g["guestRef"] for _, g in ds.guests() for b in g["browsers"]}
    types = {g["guestRef"]: g["type"] for _, g in ds.guests()}
    identified: set[str] = set()
    buyers: set[str] = set()
    for _, e in ds.events():
        if e["type"] == "IDENTITY":
            identified.add(owner[e["browserRef"]])
        elif e["type"] == "CHECKOUT":
            buyers.add(owner[e["browserRef"]])
    return types, identified, buyers


def test_visitors_are_anonymous_and_customers_named(multi_dataset: Path) -> None:
    ds = open_dataset(multi_dataset)
    kinds = set()
    for _, g in ds.guests():
        kinds.add(g["type"])
        if g["type"] == "VISITOR":
            assert not (_PERSONAL & g.keys()), g
        else:
            assert g.keys() >= _PERSONAL, g
            assert g["name"] == f"{g['firstName']} {g['lastName']}"
    assert kinds == {"VISITOR", "CUSTOMER"}


def test_some_buyers_never_identify(multi_dataset: Path) -> None:
    types, identified, buyers = _identified_and_buyers(multi_dataset)
    guest_checkout = buyers - identified
    assert guest_checkout and buyers & identified
    assert {types[g] for g in guest_checkout} == {"VISITOR"}
    assert {types[g] for g in identified} == {"CUSTOMER"}


def test_japanese_emails_are_romanized(multi_dataset: Path) -> None:
    emails = [
        g["email"]
        for _, g in open_dataset(multi_dataset).guests()
        if g["pointOfSale"] == "globalshop/japan" and "email" in g
    ]
    assert len(emails) >= 10
    locals_ = [e.split("@")[0] for e in emails]
    assert all(re.fullmatch(r"[a-z0-9]+\.[a-z0-9]+\.\d+", x) for x in locals_), locals_[:5]
    assert sum(x.startswith("guest.guest.") for x in locals_) == 0
    assert len({x.rsplit(".", 1)[0] for x in locals_}) > len(locals_) // 2


def test_default_profile_identifies_few_and_is_mostly_mobile(tmp_path: Path) -> None:
    """The default profile (fewer guests, the same shares): identified guests at most 20%,
    nine sessions in ten anonymous, mobile share of sessions in 55-80%."""
    figures = measure(make_dataset(tmp_path / "ri", "retail-ireland", guests=2500)).figures
    assert figures["identified_guests"] <= 0.20
    assert figures["anonymous_sessions"] >= 0.90
    assert 0.55 <= figures["mobile_share"] <= 0.80


def test_a_cut_dataset_keeps_customers_who_identified_after_it_anonymous(tmp_path: Path) -> None:
    # The same population and window as the whole, cut after 300 events.
    full = make_dataset(tmp_path / "full", "smoke", guests=60, days=1)
    cut = make_dataset(tmp_path / "cut", "smoke", guests=60, days=1, events=300)
    full_types, _, _ = _identified_and_buyers(full)
    cut_types, identified, _ = _identified_and_buyers(cut)
    later = [g for g, t in cut_types.items() if t == "VISITOR" and full_types[g] == "CUSTOMER"]
    assert later  # the cut falls before some guest's IDENTITY
    assert set(identified) == {g for g, t in cut_types.items() if t == "CUSTOMER"}
    assert validate_dataset(cut).ok


def test_validate_finds_a_visitor_with_a_name(smoke_dataset: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged"
    shutil.copytree(smoke_dataset, damaged)
    lines = (damaged / "guests.jsonl").read_bytes().splitlines()
    i = next(i for i, line in enumerate(lines) if b'"type":"VISITOR"' in line)
    g = orjson.loads(lines[i])
    g["email"] = "someone.0@example.com"
    lines[i] = orjson.dumps(g)
    (damaged / "guests.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    report = validate_dataset(damaged)
    assert report.problems["anonymous visitor"] == 1, report.problems
