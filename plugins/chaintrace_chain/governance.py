"""Governance in the chain: the levels the policy assigns, THE RULE along column lineage, disclosure
control measured on the written products, and the decisions the chain reports.

* Levels: every column the store stage writes gets its level from the policy
  (``policy/governance.yaml``, rules by column name and type) unless the dataset spec overrides it.
* THE RULE (``lineage.governance.levels``, shared with the lineage service): an output column carries
  the highest level of its input columns, except across an edge that lowers: ``masking``, or any edge
  into a k-safe dataset (an aggregate carrying the ``disclosureControl`` facet whose every cell stands
  for at least ``policy.k`` rows). Across those, the level the transform declares applies. A declared
  level lower than what the other edges carry is a violation: the chain keeps the higher level (so a
  wrong declaration never makes data look public) and reports the violation.
* Decisions (``level_assigned``, ``publish_allowed``, ``publish_refused``, ``violation``) travel in the
  ``governance`` run facet of the stage or gate that made them; the lineage service writes each one to
  its append-only audit log.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lineage.governance.levels import (
    InputLevel,
    Level,
    at_or_below,
    effective_level,
    highest,
    is_violation,
    parse_level,
    propagated_level,
)
from lineage.governance.policy import Assignment, GovernancePolicy, load_policy

if TYPE_CHECKING:
    import pandas as pd

    from chaintrace_chain.spec import DatasetSpec, ProductSpec
    from chaintrace_chain.stage_output import FieldSource

OVERRIDE_REASON = "override in the dataset spec"
EXTERNAL_SINK = "externalSink"  # the destination kind of a product's export
TABLE_DEFAULT_REASON = "default level of the table in the dataset spec"

DatasetId = tuple[str, str]  # OpenLineage (namespace, name)


class GovernanceError(ValueError):
    """Levels that cannot be worked out (an input column without a level); the message names it."""


# ------------------------------------------------------------------------------------------ policy
@cache
def _load(path: Path) -> GovernancePolicy:
    return load_policy(path)


def chain_policy(path: Path | None = None) -> GovernancePolicy:
    """The policy at ``path``, else ``CHAINTRACE_POLICY_FILE``, else the one shipped in git.

    Read once per process and path: a policy is a reviewed file in git, not something that changes
    under a running task.
    """
    if path is None:
        from chaintrace_chain.settings import ChainSettings

        path = ChainSettings().policy_file
    return _load(Path(path).expanduser().resolve())


def assign_levels(
    spec: DatasetSpec, policy: GovernancePolicy | None = None
) -> dict[str, dict[str, Assignment]]:
    """{table: {column: Assignment(level, reason)}} for every column of every table of ``spec``.

    A column's ``level`` in the spec wins; else the first matching policy rule; else the table's
    ``default_level``; else the policy's default level.
    """
    policy = policy or chain_policy()
    result: dict[str, dict[str, Assignment]] = {}
    for table_name, table in spec.tables.items():
        assigned: dict[str, Assignment] = {}
        for column in table.columns:
            if column.level is not None:
                assigned[column.name] = Assignment(level=column.level, reason=OVERRIDE_REASON)
                continue
            ruled = any(rule.matches(column.name, column.type) for rule in policy.rules)
            if not ruled and table.default_level is not None:
                assigned[column.name] = Assignment(level=table.default_level, reason=TABLE_DEFAULT_REASON)
            else:
                assigned[column.name] = policy.assign(column.name, column.type)
        result[table_name] = assigned
    return result


def assigned_levels(spec: DatasetSpec, policy: GovernancePolicy | None = None) -> dict[str, dict[str, str]]:
    return {
        table: {column: item.level for column, item in columns.items()}
        for table, columns in assign_levels(spec, policy).items()
    }


# ------------------------------------------------------------------------------------------ THE RULE
@dataclass(frozen=True)
class ColumnLevel:
    """One output column: the level the chain emits, and what it was worked out from."""

    level: Level  # effective: never lower than what the non-lowering edges carry in
    declared: Level | None  # what the transform declared; None when it declared nothing
    carried: Level | None  # highest level carried in by edges that do not lower; None if none
    violation: bool  # declared lower than carried


def column_level(
    sources: Iterable[FieldSource],
    declared: str | None,
    input_levels: Mapping[str, Mapping[str, str]],
    *,
    into_k_safe: bool,
    where: str,
) -> ColumnLevel:
    """THE RULE for one column. A column the transform declares nothing for takes the highest level
    of all its inputs, lowering edges included: a transform lowers a level only by saying so."""
    inputs: list[InputLevel] = []
    for source in sources:
        level = input_levels.get(source.table, {}).get(source.column)
        if level is None:
            raise GovernanceError(
                f"{where}: its lineage names {source.table}.{source.column}, "
                "which has no classification level"
            )
        inputs.append(InputLevel(parse_level(level, where=where), lowers=source.masking or into_k_safe))
    stated = parse_level(declared, where=f"{where} (declared)") if declared is not None else None
    if stated is None:
        stated = highest(item.level for item in inputs)
    return ColumnLevel(
        level=effective_level(stated, inputs),
        declared=stated if declared is not None else None,
        carried=propagated_level(inputs),
        violation=is_violation(stated, inputs) if declared is not None else False,
    )


# ------------------------------------------------------------------------------------------ disclosure
def cell_threshold(product: ProductSpec, policy: GovernancePolicy) -> int:
    """The k serve applies to a product: the policy's, or the product's own if it asks for more."""
    return max(policy.k, product.min_cell_rows)


def measure_disclosure(
    frame: pd.DataFrame, product: ProductSpec, policy: GovernancePolicy, *, suppressed: int
) -> dict[str, Any] | None:
    """The ``disclosureControl`` facet's fields, measured on the product as written; None when the
    product names no count column (or lacks it), so nothing shows how many rows a cell stands for."""
    column = product.count_column
    if column is None or column not in frame.columns:
        return None
    # A cell whose count is missing stands for an unknown number of rows: as unsafe as an empty one.
    counts = frame[column].astype("float64").fillna(0)
    return {
        "k": cell_threshold(product, policy),
        "countColumn": column,
        "rows": len(frame),
        "minRowsPerCell": int(counts.min()) if len(frame) else None,
        "suppressedCells": int(suppressed),
    }


def is_k_safe(disclosure: Mapping[str, Any] | None, policy: GovernancePolicy) -> bool:
    """THE RULE's "aggregation whose every cell has at least k rows" (k of the policy)."""
    if disclosure is None:
        return False
    if disclosure.get("rows") == 0:
        return True
    smallest = disclosure.get("minRowsPerCell")
    return smallest is not None and int(smallest) >= policy.k


# ------------------------------------------------------------------------------------------ decisions
def decision(
    kind: str,
    dataset: DatasetId,
    reason: str,
    *,
    field: str | None = None,
    level: str | None = None,
    product: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One entry of the ``governance`` facet's ``decisions`` (absent keys are left out)."""
    entry: dict[str, Any] = {"kind": kind, "dataset": {"namespace": dataset[0], "name": dataset[1]}}
    for key, value in (("field", field), ("level", level), ("product", product)):
        if value is not None:
            entry[key] = value
    entry["reason"] = reason
    if details:
        entry["details"] = dict(details)
    return entry


def governance_record(policy: GovernancePolicy, decisions: list[dict[str, Any]]) -> dict[str, Any]:
    """What a stage or gate report keeps: the facet's content without ``_producer``/``_schemaURL``."""
    return {"policyVersion": policy.version, "k": policy.k, "decisions": decisions}


def level_assigned_decisions(
    assignments: Mapping[str, Mapping[str, Assignment]], datasets: Mapping[str, DatasetId]
) -> list[dict[str, Any]]:
    """One ``level_assigned`` decision per column, on the dataset the store stage wrote it to."""
    return [
        decision("level_assigned", datasets[table], item.reason, field=column, level=item.level)
        for table, columns in assignments.items()
        if table in datasets
        for column, item in columns.items()
    ]


def violation_decisions(
    levels: Mapping[str, Mapping[str, ColumnLevel]], datasets: Mapping[str, DatasetId]
) -> list[dict[str, Any]]:
    """A ``violation`` per column whose declared level is lower than what its inputs carry."""
    found: list[dict[str, Any]] = []
    for table, columns in levels.items():
        for column, item in columns.items():
            if item.violation:
                found.append(
                    decision(
                        "violation",
                        datasets[table],
                        f"declared {item.declared} but its inputs carry {item.carried} through edges "
                        f"that neither mask nor aggregate into a k-safe dataset; kept at {item.level}",
                        field=column,
                        level=item.level,
                        details={"declared": item.declared, "carried": item.carried},
                    )
                )
    return found


# ------------------------------------------------------------------------------------------ serve gate
@dataclass
class ProductVerdict:
    """What the serve gate found for one product; ``problems`` empty means it may be published."""

    product: str
    dataset: DatasetId  # the published dataset
    level: Level = "L1"
    levels: dict[str, Level] = field(default_factory=dict)
    disclosure: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    blocked_jurisdictions: list[str] = field(default_factory=list)
    # External sinks the product may not go to: [{"name", "url", "jurisdiction"}] (url as the spec says).
    blocked_exports: list[dict[str, str]] = field(default_factory=list)


def check_product(
    product: ProductSpec,
    dataset: DatasetId,
    frame: pd.DataFrame | None,
    lineage: Mapping[str, list[FieldSource]],
    declared: Mapping[str, str],
    input_levels: Mapping[str, Mapping[str, str]],
    policy: GovernancePolicy,
    *,
    suppressed: int,
) -> ProductVerdict:
    """The serve gate's rules for one staged product, on the data as written:

    (a) every column's effective level (THE RULE, k-safety measured) is at or below the allowed level;
    (b) every cell has at least k = max(policy.k, min_cell_rows) rows;
    (c) its jurisdictions, and those of the external sinks it is exported to, may receive data at its
        level (the policy's jurisdictions).
    """
    verdict = ProductVerdict(product.name, dataset)
    if frame is None:
        verdict.problems.append("the serve stage wrote no such product")
        return verdict
    verdict.disclosure = measure_disclosure(frame, product, policy, suppressed=suppressed)
    k_safe = is_k_safe(verdict.disclosure, policy)
    where = f"product {product.name}"
    for column in frame.columns:
        resolved = column_level(
            lineage.get(str(column), []),
            declared.get(str(column)),
            input_levels,
            into_k_safe=k_safe,
            where=f"{where} column {column}",
        )
        verdict.levels[str(column)] = resolved.level
    verdict.level = highest(verdict.levels.values())
    above = {c: lv for c, lv in verdict.levels.items() if not at_or_below(lv, product.allowed_level)}
    if above:
        listed = ", ".join(f"{column} ({level})" for column, level in sorted(above.items()))
        why = "" if k_safe else " (not a k-safe aggregate, so its inputs' levels carry through)"
        verdict.problems.append(f"columns above its allowed level {product.allowed_level}: {listed}{why}")
    k = cell_threshold(product, policy)
    smallest = (verdict.disclosure or {}).get("minRowsPerCell")
    if smallest is not None and smallest < k:
        assert product.count_column is not None  # a disclosure was measured
        small = int((frame[product.count_column].astype("float64").fillna(0) < k).sum())
        verdict.problems.append(
            f"{small} cell(s) stand for fewer than k={k} rows ({product.count_column} down to {smallest})"
        )
    verdict.blocked_jurisdictions = [
        place for place in product.jurisdictions if not policy.jurisdiction_allowed(verdict.level, place)
    ]
    allowed = policy.jurisdictions
    listed = ", ".join(f"{lv}: {allowed[lv]}" for lv in sorted(allowed))
    if verdict.blocked_jurisdictions:
        verdict.problems.append(
            f"{verdict.level} data may not flow to {', '.join(verdict.blocked_jurisdictions)} "
            f"(policy jurisdictions: {listed})"
        )
    verdict.blocked_exports = [
        {"name": sink.name, "url": sink.url, "jurisdiction": sink.jurisdiction}
        for sink in product.exports
        if not policy.jurisdiction_allowed(verdict.level, sink.jurisdiction)
    ]
    for sink in verdict.blocked_exports:
        verdict.problems.append(
            f"{verdict.level} data may not flow to the external sink {sink['name']} in "
            f"{sink['jurisdiction']} (policy jurisdictions: {listed})"
        )
    return verdict


def publish_decisions(verdicts: list[ProductVerdict], *, batch_refused: str | None) -> list[dict[str, Any]]:
    """``publish_allowed``/``publish_refused`` per product, and a ``violation`` per blocked flow.

    ``batch_refused``: why the whole serve batch is refused (a failed quality suite, another product
    refused); products that passed their own checks are then refused for that reason.
    """
    found: list[dict[str, Any]] = []
    for verdict in verdicts:
        details: dict[str, Any] = {"levels": dict(verdict.levels)}
        if verdict.disclosure is not None:
            details.update(
                {key: verdict.disclosure[key] for key in ("k", "minRowsPerCell", "suppressedCells", "rows")}
            )
        for place in verdict.blocked_jurisdictions:
            found.append(
                decision(
                    "violation",
                    verdict.dataset,
                    f"a flow of {verdict.level} data to {place} is outside the policy's jurisdictions",
                    level=verdict.level,
                    product=verdict.product,
                    details={"jurisdiction": place},
                )
            )
        for sink in verdict.blocked_exports:
            found.append(
                decision(
                    "violation",
                    verdict.dataset,
                    f"a flow of {verdict.level} data to the external sink {sink['name']} in "
                    f"{sink['jurisdiction']} is outside the policy's jurisdictions; not exported",
                    level=verdict.level,
                    product=verdict.product,
                    details={
                        "jurisdiction": sink["jurisdiction"],
                        "destination": {"kind": EXTERNAL_SINK, "name": sink["name"], "url": sink["url"]},
                    },
                )
            )
        if verdict.problems:
            kind, reason = "publish_refused", "; ".join(verdict.problems)
        elif batch_refused:
            kind, reason = "publish_refused", f"not published: {batch_refused}"
        else:
            kind = "publish_allowed"
            reason = "every column at or below its allowed level, no cell under k, jurisdictions allowed"
        found.append(
            decision(
                kind, verdict.dataset, reason, level=verdict.level, product=verdict.product, details=details
            )
        )
    return found
