"""Transforms of ``covid_testing``: SARS-CoV-2 PCR tests at a children's hospital (medicaldata).

process: drops the (fake) names, replaces the subject id by a salted pseudonym, generalises age to
bands, normalises the category spellings, voids impossible turnaround times and removes exact
duplicate tests, counting each of these. analyze: positivity and turnaround per pandemic day, clinic,
and age band x gender, with the number of tests behind every cell. serve: the public products, cells
under k tests suppressed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from chaintrace_chain.stage_output import ColumnLineage, FieldSource, StageOutput
from chaintrace_chain.transforms import common
from chaintrace_chain.transforms.masking import age_bands, pseudonym_salt, salted_hash

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from chaintrace_chain.spec import DatasetSpec
    from chaintrace_chain.storage import ZonePath

SOURCE_TABLE = "tests"
NAME_COLUMNS = ["fake_first_name", "fake_last_name"]
SOURCE_COLUMNS = [
    "subject_id",
    *NAME_COLUMNS,
    "gender",
    "age",
    "pan_day",
    "test_id",
    "clinic_name",
    "result",
    "demo_group",
    "drive_thru_ind",
    "ct_result",
    "orderset",
    "payor_group",
    "patient_class",
    "col_rec_tat",
    "rec_ver_tat",
]
# A paediatric hospital: fine bands for children; 90+ is one band (HIPAA Safe Harbor groups ages over 89).
AGE_EDGES = [0, 1, 5, 12, 18, 30, 50, 65, 90, np.inf]
MAX_PLAUSIBLE_AGE = 110.0  # the source holds ages of 119 and 138: data errors, not patients
UNKNOWN_AGE_BAND = "unknown"
NOT_RECORDED = "not recorded"
# A specimen is not tested a week after collection: longer collect-to-receive times are entry errors.
MAX_PLAUSIBLE_TAT_HOURS = 168.0
RESULTS = ("positive", "negative", "invalid")
# Spellings of one clinic that the free-text field splits (after whitespace and stray-prefix clean-up);
# look-alikes that may be different sites (``s care ntwk``, ``cc care ntwk``) are left apart.
CLINIC_SYNONYMS = {
    "urg care ctr": "urgent care center",
    "diag rad": "diag radiology",
    "onco holding": "oncology holding",
    "mri-mag resonance": "mri",
}

PROCESSED_COLUMNS = {  # processed column -> the source column it derives from
    "subject_key": "subject_id",
    "gender": "gender",
    "age_band": "age",
    "pan_day": "pan_day",
    "test_code": "test_id",
    "clinic": "clinic_name",
    "result": "result",
    "demo_group": "demo_group",
    "drive_thru": "drive_thru_ind",
    "ct_result": "ct_result",
    "order_set": "orderset",
    "payor_group": "payor_group",
    "patient_class": "patient_class",
    "col_rec_tat_h": "col_rec_tat",
    "rec_ver_tat_h": "rec_ver_tat",
}
# Analysis tables and the processed columns each groups by.
GROUPINGS = {
    "tests_by_day": ["pan_day"],
    "tests_by_clinic": ["clinic"],
    "tests_by_age_gender": ["age_band", "gender"],
}


def store(spec: DatasetSpec, landed: Mapping[str, Path | ZonePath]) -> StageOutput:
    return common.store_tables(spec, landed)


def _normalised_text(series: pd.Series) -> pd.Series:
    """Lower case, single spaces, no edge spaces; missing stays missing."""
    present = series.notna()
    text = series.astype("str").str.strip().str.lower().str.replace(r"\s+", " ", regex=True)
    return text.where(present, None).astype("str")


def _normalised_clinic(series: pd.Series) -> pd.Series:
    """One spelling per clinic: strips number prefixes (``1 laboratory``) and dangling dashes."""
    text = _normalised_text(series)
    text = text.str.replace(r"^[\d\s]+", "", regex=True).str.strip(" -")
    return text.replace(CLINIC_SYNONYMS)


def _flag(series: pd.Series, where: str) -> pd.Series:
    """A 0/1 indicator as a nullable boolean; anything else is bad input."""
    numeric = pd.to_numeric(series, errors="coerce")
    bad = series.notna() & ~numeric.isin([0, 1])
    if bad.any():
        raise common.TransformError(
            f"{where}: {int(bad.sum())} value(s) are not 0/1, e.g. {series[bad].iloc[0]!r}"
        )
    return numeric.map({1: True, 0: False}).astype("boolean")


def process(spec: DatasetSpec, raw: Mapping[str, pd.DataFrame]) -> StageOutput:
    where = f"{spec.name}.process"
    common.require_tables(raw, [SOURCE_TABLE], where)
    frame = raw[SOURCE_TABLE]
    common.require_columns(frame, SOURCE_COLUMNS, f"{where} (table {SOURCE_TABLE})")
    counts: dict[str, int] = {"input_rows": len(frame), "name_columns_dropped": len(NAME_COLUMNS)}

    # Duplicates are judged on the source values (not the generalised ones, which would merge
    # different tests); the names are left out since they are dropped anyway.
    duplicated = frame[[c for c in SOURCE_COLUMNS if c not in NAME_COLUMNS]].duplicated()
    counts["duplicate_tests"] = int(duplicated.sum())
    frame = frame[~duplicated]

    age = pd.to_numeric(frame["age"], errors="coerce")
    implausible_age = age.notna() & ((age < 0) | (age >= MAX_PLAUSIBLE_AGE))
    counts["implausible_age"] = int(implausible_age.sum())
    counts["null_age"] = int(age.isna().sum())
    band = age_bands(age.where(~implausible_age), AGE_EDGES).fillna(UNKNOWN_AGE_BAND)

    clinic = _normalised_clinic(frame["clinic_name"])
    counts["clinic_names_respelled"] = int((clinic != frame["clinic_name"].astype("str")).sum())
    counts["null_ct_result"] = int(frame["ct_result"].isna().sum())

    turnaround: dict[str, pd.Series] = {}
    for column in ("col_rec_tat", "rec_ver_tat"):
        hours = pd.to_numeric(frame[column], errors="coerce").astype("float64")
        negative = hours < 0
        too_long = hours > MAX_PLAUSIBLE_TAT_HOURS
        counts[f"negative_{column}"] = int(negative.sum())
        counts[f"implausible_{column}"] = int(too_long.sum())
        turnaround[f"{column}_h"] = hours.mask(negative | too_long)

    administrative: dict[str, pd.Series] = {}
    for column in ("payor_group", "patient_class"):
        counts[f"null_{column}"] = int(frame[column].isna().sum())
        administrative[column] = _normalised_text(frame[column]).fillna(NOT_RECORDED)

    tests = pd.DataFrame(
        {
            "subject_key": salted_hash(frame["subject_id"], pseudonym_salt()),
            "gender": _normalised_text(frame["gender"]),
            "age_band": band,
            "pan_day": frame["pan_day"].astype("Int64"),
            "test_code": _normalised_text(frame["test_id"]),
            "clinic": clinic,
            "result": _normalised_text(frame["result"]),
            "demo_group": _normalised_text(frame["demo_group"]),
            "drive_thru": _flag(frame["drive_thru_ind"], f"{where}: drive_thru_ind"),
            "ct_result": pd.to_numeric(frame["ct_result"], errors="coerce").astype("float64"),
            "order_set": _flag(frame["orderset"], f"{where}: orderset"),
            **administrative,
            **turnaround,
        }
    ).reset_index(drop=True)
    counts["unexpected_result"] = int((~tests["result"].isin(RESULTS)).sum())
    counts["rows"] = len(tests)

    lineage: ColumnLineage = {}
    for column, source in PROCESSED_COLUMNS.items():
        subtype = "IDENTITY" if column in ("pan_day", "ct_result") else "TRANSFORMATION"
        lineage[column] = [FieldSource(SOURCE_TABLE, source, "DIRECT", subtype)]
    lineage["subject_key"] = [
        FieldSource(
            SOURCE_TABLE,
            "subject_id",
            "DIRECT",
            "TRANSFORMATION",
            masking=True,
            description="salted HMAC-SHA256 pseudonym",
        ),
    ]
    lineage["age_band"] = [
        FieldSource(
            SOURCE_TABLE,
            "age",
            "DIRECT",
            "TRANSFORMATION",
            masking=True,
            description=f"generalised to age bands; ages of {MAX_PLAUSIBLE_AGE:g}+ unknown",
        ),
    ]
    # The pseudonym still links one subject's tests (L3, not L4); the bands are coarse (L2, not L3).
    levels = {SOURCE_TABLE: {"subject_key": "L3", "age_band": "L2"}}
    return StageOutput({SOURCE_TABLE: tests}, {SOURCE_TABLE: lineage}, counts, levels)


def _indicators(tests: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Tests, positives and median turnaround per cell of ``keys``."""
    work = tests.assign(
        is_positive=tests["result"] == "positive",
        is_conclusive=tests["result"].isin(["positive", "negative"]),
    )
    grouped = work.groupby(keys, observed=True, sort=True)
    table = pd.DataFrame(
        {
            "n_tests": grouped.size(),
            "n_subjects": grouped["subject_key"].nunique(),
            "n_conclusive": grouped["is_conclusive"].sum(),
            "n_positive": grouped["is_positive"].sum(),
            "median_col_rec_tat_h": grouped["col_rec_tat_h"].median(),
            "median_rec_ver_tat_h": grouped["rec_ver_tat_h"].median(),
        }
    ).reset_index()
    for column in ("n_tests", "n_subjects", "n_conclusive", "n_positive"):
        table[column] = table[column].astype("int64")
    conclusive = table["n_conclusive"].where(table["n_conclusive"] > 0)
    table["positivity_pct"] = (100.0 * table["n_positive"] / conclusive).round(1).astype("float64")
    for column in ("median_col_rec_tat_h", "median_rec_ver_tat_h"):
        table[column] = table[column].astype("float64").round(2)
    return table


def _indicator_lineage(keys: list[str]) -> ColumnLineage:
    group_by = [FieldSource(SOURCE_TABLE, key, "INDIRECT", "GROUP_BY") for key in keys]

    def aggregated(column: str, description: str) -> list[FieldSource]:
        return [
            FieldSource(SOURCE_TABLE, column, "DIRECT", "AGGREGATION", description=description),
            *group_by,
        ]

    lineage: ColumnLineage = {key: [FieldSource(SOURCE_TABLE, key, "DIRECT", "IDENTITY")] for key in keys}
    lineage["n_tests"] = aggregated("result", "tests in the cell")
    lineage["n_subjects"] = aggregated("subject_key", "distinct subjects in the cell")
    lineage["n_conclusive"] = aggregated("result", "positive or negative tests")
    lineage["n_positive"] = aggregated("result", "positive tests")
    lineage["positivity_pct"] = aggregated("result", "100 x positive / conclusive tests")
    lineage["median_col_rec_tat_h"] = aggregated("col_rec_tat_h", "median hours, collection to receipt")
    lineage["median_rec_ver_tat_h"] = aggregated("rec_ver_tat_h", "median hours, receipt to verification")
    return lineage


def analyze(spec: DatasetSpec, processed: Mapping[str, pd.DataFrame]) -> StageOutput:
    where = f"{spec.name}.analyze"
    common.require_tables(processed, [SOURCE_TABLE], where)
    tests = processed[SOURCE_TABLE]
    needed = sorted(
        {key for keys in GROUPINGS.values() for key in keys}
        | {"subject_key", "result", "col_rec_tat_h", "rec_ver_tat_h"}
    )
    common.require_columns(tests, needed, f"{where} (table {SOURCE_TABLE})")
    tables: dict[str, pd.DataFrame] = {}
    lineage: dict[str, ColumnLineage] = {}
    counts: dict[str, int] = {"tests": len(tests)}
    for table_name, keys in GROUPINGS.items():
        tables[table_name] = _indicators(tests, keys)
        lineage[table_name] = _indicator_lineage(keys)
        counts[f"{table_name}.cells"] = len(tables[table_name])
    counts["tests_without_turnaround"] = int(
        tests[["col_rec_tat_h", "rec_ver_tat_h"]].isna().any(axis=1).sum()
    )
    # No level declared: aggregates of health results keep the level of what they aggregate (small
    # cells can still single a patient out) until serve has suppressed the cells under k.
    return StageOutput(tables, lineage, counts)


def serve(spec: DatasetSpec, analysis: Mapping[str, pd.DataFrame]) -> StageOutput:
    output = common.serve_products(spec, analysis)
    # Each product is aggregates (with generalised keys) whose cells under k tests were suppressed:
    # that is what makes them public.
    output.levels = {product.name: dict.fromkeys(product.columns, "L1") for product in spec.products}
    return output
