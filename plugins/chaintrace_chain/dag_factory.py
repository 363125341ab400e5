"""Build one Airflow DAG per dataset spec: five task groups, each a stage followed by its gate.

Only wiring happens here (DAG files call it at parse time): no data is read and neither pandas nor
GX is imported; the specs are small YAML files.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from airflow.sdk import DAG, TaskGroup

from chaintrace_chain.operators import GateOperator, StageOperator
from chaintrace_chain.settings import ChainSettings
from chaintrace_chain.spec import all_specs
from chaintrace_chain.zones import STAGES

if TYPE_CHECKING:
    from chaintrace_chain.spec import DatasetSpec

START_DATE = datetime(2026, 1, 1, tzinfo=UTC)


def build_dag(spec: DatasetSpec) -> DAG:
    with DAG(
        dag_id=spec.name,
        description=spec.title,
        doc_md=f"**{spec.title}** ({spec.domain}), licence {spec.licence}, owner {spec.owner}.\n\n"
        + spec.description,
        schedule=spec.schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        tags=["chaintrace", spec.domain],
        default_args={"owner": spec.owner, "retries": 1, "retry_delay": timedelta(seconds=5)},
    ) as dag:
        previous: TaskGroup | None = None
        for stage in STAGES:
            with TaskGroup(group_id=stage, tooltip=f"{stage} then its quality gate") as group:
                # A refused batch is never retried into the chain: the gate raises AirflowFailException,
                # which Airflow does not retry; a gate lost with its worker (killed) is retried.
                StageOperator(task_id="run", dataset=spec.name, stage=stage) >> GateOperator(
                    task_id="gate", dataset=spec.name, stage=stage
                )
            if previous is not None:
                previous >> group
            previous = group
    return dag


def build_all() -> dict[str, DAG]:
    return {spec.name: build_dag(spec) for spec in all_specs(ChainSettings().resolved_spec_dir())}
