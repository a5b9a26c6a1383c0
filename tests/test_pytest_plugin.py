"""The pytest plugin: `cdpsim_dataset` generates a dataset once per session and hands it out."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = """
import orjson

calls = []

def test_first(cdpsim_dataset):
    ds = cdpsim_dataset(profile="smoke", seed=3, events=1200)
    lines = ds.events_path.read_bytes().splitlines()
    assert len(lines) == 1200 and orjson.loads(lines[0])["type"]
    calls.append((ds.directory, ds.events_path.stat().st_mtime_ns))

def test_second_is_the_same_directory(cdpsim_dataset):
    ds = cdpsim_dataset(profile="smoke", seed=3, events=1200)
    assert [(ds.directory, ds.events_path.stat().st_mtime_ns)] == calls

def test_other_arguments_another_dataset(cdpsim_dataset):
    other = cdpsim_dataset(profile="smoke", seed=4, events=1200)
    assert other.directory != calls[0][0]
    assert other.events_path.read_bytes() != calls[0][0].joinpath("events.jsonl").read_bytes()
"""


def test_the_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    names = {e.name: e.value for e in entry_points(group="pytest11")}
    assert names.get("cdpsim") == "generator.pytest_plugin"


def test_cdpsim_dataset_is_generated_once_per_session(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    # In a subprocess, as a user's suite would run: the plugin is found through its entry point.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
