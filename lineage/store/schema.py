"""Relational schema of the lineage store (SQLAlchemy Core; SQLite and PostgreSQL).

Two parts:
- ``events``: the raw OpenLineage events, append-only, one row per distinct event (``event_hash`` is the
  SHA-256 of the canonical JSON, which makes ingest idempotent).
- everything else is *derived* from ``events`` by :mod:`lineage.store.projector` and can be dropped and
  rebuilt by replay. Every derived write merges commutatively (min/max, union, last-writer-wins on
  ``lww`` = ``"<eventTime>|<event_hash>"``), so the derived state does not depend on arrival order.

Times are stored as fixed-width UTC ISO-8601 strings (``2026-01-01T00:00:00.000000Z``): they sort
lexicographically in time order on both backends. ``seq`` columns hold the id of the newest raw event
that touched a row; readers use them to refresh in-memory indexes incrementally. They are bookkeeping,
not part of the graph (the graph hash leaves them out).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for a long-lived log.
EventId = BigInteger().with_variant(Integer(), "sqlite")

NAME = String(1024)
TIME = String(32)
LWW = String(100)

events = Table(
    "events",
    metadata,
    Column("id", EventId, primary_key=True, autoincrement=True),
    Column("event_hash", String(64), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("event_type", String(16), nullable=True),
    Column("event_time", TIME, nullable=False),
    Column("run_id", String(64), nullable=True),
    Column("job_namespace", NAME, nullable=True),
    Column("job_name", NAME, nullable=True),
    Column("received_at", TIME, nullable=False),
    Column("payload", Text, nullable=False),
    Column("facet_warnings", Text, nullable=True),
    Index("ix_events_event_time", "event_time"),
    Index("ix_events_run_id", "run_id"),
    Index("ix_events_job", "job_namespace", "job_name"),
)

store_meta = Table(
    "store_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

namespaces = Table(
    "namespaces",
    metadata,
    Column("name", NAME, primary_key=True),
    Column("created_at", TIME, nullable=False),
    Column("updated_at", TIME, nullable=False),
)

sources = Table(
    "sources",
    metadata,
    Column("name", NAME, primary_key=True),
    Column("connection_url", Text, nullable=True),
    Column("created_at", TIME, nullable=False),
    Column("updated_at", TIME, nullable=False),
    Column("lww", LWW, nullable=False),
)

datasets = Table(
    "datasets",
    metadata,
    Column("namespace", NAME, primary_key=True),
    Column("name", NAME, primary_key=True),
    Column("created_at", TIME, nullable=False),
    Column("updated_at", TIME, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Index("ix_datasets_seq", "seq"),
)

# Current facets of a dataset, one row per facet key, newest event wins per key. Input and output
# facets (dataQualityAssertions, outputStatistics, ...) are kept here as well, as Marquez shows them.
dataset_facets = Table(
    "dataset_facets",
    metadata,
    Column("namespace", NAME, primary_key=True),
    Column("name", NAME, primary_key=True),
    Column("facet", String(255), primary_key=True),
    Column("value", Text, nullable=False),
    Column("lww", LWW, nullable=False),
)

# One version per output write: the version id is uuid5(namespace, name, runId).
# The facets of a version, of a run, and the job facets a run saw are NOT tables: they are merged on read
# from the run's raw events (lineage.store.event_facets), which the events table indexes by run_id. That
# keeps ingest and rebuild to about a third of the rows.
dataset_versions = Table(
    "dataset_versions",
    metadata,
    Column("version", String(36), primary_key=True),
    Column("namespace", NAME, nullable=False),
    Column("name", NAME, nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("created_at", TIME, nullable=False),
    Index("ix_dataset_versions_dataset", "namespace", "name", "created_at"),
    Index("ix_dataset_versions_run", "run_id"),
)


jobs = Table(
    "jobs",
    metadata,
    Column("namespace", NAME, primary_key=True),
    Column("name", NAME, primary_key=True),
    Column("created_at", TIME, nullable=False),
    Column("updated_at", TIME, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Index("ix_jobs_seq", "seq"),
)

job_facets = Table(
    "job_facets",
    metadata,
    Column("namespace", NAME, primary_key=True),
    Column("name", NAME, primary_key=True),
    Column("facet", String(255), primary_key=True),
    Column("value", Text, nullable=False),
    Column("lww", LWW, nullable=False),
)

# Edges of the lineage graph: job -> dataset (OUTPUT) and dataset -> job (INPUT), the union over all
# runs (and JobEvents) of the job that are still in the store.
job_io = Table(
    "job_io",
    metadata,
    Column("job_namespace", NAME, primary_key=True),
    Column("job_name", NAME, primary_key=True),
    Column("dataset_namespace", NAME, primary_key=True),
    Column("dataset_name", NAME, primary_key=True),
    Column("direction", String(6), primary_key=True),
    Column("first_seen", TIME, nullable=False),
    Column("last_seen", TIME, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Index("ix_job_io_dataset", "dataset_namespace", "dataset_name"),
    Index("ix_job_io_seq", "seq"),
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("job_namespace", NAME, nullable=False),
    Column("job_name", NAME, nullable=False),
    Column("created_at", TIME, nullable=False),
    Column("updated_at", TIME, nullable=False),
    # Marquez run state (NEW, RUNNING, COMPLETED, FAILED, ABORTED) chosen by ``state_key``:
    # "<rank>|<eventTime>|<hash>" where terminal events outrank RUNNING outranks START outranks OTHER,
    # so a late START can never overwrite COMPLETE.
    Column("state", String(16), nullable=False),
    Column("state_key", LWW, nullable=False),
    Column("started_at", TIME, nullable=True),
    Column("ended_at", TIME, nullable=True),
    Column("parent_run_id", String(64), nullable=True),
    Column("seq", BigInteger, nullable=False),
    Index("ix_runs_job", "job_namespace", "job_name", "created_at"),
    Index("ix_runs_parent", "parent_run_id"),
)



run_io = Table(
    "run_io",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("dataset_namespace", NAME, primary_key=True),
    Column("dataset_name", NAME, primary_key=True),
    Column("direction", String(6), primary_key=True),
    Column("created_at", TIME, nullable=False),
    Index("ix_run_io_dataset", "dataset_namespace", "dataset_name"),
)

# inputFacets / outputFacets of one dataset in one run (dataQualityAssertions live here).
run_io_facets = Table(
    "run_io_facets",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("dataset_namespace", NAME, primary_key=True),
    Column("dataset_name", NAME, primary_key=True),
    Column("direction", String(6), primary_key=True),
    Column("facet", String(255), primary_key=True),
    Column("value", Text, nullable=False),
    Column("lww", LWW, nullable=False),
)

# Column-level edges from the columnLineage facet: input field -> output field, one row per
# transformation (type/subtype are '' when the producer sent none).
column_lineage = Table(
    "column_lineage",
    metadata,
    Column("out_namespace", NAME, primary_key=True),
    Column("out_name", NAME, primary_key=True),
    Column("out_field", String(1024), primary_key=True),
    Column("in_namespace", NAME, primary_key=True),
    Column("in_name", NAME, primary_key=True),
    Column("in_field", String(1024), primary_key=True),
    Column("transformation_type", String(32), primary_key=True),
    Column("transformation_subtype", String(32), primary_key=True),
    Column("description", Text, nullable=True),
    Column("masking", Boolean, nullable=False),
    Column("lww", LWW, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Index("ix_column_lineage_in", "in_namespace", "in_name", "in_field"),
    Index("ix_column_lineage_seq", "seq"),
)

tags = Table(
    "tags",
    metadata,
    Column("name", String(512), primary_key=True),
    Column("created_at", TIME, nullable=False),
)

# Tags from the ``tags`` dataset facet; ``field`` is '' for a dataset-level tag. Newest value per key.
dataset_tags = Table(
    "dataset_tags",
    metadata,
    Column("namespace", NAME, primary_key=True),
    Column("name", NAME, primary_key=True),
    Column("field", String(1024), primary_key=True),
    Column("tag_key", String(255), primary_key=True),
    Column("tag_value", Text, nullable=False),
    Column("source", String(255), nullable=True),
    Column("lww", LWW, nullable=False),
)

job_tags = Table(
    "job_tags",
    metadata,
    Column("namespace", NAME, primary_key=True),
    Column("name", NAME, primary_key=True),
    Column("tag_key", String(255), primary_key=True),
    Column("tag_value", Text, nullable=False),
    Column("source", String(255), nullable=True),
    Column("lww", LWW, nullable=False),
)

#: Tables derived from ``events``: emptied and refilled by a rebuild, hashed by the graph hash.
DERIVED_TABLES: tuple[Table, ...] = (
    namespaces,
    sources,
    datasets,
    dataset_facets,
    dataset_versions,
    jobs,
    job_facets,
    job_io,
    runs,
    run_io,
    run_io_facets,
    column_lineage,
    tags,
    dataset_tags,
    job_tags,
)


def tag_name(key: str, value: str) -> str:
    """Marquez-style tag name of a ``tags`` facet entry: the key alone for a flag, else ``key:value``."""
    if value in ("", "true", "True"):
        return key
    return f"{key}:{value}"


# -- governance (not derived from events: never emptied by a rebuild, never hashed) -------------------

#: API keys. Only a SHA-256 of the secret is stored: the secrets are 256-bit random tokens, so a fast
#: hash leaves nothing to brute-force, and lookups stay cheap on the request path.
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("role", String(16), nullable=False),  # producer | reader | consumer | admin
    Column("clearance", String(2), nullable=False),  # L1..L4
    Column("jurisdiction", String(64), nullable=True),  # where the holder is (consumers)
    Column("secret_sha256", String(64), nullable=False),
    Column("created_at", TIME, nullable=False),
    Column("revoked_at", TIME, nullable=True),
)

#: Every governance decision, append-only (the migration adds triggers that refuse UPDATE and DELETE).
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", EventId, primary_key=True, autoincrement=True),
    Column("at", TIME, nullable=False),
    # level_assigned | publish_allowed | publish_refused | access_granted | access_denied | violation
    Column("kind", String(32), nullable=False),
    Column("dataset_namespace", NAME, nullable=True),
    Column("dataset_name", NAME, nullable=True),
    Column("field", NAME, nullable=True),
    Column("subject", String(255), nullable=True),  # key name, consumer, job: who the decision was about
    Column("reason", Text, nullable=False),
    Column("details", Text, nullable=True),  # JSON
    # Entries derived from an event (or a computation) carry a key so that they are written once.
    Column("dedup_key", String(200), nullable=True, unique=True),
    Index("ix_audit_log_dataset", "dataset_namespace", "dataset_name", "at"),
    Index("ix_audit_log_at", "at"),
    Index("ix_audit_log_kind", "kind", "at"),
)
