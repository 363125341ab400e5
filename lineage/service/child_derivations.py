"""What is derived from the store after each projection, in a process of its own.

The classification levels (and their audit rows), the audit rows derived from governance facets and
the monitoring alerts are background work of the service process by default: threads that share its
interpreter, and so its GIL, with request parsing and the ingest writer. Under a sustained ingest they
took about a quarter of that interpreter. With ``derivations_in = "process"`` a child process (a fresh
interpreter, like the projector's) runs the same services instead, woken after each projection; the
service process keeps its copies for reads (levels refresh on demand), streams events and alerts (it
reads other processes' alerts from the store), and takes the derivations back should the child stop.
(Running them inside the projector process was measured first: there they took the GIL from the
projection while it held the store's write lock, and the ingest writer waited.)

Everything the services derive is keyed by watermarks and dedup keys in the store, so the hand-over in
either direction neither misses nor repeats a row.

The pipe protocol (the child's stdin): the store URL (not an argument: it may hold a password), the
JSON configuration, then one line per projection (the events it added); end of file means stop.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine

from lineage.governance.policy import load_policy
from lineage.monitoring import MonitoringService
from lineage.service.audit import AuditService
from lineage.service.child_process import PipedChild, PipeLines, configure_child_logging, prepare_child
from lineage.service.classification import ClassificationService
from lineage.service.store_roles import RETRY_S, StoreRole
from lineage.store.db import create_store_engine

log = logging.getLogger(__name__)

NICENESS = 10  # background work: when the cores are short, requests and the projection go first


def derivation_config(policy_file: Path | None, rules_file: Path | None) -> dict[str, Any]:
    """What the child needs to build the services (sent over its pipe as JSON)."""
    return {
        "policy_file": str(policy_file) if policy_file is not None else None,
        "rules_file": str(rules_file) if rules_file is not None else None,
    }


def _path(value: object) -> Path | None:
    return Path(str(value)) if value else None


@dataclass
class ChildDerivations:
    """The three services as the child runs them."""

    classification: ClassificationService
    audit: AuditService
    monitoring: MonitoringService

    @classmethod
    def build(cls, engine: Engine, config: dict[str, Any]) -> ChildDerivations:
        policy = load_policy(_path(config.get("policy_file")))
        return cls(ClassificationService(engine, policy), AuditService(engine),
                   MonitoringService(engine, _path(config.get("rules_file"))))

    def start(self) -> None:
        """Derive what earlier processes left, then follow the projections (and the clock)."""
        self.classification.start()
        self.audit.start()
        self.monitoring.start()

    def on_projected(self, count: int) -> None:
        self.classification.on_commit(count)
        self.audit.on_commit(count)
        self.monitoring.on_commit(count)

    def close(self) -> None:
        """Finish the passes in flight and store the watermarks."""
        for close in (self.audit.close, self.monitoring.close, self.classification.close):
            try:
                close()
            except Exception:  # the store keeps everything: the next process derives the rest
                log.exception("closing a derivation service failed")


def child_main() -> None:
    """Derive after each projection the parent reports, until the pipe ends.

    One derivations process per store derives (the leader, see :mod:`store_roles`); with
    ``--workers N`` the others wait, reading their pipe, and ask for the role every ``RETRY_S``: one
    takes over when the leader's worker stops.
    """
    prepare_child(NICENESS)
    lines = PipeLines(sys.stdin.fileno())
    url, config = lines.next_line(), lines.next_line()
    if url is None or config is None:
        return
    engine = create_store_engine(url.decode().strip(), pool_size=4)
    role = StoreRole(engine, "derivations")
    derivations: ChildDerivations | None = None
    try:
        while True:
            if derivations is None and role.try_take():
                derivations = ChildDerivations.build(engine, orjson.loads(config))
                derivations.start()
            if derivations is None and not lines.ready(RETRY_S):
                continue  # a follower: nothing came, ask for the role again
            line = lines.next_line()
            if line is None:
                break
            if derivations is not None:
                derivations.on_projected(int(line))
    finally:
        if derivations is not None:
            derivations.close()
        role.release()
        engine.dispose()


class DerivationProcess(PipedChild):
    """The parent's handle: start the child, tell it of projections, notice when it stops."""

    def __init__(self, engine: Engine, config: dict[str, Any], on_lost: Callable[[], None]) -> None:
        self.on_lost = on_lost
        super().__init__(__name__, engine.url.render_as_string(hide_password=False).encode() + b"\n"
                         + orjson.dumps(config) + b"\n", self._watch, name="derivations-watch")

    def nudge(self, count: int) -> bool:
        """Tell the child a projection added ``count`` events; False when it is gone."""
        return self._send(f"{count}\n".encode())

    def _watch(self) -> None:
        self.process.wait()
        if not self._stopping:
            log.error("the derivations process stopped (exit code %s)", self.process.returncode)
            self.on_lost()

    def stop(self, timeout: float = 10.0) -> None:
        """Close the pipe: the child finishes its passes, stores its watermarks and exits. One still
        busy after ``timeout`` is killed: safe at any moment (the next process derives the rest)."""
        super().stop(timeout)


if __name__ == "__main__":
    configure_child_logging()
    child_main()
