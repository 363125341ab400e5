"""Golden events: what one flights DAG run sent, against partial expected JSON (after the provider's
tests/system/openlineage/expected_events). Every expected event must match one actual event; within
it, dicts match key by key and every expected list item must match some actual item."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import ChainEnv

pytestmark = pytest.mark.slow
EXPECTED = Path(__file__).with_name("expected_events")


def matches(expected: Any, actual: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and matches(v, actual[k]) for k, v in expected.items()
        )
    if isinstance(expected, list):
        return isinstance(actual, list) and all(any(matches(e, a) for a in actual) for e in expected)
    return bool(expected == actual)


def _fill(template: str, values: dict[str, str]) -> Any:
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    return json.loads(template)


def test_matches_is_strict_where_it_should_be() -> None:
    assert matches({"a": [{"b": 1}]}, {"a": [{"b": 2}, {"b": 1, "c": 3}], "d": 4})
    assert not matches({"a": [{"b": 1}]}, {"a": [{"b": 2}]})
    assert not matches({"a": 1}, {"b": 1})
    assert not matches([{"x": 1}], {"x": 1})


def test_flights_run_events_match_the_golden_file(chain_env: ChainEnv, good_run: dict[str, str]) -> None:
    values = {
        "run_id": "e2e_good",
        "run_key": "e2e_good",
        "data_root": str(chain_env.session.data_root),
        "flights_source": str(chain_env.flights_file),
    }
    expected_events = _fill((EXPECTED / "flights.json").read_text(), values)
    actual = [e for e in chain_env.events_of_run("e2e_good") if e["job"]["name"].split(".")[0] == "flights"]
    unmatched = [e for e in expected_events if not any(matches(e, a) for a in actual)]
    assert not unmatched, json.dumps(unmatched[0], indent=1)[:3000]
