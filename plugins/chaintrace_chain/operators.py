"""Airflow operators of the chain: one runs a stage, one runs the stage's quality gate.

They expose lineage the way the OpenLineage provider asks (``get_openlineage_facets_on_start/
complete/failure`` returning ``OperatorLineage``) and keep the logic in ``stages`` and ``quality``,
which run without Airflow. Lineage never fails a task: every facet method catches, logs and returns
what it could build.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

    from chaintrace_chain.spec import DatasetSpec
    from chaintrace_chain.stages import StageReport
    from chaintrace_chain.zones import Zones

log = logging.getLogger(__name__)


def _zones() -> Zones:
    from chaintrace_chain.zones import Zones

    return Zones.from_settings()  # any fsspec URL (CHAINTRACE_DATA_ROOT, CHAINTRACE_DATA_STORAGE_OPTIONS)


def _try_ledger() -> Any:
    """Where tries record their start and end (previous_try.TryLedger): the data root every worker shares."""
    return _zones().root / "state" / "tries"


def _spec(dataset: str) -> DatasetSpec:
    from chaintrace_chain.settings import ChainSettings
    from chaintrace_chain.spec import load_spec

    return load_spec(dataset, ChainSettings().resolved_spec_dir())


def _run_of(task_instance: Any) -> str:
    from chaintrace_chain.zones import run_key

    return run_key(str(task_instance.run_id))


def _empty_lineage() -> OperatorLineage:
    from airflow.providers.openlineage.extractors import OperatorLineage

    return OperatorLineage()


class _ChainOperator(BaseOperator):
    template_fields = ()
    ui_color = "#e8f1fb"

    def __init__(self, *, dataset: str, stage: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dataset = dataset
        self.stage = stage
        self._run: str | None = None

    def pre_execute(self, context: Any) -> None:
        # Records when this try began its work, and closes the lineage of earlier tries of this task that
        # died without a terminal event (worker killed); see previous_try. Never raises.
        from chaintrace_chain.previous_try import begin_try

        begin_try(context["ti"], context["dag_run"], _try_ledger)

    def _mark_try_ended(self, task_instance: Any) -> None:
        """Called as the provider builds this try's COMPLETE or FAIL: the try needs no closing later."""
        from chaintrace_chain.previous_try import mark_try_ended

        mark_try_ended(task_instance, _try_ledger)

    def _report(self, stage: str | None = None, run: str | None = None) -> StageReport | None:
        from chaintrace_chain.stages import StageError, load_report

        run = run or self._run
        if run is None:
            return None
        try:
            return load_report(_zones(), self.dataset, run, stage or self.stage)
        except StageError:
            return None


class StageOperator(_ChainOperator):
    """Runs one stage (collect, store, process, analyze, serve) of one dataset for the DAG run."""

    ui_color = "#dbeafe"

    def execute(self, context: Any) -> dict[str, Any]:
        from chaintrace_chain.stages import run_stage
        from chaintrace_chain.zones import run_key

        self._run = run_key(str(context["run_id"]))
        report = run_stage(_spec(self.dataset), self.stage, zones=_zones(), run=self._run)
        rows = {item.table: item.rows for item in report.outputs}
        self.log.info("%s/%s wrote %s; counts %s", self.dataset, self.stage, rows, report.counts)
        return {"outputs": rows, "counts": report.counts}

    def get_openlineage_facets_on_start(self) -> OperatorLineage:
        # Inputs are known before the stage runs only once the previous stage has reported.
        return _empty_lineage()

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        from chaintrace_chain.lineage_build import stage_lineage

        self._mark_try_ended(task_instance)
        try:
            report = self._report(run=_run_of(task_instance))
            return stage_lineage(_spec(self.dataset), report, _zones()) if report else _empty_lineage()
        except Exception:  # lineage never fails a task
            log.exception("chaintrace: could not build lineage for %s/%s", self.dataset, self.stage)
            return _empty_lineage()

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage:
        from chaintrace_chain.lineage_build import stage_failure_lineage

        self._mark_try_ended(task_instance)
        try:
            return stage_failure_lineage(_spec(self.dataset), self.stage, _run_of(task_instance), _zones())
        except Exception:
            log.exception("chaintrace: could not build failure lineage for %s/%s", self.dataset, self.stage)
            return _empty_lineage()


class GateOperator(_ChainOperator):
    """Runs the Great Expectations gate after a stage. A failing gate quarantines the batch and fails
    the task without retries, so every stage downstream is skipped; a passing serve gate publishes."""

    ui_color = "#dcfce7"

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from chaintrace_chain.quality import GateFailed, gate_stage
        from chaintrace_chain.zones import run_key

        self._run = run_key(str(context["run_id"]))
        try:
            from chaintrace_chain.settings import ChainSettings

            enabled = ChainSettings().gates_enabled
            outcome = gate_stage(
                _spec(self.dataset), self.stage, zones=_zones(), run=self._run, enabled=enabled
            )
        except GateFailed as failed:
            raise AirflowFailException(str(failed)) from failed
        self.log.info("%s/%s gate passed: %s", self.dataset, self.stage, outcome.summary())
        return outcome.summary()

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        from chaintrace_chain.lineage_build import gate_lineage

        self._mark_try_ended(task_instance)
        try:
            return gate_lineage(_spec(self.dataset), self.stage, _run_of(task_instance), _zones())
        except Exception:
            log.exception("chaintrace: could not build gate lineage for %s/%s", self.dataset, self.stage)
            return _empty_lineage()

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage:
        return self.get_openlineage_facets_on_complete(task_instance)
