"""lineage.governance.policy: rules, overrides, k, jurisdictions, and clear errors for bad files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lineage.governance.policy import (
    GovernancePolicy,
    PolicyError,
    default_policy_file,
    load_policy,
    policy_from_dict,
)

POLICY: dict[str, Any] = {
    "version": 3,
    "default_level": "L2",
    "k": 5,
    "rules": [
        {"name": "exact coordinates", "level": "L3", "name_pattern": "^(lat|lon)$", "types": ["float64"]},
        {"name": "names", "level": "L4", "name_pattern": "(^|_)name$"},
        {"name": "everything called x_name is public", "level": "L1", "name_pattern": "^x_name$"},
        {"name": "all booleans", "level": "L1", "types": ["bool"]},
    ],
    "jurisdictions": {"L3": ["US"], "L4": ["US-PA", "CA"]},
}


@pytest.fixture
def policy() -> GovernancePolicy:
    return policy_from_dict(POLICY)


def test_first_matching_rule_wins(policy: GovernancePolicy) -> None:
    assert policy.assign("last_name").level == "L4"
    assert policy.assign("x_name").level == "L4"  # the earlier, broader rule matches first
    assert policy.assign("LAST_NAME").reason == "policy rule 'names'"  # case-insensitive


def test_types_narrow_a_rule(policy: GovernancePolicy) -> None:
    assert policy.assign("lat", "float64").level == "L3"
    assert policy.assign("lat", "string").level == "L2"
    assert policy.assign("lat").level == "L2"  # a typed rule needs the type
    assert policy.assign("flag", "bool").level == "L1"


def test_override_and_default(policy: GovernancePolicy) -> None:
    overridden = policy.assign("last_name", override="L1")
    assert (overridden.level, overridden.reason) == ("L1", "override in the dataset spec")
    fallback = policy.assign("carrier")
    assert (fallback.level, fallback.reason) == ("L2", "policy default level")
    assert policy.k == 5


def test_jurisdictions(policy: GovernancePolicy) -> None:
    assert policy.jurisdiction_allowed("L1", "FR") and policy.jurisdiction_allowed("L2", "FR")
    assert policy.jurisdiction_allowed("L3", "US") and policy.jurisdiction_allowed("L3", "US-NY")
    assert not policy.jurisdiction_allowed("L3", "USA") and not policy.jurisdiction_allowed("L3", "CA")
    assert policy.jurisdiction_allowed("L4", "US-PA") and policy.jurisdiction_allowed("L4", "CA-ON")
    assert not policy.jurisdiction_allowed("L4", "US-NY")
    only_l3 = policy_from_dict({"jurisdictions": {"L3": ["EU"]}})
    assert only_l3.jurisdiction_allowed("L4", "EU-FR") and not only_l3.jurisdiction_allowed("L4", "US")


@pytest.mark.parametrize(("change", "message"), [
    ({"k": 0}, "k: "),
    ({"default_level": "L9"}, "default_level: "),
    ({"surprise": True}, "surprise: "),
    ({"rules": [{"name": "r", "level": "L1"}]}, "a rule needs name_pattern, types or both"),
    ({"rules": [{"name": "r", "level": "L1", "name_pattern": "(unclosed"}]}, "not a regular expression"),
    ({"rules": [{"name": "r", "level": "L5", "types": ["x"]}]}, "rules.0.level: "),
])
def test_invalid_policies_name_what_is_wrong(change: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        policy_from_dict({**POLICY, **change}, where="my.yaml")
    assert str(caught.value).startswith("my.yaml: ") and message in str(caught.value)


def test_load_policy_from_file_and_its_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("k: 7\nrules:\n  - {name: ids, level: L4, name_pattern: '_id$'}\n")
    loaded = load_policy(good)
    assert (loaded.k, loaded.assign("person_id").level) == (7, "L4")
    cases = {
        tmp_path / "missing.yaml": "cannot read the policy file",
        tmp_path / "broken.yaml": "not valid YAML",
        tmp_path / "list.yaml": "the policy must be a mapping, got list",
        tmp_path / "bad.yaml": "k: ",
    }
    (tmp_path / "broken.yaml").write_text("k: [1,\n")
    (tmp_path / "list.yaml").write_text("- 1\n")
    (tmp_path / "bad.yaml").write_text("k: -1\n")
    for path, message in cases.items():
        with pytest.raises(PolicyError) as caught:
            load_policy(path)
        assert str(path) in str(caught.value) and message in str(caught.value)


def test_the_shipped_policy_loads() -> None:
    assert default_policy_file().is_file()
    shipped = load_policy()
    assert shipped.k >= 1 and shipped.rules
    assert load_policy(None) == shipped
