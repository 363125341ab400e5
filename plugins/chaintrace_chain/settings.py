"""Typed settings of the chain (``CHAINTRACE_`` environment prefix).

Precedence, highest first: explicit arguments > environment variables > a ``.env`` file > defaults.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_POLICY_FILE = Path(__file__).resolve().with_name("policy") / "governance.yaml"


class ChainSettings(BaseSettings):
    """Where the chain keeps its data, finds its quality suites and its governance policy."""

    model_config = SettingsConfigDict(env_prefix="CHAINTRACE_", env_file=".env", extra="ignore")

    data_root: Path = Field(default=Path("data"), description="Root folder of the data zones.")
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

    def resolved_data_root(self) -> Path:
        return self.data_root.expanduser().resolve()

    def resolved_spec_dir(self) -> Path:
        from chaintrace_chain.spec import SPEC_DIR

        return self.spec_dir.expanduser().resolve() if self.spec_dir else SPEC_DIR
