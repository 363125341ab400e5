"""The alert rules file: the shipped one loads, a full one parses, and every kind of mistake is named
with the file and the field (never echoing a webhook URL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lineage.monitoring.rules import (
    ALERT_KINDS,
    Match,
    RulesError,
    default_rules_file,
    display_url,
    load_rules,
    parse_duration,
)


def write(tmp_path: Path, content: Any) -> Path:
    path = tmp_path / "alert-rules.yaml"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content), encoding="utf-8")
    return path


def error_of(tmp_path: Path, content: Any) -> str:
    path = write(tmp_path, content)
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    return message


def test_the_shipped_rules_load_and_cover_every_kind() -> None:
    rules = load_rules()
    assert load_rules(default_rules_file()) == rules
    assert {rule.kind for rule in rules.rules} == set(ALERT_KINDS)
    late = rules.of_kind("data_late")[0]
    assert late.expected_interval_s == 26 * 3600
    assert late.match.matches(["chaintrace"], "flights", [])
    assert not late.match.matches(["chaintrace"], "flights.collect.gate", [])


def test_a_full_rules_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "abc123")
    rules = load_rules(write(tmp_path, {
        "version": 1, "late_check_s": 5,
        "webhook": {"timeout_s": 2, "max_attempts": 3, "backoff_s": 0.5},
        "rules": [
            {"name": "gates", "kind": "gate_failed", "severity": "critical",
             "match": {"namespace": "file", "dataset": ["/data/raw/*", "/data/service/*"]},
             "webhooks": ["https://hooks.example.org/services/${HOOK_TOKEN}", "http://127.0.0.1:9000/x"]},
            {"name": "late", "kind": "data_late", "match": {"job": "nightly_*"},
             "expected_interval": "1h30m"},
            {"name": "runs", "kind": "run_failed"},
        ],
    }))
    assert rules.late_check_s == 5
    assert (rules.webhook.timeout_s, rules.webhook.max_attempts, rules.webhook.backoff_s) == (2, 3, 0.5)
    gates = rules.by_name("gates")
    assert gates is not None and gates.severity == "critical"
    assert gates.webhooks == ("https://hooks.example.org/services/abc123", "http://127.0.0.1:9000/x")
    assert gates.match.namespace == ("file",) and gates.match.job == ("*",)
    assert gates.match.matches(["etl", "file"], "load", ["/data/raw/people"])
    assert not gates.match.matches(["etl", "file"], "load", ["/data/analysis/x"])
    assert not gates.match.matches(["etl"], "load", ["/data/raw/people"])
    assert rules.by_name("late") is not None and rules.by_name("late").expected_interval_s == 5400  # type: ignore[union-attr]
    runs = rules.by_name("runs")
    assert runs is not None and runs.severity == "warning" and runs.webhooks == ()
    assert [r.name for r in rules.of_kind("run_failed")] == ["runs"]


def test_an_empty_file_has_no_rules(tmp_path: Path) -> None:
    assert load_rules(write(tmp_path, "")).rules == ()


@pytest.mark.parametrize(("content", "expected"), [
    ("rules: [\n  - name: x\n   kind: oops", "not valid YAML"),
    ("- just\n- a list\n", "the alert rules must be a mapping, got list"),
    ({"rules": [{"name": "a"}]}, "rules[0] ('a').kind: Field required"),
    ({"rules": [{"name": "a", "kind": "disk_full"}]}, "rules[0] ('a').kind: Input should be 'gate_failed'"),
    ({"rules": [{"name": "ok", "kind": "run_failed"},
                {"name": "b", "kind": "run_failed", "severity": "urgent"}]},
     "rules[1] ('b').severity: Input should be 'info', 'warning', 'error' or 'critical'"),
    ({"rules": [{"name": "late", "kind": "data_late", "interval_source": "rule"}]},
     "rules[0] ('late'): a data_late rule with interval_source: rule needs expected_interval"),
    ({"rules": [{"name": "late", "kind": "data_late", "interval_source": "cron"}]},
     "rules[0] ('late').interval_source: Input should be 'schedule' or 'rule'"),
    ({"rules": [{"name": "r", "kind": "gate_failed", "grace": "1h"}]},
     "rules[0] ('r'): grace applies to data_late rules only, not gate_failed"),
    ({"rules": [{"name": "r", "kind": "run_failed", "expected_interval": "1h"}]},
     "rules[0] ('r'): expected_interval applies to data_late rules only, not run_failed"),
    ({"rules": [{"name": "late", "kind": "data_late", "expected_interval": "soon"}]},
     "rules[0] ('late').expected_interval: not a duration: 'soon'"),
    ({"rules": [{"name": "r", "kind": "run_failed", "match": {"jobs": "x"}}]},
     "rules[0] ('r').match.jobs: Extra inputs are not permitted"),
    ({"rules": [{"name": "r", "kind": "run_failed", "match": {"job": []}}]},
     "rules[0] ('r').match.job: a glob or a non-empty list of globs"),
    ({"rules": [{"name": "r", "kind": "run_failed"}, {"name": "r", "kind": "gate_failed"}]},
     "two rules are named 'r'"),
    ({"webhook": {"max_attempts": 0}}, "webhook.max_attempts: Input should be greater than or equal to 1"),
    ({"rule": []}, "rule: Extra inputs are not permitted"),
])
def test_mistakes_name_the_file_and_the_field(tmp_path: Path, content: Any, expected: str) -> None:
    assert expected in error_of(tmp_path, content)


def test_a_bad_webhook_url_is_named_but_not_echoed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    message = error_of(tmp_path, {"rules": [
        {"name": "r", "kind": "run_failed", "webhooks": ["https://ok.example.org/a", "ftp://secret-token@x/y"]}]})
    assert "rules[0] ('r').webhooks: webhook 1 is not an http(s) URL with a host" in message
    assert "secret-token" not in message
    monkeypatch.delenv("NO_SUCH_HOOK_VAR", raising=False)
    message = error_of(tmp_path, {"rules": [
        {"name": "r", "kind": "run_failed", "webhooks": ["https://x.example.org/${NO_SUCH_HOOK_VAR}"]}]})
    assert "the environment variable NO_SUCH_HOOK_VAR named in the URL is not set" in message


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match=r"missing\.yaml: cannot read the alert rules file"):
        load_rules(tmp_path / "missing.yaml")


@pytest.mark.parametrize(("value", "seconds"), [
    (90, 90.0), (0.5, 0.5), ("90s", 90.0), ("15m", 900.0), ("26h", 93600.0), ("2d", 172800.0),
    ("1h30m", 5400.0), ("1w", 604800.0), (" 2H ", 7200.0),
])
def test_durations(value: Any, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "h", "10x", "1h and more", 0, -5, True, None, "0s"])
def test_bad_durations(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_match_semantics() -> None:
    anything = Match()
    assert anything.matches([], None, [])
    only_job = Match.model_validate({"job": "etl.*"})
    assert only_job.matches(["x"], "etl.load", [])
    assert not only_job.matches(["x"], "other", [])
    assert not only_job.matches(["x"], None, [])  # an alert without a job cannot match a job glob
    by_namespace = Match.model_validate({"namespace": ["prod", "file"]})
    assert by_namespace.matches(["etl", "file"], "j", [])  # the job's or a dataset's namespace
    assert not by_namespace.matches(["etl"], "j", [])
    assert Match.model_validate({"job": "ETL*"}).matches([], "ETL.load", [])
    assert not Match.model_validate({"job": "ETL*"}).matches([], "etl.load", [])  # case-sensitive


def test_display_url_hides_paths_and_queries() -> None:
    assert display_url("https://hooks.slack.com/services/T000/B000/XXXX") == "https://hooks.slack.com/…"
    assert display_url("http://127.0.0.1:8080/") == "http://127.0.0.1:8080/"
    assert display_url("http://user:pw@host:81/?token=x") == "http://host:81/…"
