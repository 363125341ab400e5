"""Typed settings of the chain (``CHAINTRACE_`` environment prefix).

Precedence, highest first: explicit arguments > environment variables > a ``.env`` file > defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_POLICY_FILE = Path(__file__).resolve().with_name("policy") / "governance.yaml"


class ChainSettings(BaseSettings):
    """Where the chain keeps its data, finds its quality suites and its governance policy."""

    model_config = SettingsConfigDict(env_prefix="CHAINTRACE_", env_file=".env", extra="ignore")

    data_root: str | Path = Field(
        default=Path("data"),
        description="Root of the data zones: a local folder or any fsspec URL "
        "(memory://bucket/root, s3://bucket/prefix ...).",
    )
    data_storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec storage options of the data root (JSON in CHAINTRACE_DATA_STORAGE_OPTIONS), "
        "e.g. {\"endpoint_url\": \"http://127.0.0.1:9000\"} for an S3-compatible store.",
    )
    quality_dir: Path | None = Field(
        default=None,
        description="Local folder of GX validation results and Data Docs (GX writes local files); default "
        "<data root>/quality for a local root, a folder under the system's temp folder otherwise.",
    )
    gx_root: Path = Field(
        default=PROJECT_ROOT / "expectations" / "gx", description="The GX file context (suites in git)."
    )
    spec_dir: Path | None = Field(
        default=None, description="Dataset specs folder; default: the package's specs/."
    )
    gates_enabled: bool = Field(
        default=True, description="Run the GX gates (off only to measure what they cost: nothing is checked)."
    )
    policy_file: Path = Field(
        default=DEFAULT_POLICY_FILE,
        description="Governance policy (level rules, k, jurisdictions); default: the one shipped in git.",
    )
    http_timeout_s: float = Field(default=30.0, description="Collect: per-request timeout.")
    http_retries: int = Field(default=3, description="Collect: attempts after the first failure.")

    def data_root_url(self) -> str:
        """The data root as the zones take it: an absolute local path, or the URL as given."""
        raw = str(self.data_root)
        if "://" in raw and not raw.startswith("file://"):
            return raw
        return Path(raw.removeprefix("file://")).expanduser().resolve().as_posix()

    def resolved_data_root(self) -> Path:
        """The data root as a local folder (the demo keeps Airflow's home and the store there)."""
        url = self.data_root_url()
        if "://" in url:
            raise ValueError(f"CHAINTRACE_DATA_ROOT={url} is not a local folder; this needs one")
        return Path(url)

    def resolved_spec_dir(self) -> Path:
        from chaintrace_chain.spec import SPEC_DIR

        return self.spec_dir.expanduser().resolve() if self.spec_dir else SPEC_DIR
