"""Airflow UI plugin: a "Lineage" tab on every DAG and a "Lineage service" link in Airflow's Browse menu,
both pointing at the lineage service's web UI (the DAG's graph, and the UI's start page).

Airflow 3 renders an external view of destination ``dag`` as a tab of the DAG page (``url_route`` is
required for that: the tab lives at ``/dags/<dag_id>/plugin/<url_route>``) whose iframe loads ``href``
after replacing ``{DAG_ID}`` with the URL-encoded DAG id. A ``nav`` view without ``url_route`` is a
plain link that opens in a new browser tab.

Where the links point: ``CHAINTRACE_LINEAGE_UI_URL`` (default ``http://127.0.0.1:5000``, the lineage
service's default address). The job namespace is the one the OpenLineage provider stamps on the chain's
jobs (``[openlineage] namespace``, ``chaintrace`` in ``chaintrace_cli.airflow_stack``). Both are read
when Airflow instantiates the plugin, not at import: Airflow imports this module in every process, and
importing it does no I/O and pulls in nothing but the plugin base class (the chain's stage names come
from ``chaintrace_chain.zones`` when the links are built, since that module now reaches storage code).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote, urlsplit

from airflow.plugins_manager import AirflowPlugin

URL_ENV = "CHAINTRACE_LINEAGE_UI_URL"
DEFAULT_URL = "http://127.0.0.1:5000"
DAG_VIEW_ROUTE = "chaintrace-lineage"
# Hops to follow from the DAG's first job: the whole chain (five stages, each a run and a gate) and
# whatever reads its products; the service caps depth at 100.
GRAPH_DEPTH = 20


def lineage_base_url(environ: dict[str, str] | None = None) -> str:
    """The lineage service's base URL from ``CHAINTRACE_LINEAGE_UI_URL``, without a trailing slash.

    A value that is not an absolute http(s) URL is refused with an error naming the variable; the value
    is echoed only when it carries no credentials.
    """
    env = os.environ if environ is None else environ
    raw = env.get(URL_ENV, "").strip() or DEFAULT_URL
    parts = urlsplit(raw)
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{URL_ENV} must not carry credentials (user:password@); set a plain URL")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{URL_ENV}={raw!r} is not an absolute http(s) URL, e.g. {DEFAULT_URL}")
    if parts.query or parts.fragment:
        raise ValueError(f"{URL_ENV}={raw!r} must be a base URL without '?query' or '#fragment'")
    return raw.rstrip("/")


def job_namespace() -> str:
    """The namespace of the chain's OpenLineage jobs: the provider's own setting, so the link follows a
    change of ``AIRFLOW__OPENLINEAGE__NAMESPACE`` (imported here: the provider reads Airflow's config)."""
    from airflow.providers.openlineage.conf import namespace

    return str(namespace())


def dag_lineage_href(base_url: str, namespace: str) -> str:
    """The href template of a DAG's lineage tab; Airflow's UI substitutes ``{DAG_ID}``.

    The lineage web UI served at ``/``: its graph view (``#/graph?nodeId=...``) around the DAG's first
    job. The chain's OpenLineage job names are ``<dag_id>.<task_id>`` with task ids ``<stage>.run`` and
    ``<stage>.gate``; the graph around the first stage's run job spans the whole DAG. The view's
    parameters sit in the URL fragment, which the browser never sends: the page reads them and calls
    the API with the key it keeps (the iframe asks for one once per browser tab).
    """
    from chaintrace_chain.zones import STAGES  # here, not at import (see the module docstring)

    node_id = quote(f"job:{namespace}:", safe=":") + "{DAG_ID}" + f".{STAGES[0]}.run"
    return f"{base_url}/#/graph?nodeId={node_id}&depth={GRAPH_DEPTH}&direction=both"


def service_href(base_url: str) -> str:
    """The global link: the lineage web UI's start page (it asks for an API key)."""
    return f"{base_url}/"


def external_views(base_url: str, namespace: str) -> list[dict[str, Any]]:
    return [
        {
            "name": "Lineage",
            "href": dag_lineage_href(base_url, namespace),
            "destination": "dag",
            "url_route": DAG_VIEW_ROUTE,
        },
        {
            # No url_route: a plain link that opens the service in a new browser tab.
            "name": "Lineage service",
            "href": service_href(base_url),
            "destination": "nav",
            "category": "browse",
        },
    ]


class ChaintraceLineageUiPlugin(AirflowPlugin):
    name = "chaintrace_lineage_ui"

    def __init__(self) -> None:
        # Per instance, from the environment at load time (Airflow instantiates each plugin once per
        # process); a bad URL fails here and shows up in Airflow's plugin import errors.
        self.external_views = external_views(lineage_base_url(), job_namespace())
