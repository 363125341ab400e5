"""What a stage transform returns: its tables, their column lineage, and the counts it kept.

Transforms are pure functions over pandas frames (no I/O, no Airflow): the stage runner reads their
inputs from the previous zone and writes their outputs; the operators turn the lineage declared here
into OpenLineage ``columnLineage`` facets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import pandas as pd

TransformType = Literal["DIRECT", "INDIRECT"]
# OpenLineage's subtypes: DIRECT: IDENTITY, TRANSFORMATION, AGGREGATION; INDIRECT: JOIN, GROUP_BY,
# FILTER, SORT, WINDOW, CONDITIONAL.
Subtype = Literal[
    "IDENTITY", "TRANSFORMATION", "AGGREGATION", "JOIN", "GROUP_BY", "FILTER", "SORT", "WINDOW", "CONDITIONAL"
]


@dataclass(frozen=True)
class FieldSource:
    """One input column an output column derives from, and how."""

    table: str  # a table of the stage's input (for store: a source key)
    column: str
    type: TransformType = "DIRECT"
    subtype: Subtype = "IDENTITY"
    masking: bool = False  # hashed, generalised or dropped identifiers
    description: str = ""


ColumnLineage = dict[str, list[FieldSource]]  # output column -> its input columns


@dataclass
class StageOutput:
    tables: dict[str, pd.DataFrame]
    # table -> output column -> sources; every column of every output table must appear.
    lineage: dict[str, ColumnLineage]
    # Named counts of what the stage handled rather than dropped silently, e.g. "null_tailnum": 2512.
    counts: dict[str, int] = field(default_factory=dict)
    # Declared classification level per output table and column ("L1".."L4").
    levels: dict[str, dict[str, str]] = field(default_factory=dict)
