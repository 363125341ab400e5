"""Typed settings of the lineage service.

Precedence, highest first: explicit arguments (CLI flags) > environment variables (``CHAINTRACE_*``)
> a ``.env`` file in the working directory > the defaults below. This mirrors openlineage-python's
client config: one object, built once, passed down.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class LineageSettings(BaseSettings):
    """Settings of the lineage service (``CHAINTRACE_`` environment prefix)."""

    model_config = SettingsConfigDict(env_prefix="CHAINTRACE_", env_file=".env", extra="ignore")

    data_root: Path | str = Field(
        default=Path("data"), description="Root of the data zones: a local folder, or any fsspec URL "
        "(s3://bucket/prefix, memory://...; products are served from it). The default store is a SQLite "
        "file under a local root; a URL root needs CHAINTRACE_DB_URL.",
    )
    db_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the store; default: SQLite file under data_root."
    )
    host: str = "127.0.0.1"
    port: int = 5000
    max_body_bytes: int = Field(default=5 * 1024 * 1024, description="Request bodies above this get 413.")
    max_batch_events: int = Field(default=10_000, description="Most events one batch request may carry.")
    commit_batch_max: int = Field(default=2_000, description="Most events the writer commits at once.")
    projector_process: bool = Field(
        default=True, description="Project events into the graph in a second process (file stores only)."
    )
    derivations_in: Literal["service", "process"] = Field(
        default="service", description="Where the classification levels, the audit rows derived from "
        "events and the monitoring alerts are derived: in the service process (threads), or in a child "
        "process of their own, which frees the service's interpreter for requests (file stores only; "
        "should the child stop, the service takes over). `chaintrace lineage serve` picks process unless "
        "this is set.",
    )
    batch_processes: int = Field(
        default=0, ge=0, le=16, description="Child processes that parse, validate and store big batch "
        "requests (bodies of 128 KB and more), one request each at a time, so that concurrent batches use "
        "more than one core; 0: the service does it all. Needs the projector process (a file store). "
        "`chaintrace lineage serve` picks 2 unless this is set.",
    )
    ol_schema_dir: Path | None = Field(
        default=None, description="OpenLineage JSON Schema folder (default: the vendored 2-0-2 copy)."
    )
    spool_dir: Path | None = Field(
        default=None,
        description="Spool folder of producers' events (spool-first delivery, or what they could not send); "
        "ingested on start and then watched when set.",
    )
    spool_poll_ms: int = Field(
        default=100, ge=0, description="How often the spool is looked at after start; 0: only at start."
    )
    log_level: str = "info"
    auth: Literal["keys", "off"] = Field(
        default="keys",
        description="keys: every route but /healthz needs an API key (Authorization: Bearer ct_...); "
        "off: no keys, every caller is an admin (a trusted single-user machine only).",
    )
    key_cache_s: float = Field(
        default=30.0, ge=0, description="How long a checked key is trusted without asking the store again "
        "(a revoked key stops working within this time)."
    )
    monitoring_rules_file: Path | None = Field(
        default=None,
        description="Alert rules YAML (gate failed, run failed, data late, schema changed, policy violation; "
        "webhooks); default: lineage/monitoring/rules.yaml.",
    )
    policy_file: Path | None = Field(
        default=None, description="Governance policy YAML (levels, k, jurisdictions); default: the chain's."
    )
    airflow_url: str | None = Field(
        default=None, description="Base URL of Airflow's UI (e.g. http://127.0.0.1:8080): the web UI's run "
        "view links each DAG run and task there; unset: no links."
    )

    @field_validator("data_root", mode="before")
    @classmethod
    def _local_root_as_path(cls, value: object) -> object:
        # A URL stays a string (Path would fold "s3://b/p" into "s3:/b/p"); file:// and plain paths are local.
        if isinstance(value, str):
            if value.startswith("file://"):
                return Path(value.removeprefix("file://"))
            if "://" not in value:
                return Path(value)
        return value

    def local_data_root(self) -> Path | None:
        """The data root as a local folder, or None when it is a remote fsspec URL."""
        return self.data_root if isinstance(self.data_root, Path) else None

    def resolved_db_url(self) -> str:
        """The store URL: ``db_url`` when set, else a SQLite file under a local data root."""
        if self.db_url:
            return self.db_url
        local = self.local_data_root()
        if local is None:
            raise ValueError(f"CHAINTRACE_DATA_ROOT is the URL {self.data_root!s}: the store cannot be a "
                             "SQLite file there; set CHAINTRACE_DB_URL (e.g. postgresql://host/lineage)")
        path = (local / "lineage" / "lineage.db").resolve()
        return f"sqlite:///{path}"
