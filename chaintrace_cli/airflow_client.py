"""The few calls of Airflow 3's REST API (``/api/v2``) the chain needs, as the admin of a stack."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from chaintrace_cli.airflow_stack import AirflowStack

TERMINAL_RUN_STATES = {"success", "failed"}


class AirflowError(RuntimeError):
    """Airflow did not start, or answered something unexpected; the message says what and where to look."""


class AirflowClient:
    """The few calls of Airflow's REST API (``/api/v2``) the chain needs."""

    def __init__(self, base_url: str, stack: AirflowStack | None = None) -> None:
        self.base_url = base_url
        self.stack = stack
        self._http = httpx.Client(base_url=base_url, timeout=30)
        self._token: str | None = None

    def close(self) -> None:
        self._http.close()

    def _headers(self) -> dict[str, str]:
        if self._token is None:
            password = self._admin_password()
            if password is None:
                # With all-admins simple auth, GET /auth/token hands out an admin token.
                response = self._http.get("/auth/token")
            else:
                response = self._http.post("/auth/token", json={"username": "admin", "password": password})
            response.raise_for_status()
            self._token = response.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def _admin_password(self) -> str | None:
        """The generated password of ``admin`` when the stack has users (celery shape), else None."""
        if self.stack is None or self.stack.executor != "celery":
            return None
        try:
            return str(json.loads(self.stack.passwords_file.read_text())["admin"])
        except (OSError, ValueError, KeyError) as exc:
            raise AirflowError(f"no admin password in {self.stack.passwords_file}: {exc}") from exc

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, headers=self._headers(), **kwargs)
        if response.status_code == 401:
            self._token = None
            response = self._http.request(method, path, headers=self._headers(), **kwargs)
        if response.status_code >= 400:
            raise AirflowError(f"{method} {path}: HTTP {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else None

    def wait_healthy(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stack is not None:
                self.stack.check_alive()
            try:
                if self._http.get("/api/v2/monitor/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise AirflowError(f"the Airflow api-server at {self.base_url} did not answer within {timeout:.0f} s")

    def dag_ids(self) -> list[str]:
        return [dag["dag_id"] for dag in self._call("GET", "/api/v2/dags", params={"limit": 1000})["dags"]]

    def import_errors(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/api/v2/importErrors")["import_errors"])

    def wait_dags(self, dag_ids: list[str], timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stack is not None:
                self.stack.check_alive()
            if set(dag_ids) <= set(self.dag_ids()):
                return
            errors = self.import_errors()
            if errors:
                raise AirflowError(f"DAG import errors: {errors}")
            time.sleep(2)
        raise AirflowError(f"DAGs {dag_ids} were not parsed within {timeout:.0f} s (have {self.dag_ids()})")

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self._call("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": paused})

    def trigger(self, dag_id: str, run_id: str, conf: dict[str, Any] | None = None) -> str:
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf or {}}
        return str(self._call("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)["dag_run_id"])

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"))

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        return list(self._call("GET", path, params={"limit": 1000})["task_instances"])

    def create_backfill(self, dag_id: str, from_date: str, to_date: str, max_active_runs: int) -> int:
        """An Airflow 3 backfill of ``dag_id`` over [from_date, to_date] (ISO dates); its id."""
        body = {"dag_id": dag_id, "from_date": from_date, "to_date": to_date,
                "max_active_runs": max_active_runs, "reprocess_behavior": "none", "run_backwards": False}
        return int(self._call("POST", "/api/v2/backfills", json=body)["id"])

    def task_instance_tries(self, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
        """Every try of one task instance (hostname, pid, state, try_number), oldest first."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries"
        return list(self._call("GET", path)["task_instances"])
