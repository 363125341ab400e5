"""Deterministic generators of OpenLineage 2-0-2 RunEvents for tests and benchmarks.

* :func:`airflow_style_events` - realistic Airflow-provider task events (2-4 KB each).
* :func:`five_stage_chain_events` - the hand-built nycflights13 chain collect -> ... -> serve (golden tests).
* :func:`layered_graph` / :func:`layered_graph_events` - a large layered DAG for graph benchmarks.

Every event validates against the 2-0-2 core schema and each standard facet against its facet schema.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from lineage.synthetic_chain import (
    AIRFLOW_RUN_FACET_URL,
    CHAIN_JOBS,
    CHAIN_SERVED,
    CHAIN_SOURCE,
    CUSTOM_FACET_KEYS,
    FACET_VERSIONS,
    PRODUCER,
    RUN_EVENT_SCHEMA_URL,
    chain_run_id,
    column_lineage_facet,
    data_source_facet,
    facet,
    facet_schema_url,
    five_stage_chain_events,
    format_time,
    job_type_facet,
    parent_facet,
    parse_time,
    processing_engine_facet,
    run_event,
    schema_facet,
    stable_uuid,
)

__all__ = [
    "CHAIN_JOBS",
    "CHAIN_SERVED",
    "CHAIN_SOURCE",
    "CUSTOM_FACET_KEYS",
    "FACET_VERSIONS",
    "PRODUCER",
    "RUN_EVENT_SCHEMA_URL",
    "LayeredGraph",
    "airflow_style_events",
    "chain_run_id",
    "facet_schema_url",
    "five_stage_chain_events",
    "layered_graph",
    "layered_graph_events",
]

AIRFLOW_BASE_TIME = "2026-01-01T00:00:00Z"
MIN_EVENT_BYTES, MAX_EVENT_BYTES = 2048, 4096
BENCH_NAMESPACE = "chaintrace.bench"
Schemas = dict[str, list[tuple[str, str]]]

# fmt: off
_DAGS = (
    "nycflights13", "gapminder", "palmerpenguins", "titanic", "covid19_owid", "world_bank_wdi",
    "nyc_taxi_trips", "citibike", "noaa_ghcn", "eurostat_unemployment", "openaq", "movielens",
)
_SRC = "/data/incoming/"  # source files: no producer in the graph
_STAGES = ("collect", "store", "process", "analyze", "serve")
_ZONE = dict(zip(_STAGES, ("landing", "raw", "processed", "analysis", "service"), strict=True))
_TASKS = {
    "collect": ("download_csv", "fetch_api", "mirror_release", "pull_snapshot"),
    "store": ("to_parquet", "partition_by_date", "register_raw"),
    "process": ("join_reference", "clean_nulls", "dedupe_records", "normalise_units", "enrich_geo"),
    "analyze": ("aggregate_monthly", "compute_trends", "rank_top_n", "fit_baseline"),
    "serve": ("publish_table", "export_open_data", "refresh_dashboard"),
}
_OPERATORS = {
    "collect": "airflow.providers.http.operators.http.HttpOperator",
    "store": "airflow.providers.standard.operators.python.PythonOperator",
    "process": "airflow.providers.common.sql.operators.sql.SQLExecuteQueryOperator",
    "analyze": "airflow.providers.standard.operators.python.PythonOperator",
    "serve": "airflow.providers.standard.operators.bash.BashOperator",
}
_NOUNS = ("records", "observations", "events", "stations", "trips", "measures", "entities", "regions")
_COLUMNS = (
    ("id", "bigint"), ("name", "string"), ("country", "string"), ("region", "string"), ("year", "integer"),
    ("month", "integer"), ("day", "integer"), ("ts", "timestamp"), ("value", "double"), ("count", "bigint"),
    ("lat", "double"), ("lon", "double"), ("category", "string"), ("status", "string"),
    ("price", "decimal(12,2)"), ("population", "bigint"), ("rate", "double"), ("source_url", "string"),
    ("email", "string"), ("station_id", "string"), ("updated_at", "timestamp"), ("is_valid", "boolean"),
    ("score", "double"),
)
# fmt: on
_SUBTYPES = ("TRANSFORMATION", "TRANSFORMATION", "AGGREGATION")


@dataclass
class _PoolJob:
    dag: str
    stage: str
    pos: int
    task_id: str
    inputs: list[str]
    outputs: list[str]


def _uuid4(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _build_pool(n_jobs: int, rng: random.Random) -> tuple[list[_PoolJob], Schemas]:
    """Jobs spread over DAGs; every job reads an earlier job's output so the graph is connected."""
    n_dags = max(1, min(len(_DAGS), n_jobs // 5))
    jobs: list[_PoolJob] = []
    schemas: Schemas = {}
    used: set[str] = set()

    def new_dataset(path: str, parents: list[str]) -> str:
        name, n = path, 1
        while name in used:
            n += 1
            name = f"{path}_{n}"
        used.add(name)
        width = rng.randint(5, 12)
        inherited = list(dict.fromkeys(col for p in parents for col in schemas[p]))  # mostly carried over
        cols = rng.sample(inherited, min(len(inherited), width - rng.randint(1, 3))) if inherited else []
        cols += rng.sample([c for c in _COLUMNS if c not in cols], width - len(cols))
        schemas[name] = cols
        return name

    task_ids: set[str] = set()
    for i in range(n_jobs):
        d, pos = i % n_dags, i // n_dags
        per_dag = (n_jobs - d + n_dags - 1) // n_dags
        dag, stage = _DAGS[d], _STAGES[min(4, pos * 5 // per_dag)]
        task, n = f"{stage}.{rng.choice(_TASKS[stage])}", 1
        while f"{dag}.{task}" in task_ids:
            n += 1
            task = f"{stage}.{rng.choice(_TASKS[stage])}_{n}"
        task_ids.add(f"{dag}.{task}")
        if pos == 0:
            inputs = [new_dataset(f"{_SRC}{dag}/{rng.choice(_NOUNS)}.csv", [])]
        else:
            inputs = [rng.choice(jobs[i - n_dags].outputs)]
            if d > 0 and (pos == 1 or rng.random() < 0.1):  # cross-DAG reference join keeps DAGs connected
                ref = jobs[rng.randrange(pos) * n_dags + rng.randrange(d)]  # a lower DAG, earlier position
                inputs.append(rng.choice(ref.outputs))
        outputs = [new_dataset(f"/data/{_ZONE[stage]}/{dag}/{rng.choice(_NOUNS)}", inputs)]
        jobs.append(_PoolJob(dag, stage, pos, task, inputs, outputs))
    return jobs, schemas


def _airflow_facet(job: _PoolJob, nominal: str) -> dict[str, Any]:
    """Custom run facet in the style of the provider's AirflowRunFacet (trimmed to the ids)."""
    return {
        "_producer": PRODUCER,
        "_schemaURL": AIRFLOW_RUN_FACET_URL,
        "dag": {"dag_id": job.dag},
        "dagRun": {"run_id": f"scheduled__{nominal[:19]}+00:00"},
        "task": {"task_id": job.task_id, "operator_class": _OPERATORS[job.stage].rsplit(".", 1)[-1]},
        "taskInstance": {"try_number": 1},
    }


def _dataset(name: str, schemas: Schemas, schema: bool, source: bool) -> dict[str, Any]:
    facets = {"schema": schema_facet(schemas[name])} if schema else {}
    if source:
        facets["dataSource"] = data_source_facet("file", name)
    return {"namespace": "file", "name": name, "facets": facets}


def _complete_output(
    name: str, inputs: list[str], schemas: Schemas, rng: random.Random, run_id: str
) -> dict[str, Any]:
    ds = _dataset(name, schemas, schema=True, source=False)
    lineage: dict[str, list[tuple[tuple[str, str], str, str, str, str, bool]]] = {}
    tags = [{"key": "classification", "value": rng.choice(("L1", "L2")), "source": "INTEGRATION"}]
    for col, _ in schemas[name]:
        src = next((i for i in inputs if any(c == col for c, _ in schemas[i])), None)
        if src is not None:
            lin = (("file", src), col, "DIRECT", "IDENTITY", "", False)
        else:
            src = rng.choice(inputs)
            in_col, subtype = rng.choice(schemas[src])[0], rng.choice(_SUBTYPES)
            lin = (("file", src), in_col, "DIRECT", subtype, "", col == "email")
        lineage[col] = [lin]
    for col, _ in rng.sample(schemas[name], 2):
        level = "L4" if col == "email" else rng.choice(("L1", "L2", "L3"))
        tags.append({"key": "classification", "value": level, "source": "INTEGRATION", "field": col})
    ds["facets"] |= {
        "columnLineage": column_lineage_facet(lineage),
        "tags": facet("TagsDatasetFacet", tags=tags),
        "lifecycleStateChange": facet("LifecycleStateChangeDatasetFacet", lifecycleStateChange="OVERWRITE"),
        "version": facet("DatasetVersionDatasetFacet", datasetVersion=stable_uuid(name, run_id)),
    }
    rows = rng.randint(100, 5_000_000)
    stats = facet("OutputStatisticsOutputDatasetFacet", rowCount=rows, size=rows * rng.randint(40, 400))
    ds["outputFacets"] = {"outputStatistics": stats}
    return ds


def _fit(event: dict[str, Any]) -> dict[str, Any]:
    """Keep the serialised event within MIN..MAX bytes: drop trailing column-lineage fields of a too big
    COMPLETE (the schema keeps every field), pad the job documentation of a too small event."""
    size = len(orjson.dumps(event))
    for out in event["outputs"]:
        fields = out.get("facets", {}).get("columnLineage", {}).get("fields", {})
        while size > MAX_EVENT_BYTES and len(fields) > 1:
            fields.pop(next(reversed(fields)))
            size = len(orjson.dumps(event))
    if size < MIN_EVENT_BYTES:
        doc = event["job"]["facets"].setdefault(
            "documentation", facet("DocumentationJobFacet", description="Runs daily.")
        )
        doc["description"] += " Runs after upstream sensors succeed." * ((MIN_EVENT_BYTES - size) // 36 + 1)
    return event


def _run_facets(job: _PoolJob, event_type: str, nominal: datetime, dag_run: str, ns: str) -> dict[str, Any]:
    facets: dict[str, Any] = {
        "parent": parent_facet(dag_run, (ns, job.dag), root=False),
        "processing_engine": processing_engine_facet(),
    }
    if event_type == "START":
        start, end = format_time(nominal), format_time(nominal + timedelta(days=1))
        facets["nominalTime"] = facet("NominalTimeRunFacet", nominalStartTime=start, nominalEndTime=end)
        facets["airflow"] = _airflow_facet(job, start)
    elif event_type == "FAIL":
        facets["errorMessage"] = facet(
            "ErrorMessageRunFacet",
            message=f"Task {job.task_id} failed: upstream file not found",
            programmingLanguage="python",
            stackTrace=f'Traceback (most recent call last):\n  File "/opt/airflow/dags/{job.dag}.py", line 42'
            "\nFileNotFoundError: [Errno 2] No such file or directory",
        )
    return facets


def _job_facets(job: _PoolJob, event_type: str) -> dict[str, Any]:
    facets = {"jobType": job_type_facet()}
    if event_type == "START":  # static job metadata travels with START only, as the provider does
        doc = f"{job.stage.capitalize()} step of the {job.dag} open-data pipeline."
        facets["documentation"] = facet("DocumentationJobFacet", description=doc)
        owners = [{"name": f"team:{job.dag}", "type": "OWNER"}]
        facets["ownership"] = facet("OwnershipJobFacet", owners=owners)
    return facets


def airflow_style_events(
    n_events: int, *, seed: int = 0, namespace: str = "chaintrace"
) -> list[dict[str, Any]]:
    """`n_events` Airflow-provider-like task events, 2-4 KB each: START then COMPLETE (~8% FAIL) per run.

    To stay within 4 KB the facets are spread over the two events of a run (consumers merge them):
    START: run facets nominalTime, parent, processing_engine, airflow (custom); job facets jobType,
    documentation, ownership; the main input with schema (+ dataSource for source files), a cross-DAG
    reference input bare; outputs with dataSource.
    COMPLETE: parent, processing_engine, jobType; bare inputs; outputs with schema, columnLineage (fields
    trimmed to fit), tags (dataset + 2 columns, L1..L4), lifecycleStateChange OVERWRITE, version and the
    outputStatistics output facet. FAIL: as COMPLETE but errorMessage and bare outputs.
    Runs go in daily rounds (a few task instances skipped) over a pool of ~n_events/20 jobs spread over up
    to 12 DAGs; the first round covers every job, so the emitted lineage graph is connected.
    """
    rng = random.Random(seed)
    pool, schemas = _build_pool(max(1, round(n_events / 20)), rng)
    order = sorted(pool, key=lambda j: (j.pos, _DAGS.index(j.dag)))
    base = parse_time(AIRFLOW_BASE_TIME)
    events: list[dict[str, Any]] = []
    rnd = 0
    while len(events) < n_events:
        for job in order:
            if len(events) >= n_events:
                break
            if rnd > 0 and rng.random() < 0.1:
                continue  # task instance skipped that day
            nominal = base + timedelta(days=rnd)
            dag_run = stable_uuid("airflow", str(seed), namespace, job.dag, str(rnd))
            start = nominal + timedelta(days=1, seconds=job.pos * 600 + rng.randint(0, 60))
            start += timedelta(microseconds=rng.randint(0, 999_999))
            end = start + timedelta(seconds=rng.randint(5, 500), microseconds=rng.randint(0, 999_999))
            run_id = _uuid4(rng)
            terminal = "FAIL" if rng.random() < 0.08 else "COMPLETE"
            job_id = (namespace, f"{job.dag}.{job.task_id}")
            for event_type, when in (("START", start), (terminal, end)):
                if event_type == "START":
                    # the main input with facets; a cross-DAG reference input bare (its producer describes it)
                    main, *refs = job.inputs
                    inputs = [_dataset(main, schemas, schema=True, source=main.startswith(_SRC))]
                    inputs += [{"namespace": "file", "name": name} for name in refs]
                    outputs = [_dataset(n, schemas, schema=False, source=True) for n in job.outputs]
                else:
                    inputs = [{"namespace": "file", "name": name} for name in job.inputs]
                    if event_type == "COMPLETE":
                        outputs = [_complete_output(n, job.inputs, schemas, rng, run_id) for n in job.outputs]
                    else:
                        outputs = [{"namespace": "file", "name": name} for name in job.outputs]
                run_facets = _run_facets(job, event_type, nominal, dag_run, namespace)
                job_facets = _job_facets(job, event_type)
                event = run_event(event_type, when, run_id, run_facets, job_id, job_facets, inputs, outputs)
                events.append(_fit(event))
        rnd += 1
    return events[:n_events]


# ------------------------------------------------------------------------------------ layered benchmark DAG
@dataclass(frozen=True)
class LayeredGraph:
    jobs: list[tuple[str, str]]  # (namespace, name)
    datasets: list[tuple[str, str]]
    job_inputs: list[list[int]]  # per job: indexes into datasets
    job_outputs: list[list[int]]


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def layered_graph(
    n_nodes: int,
    *,
    edges_per_node: float = 2.0,
    layers: int = 40,
    seed: int = 0,
    locality: int | None = 3,
) -> LayeredGraph:
    """A layered DAG of ~n_nodes nodes (40% jobs) and ~edges_per_node * n_nodes job<->dataset edges.

    Layer 0 holds source datasets only. A job of layer k >= 1 writes datasets of layer k (each dataset has
    exactly one producer) and reads datasets of layer k-1 (80%) or of an earlier layer; fan-in is
    exponential-weighted and reads are skewed towards popular datasets, so fan-in/out vary widely.

    ``locality``: a job reads datasets within that many positions of its own place in the layer, the way
    real lineage is many pipelines rather than one expander graph; the nodes a query reaches then depend
    on depth, not on the size of the whole graph. ``None`` reads from anywhere in the layer (every
    Marquez-style depth-5 query then reaches almost the whole graph).
    """
    rng = random.Random(seed)
    n_jobs = max(1, round(n_nodes * 0.4))
    n_ds = max(2, n_nodes - n_jobs)
    layers = max(2, min(layers, n_jobs + 1, n_ds))
    jobs_per_layer = [0, *_split(n_jobs, layers - 1)]
    ds_per_layer = _split(n_ds, layers)
    ds_per_layer = [max(d, j) for d, j in zip(ds_per_layer, jobs_per_layer, strict=True)]  # >= 1 output/job
    ds_start = [0]
    for count in ds_per_layer:
        ds_start.append(ds_start[-1] + count)
    datasets = [("file", f"/bench/l{k:02d}/ds{i:07d}") for k, n in enumerate(ds_per_layer) for i in range(n)]
    jobs = [(BENCH_NAMESPACE, f"l{k:02d}.job{i:07d}") for k, n in enumerate(jobs_per_layer) for i in range(n)]
    n_jobs = len(jobs)

    # fan-in: 1 each, the remaining input edges spread with exponential weights
    output_edges = len(datasets) - ds_per_layer[0]
    extra = max(0, round(edges_per_node * n_nodes) - output_edges - n_jobs)
    fan_in = [1] * n_jobs
    weights = [rng.expovariate(1.0) for _ in range(n_jobs)]
    for j in rng.choices(range(n_jobs), weights=weights, k=extra):
        fan_in[j] += 1

    job_inputs: list[list[int]] = []
    job_outputs: list[list[int]] = []
    j = 0
    for k in range(1, layers):
        count = jobs_per_layer[k]
        # outputs: one dataset per job, the rest of the layer to random jobs of the layer
        owners = list(range(count)) + [rng.randrange(count) for _ in range(ds_per_layer[k] - count)]
        if locality is None:
            rng.shuffle(owners)
        else:
            owners.sort()  # a job's outputs sit at its own place in the layer
        outs: list[list[int]] = [[] for _ in range(count)]
        for offset, owner in enumerate(owners):
            outs[owner].append(ds_start[k] + offset)
        available = ds_start[k]
        for local in range(count):
            want = min(fan_in[j], available)
            picked: set[int] = set()
            for _ in range(want * 2):
                if len(picked) >= want:
                    break
                if k == 1 or rng.random() < 0.8:
                    layer = k - 1
                elif locality is None:
                    layer = rng.randrange(k - 1)
                else:
                    layer = max(0, k - 1 - rng.randint(1, 2))  # skip a layer or two, not across the DAG
                size = ds_per_layer[layer]
                if locality is None:
                    picked.add(ds_start[layer] + int(size * rng.random() ** 1.5))  # skew: popular datasets
                    continue
                centre = int(size * local / max(1, count))
                if rng.random() < 0.1:
                    # a local reference table: one per block of 32 positions, read by its neighbours
                    position = centre - centre % 32
                else:
                    window = max(locality, want)  # wide enough to find `want` distinct inputs
                    offset = int(window * rng.random() ** 1.5) * (1 if rng.random() < 0.5 else -1)
                    position = centre + offset
                picked.add(ds_start[layer] + min(size - 1, max(0, position)))
            job_inputs.append(sorted(picked))
            job_outputs.append(outs[local])
            j += 1
    return LayeredGraph(jobs, datasets, job_inputs, job_outputs)


def layered_graph_events(
    graph: LayeredGraph, *, base_time: str = "2026-01-01T00:00:00Z"
) -> Iterator[dict[str, Any]]:
    """One lean COMPLETE RunEvent per job, in layer order, eventTime one second apart (~1 KB each).

    Outputs carry a 3-field schema facet (declared by their single producer); inputs are bare references.
    """
    base = parse_time(base_time)
    columns = [("id", "bigint"), ("value", "double"), ("updated_at", "timestamp")]
    ds = graph.datasets
    for j, (namespace, name) in enumerate(graph.jobs):
        outputs = [
            {"namespace": ds[i][0], "name": ds[i][1], "facets": {"schema": schema_facet(columns)}}
            for i in graph.job_outputs[j]
        ]
        yield {
            "eventType": "COMPLETE",
            "eventTime": format_time(base + timedelta(seconds=j, microseconds=j % 1_000_000)),
            "producer": PRODUCER,
            "schemaURL": RUN_EVENT_SCHEMA_URL,
            "run": {"runId": stable_uuid("layered", base_time, namespace, name)},
            "job": {"namespace": namespace, "name": name},
            "inputs": [{"namespace": ds[i][0], "name": ds[i][1]} for i in graph.job_inputs[j]],
            "outputs": outputs,
        }
