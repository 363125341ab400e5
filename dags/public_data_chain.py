"""Airflow DAGs of the chain: one DAG per public dataset, built from its spec
(chaintrace_chain/specs/*.yaml). Wiring only: no data is read at parse time."""

from __future__ import annotations

from chaintrace_chain.dag_factory import build_all

globals().update(build_all())
