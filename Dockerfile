# One image for every service of docker-compose.yml: the lineage service (`chaintrace lineage serve`),
# the key tool (`chaintrace keys`) and Airflow 3 (api-server, scheduler, dag-processor, triggerer, Celery
# workers) with the chain: dags/, plugins/ and the GX suites in expectations/. The same pinned set
# (constraints.txt) as `make install`, so containers run what the tests ran.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AIRFLOW_HOME=/opt/airflow

# curl: the health checks of docker-compose.yml call the services' HTTP health endpoints with it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*

# Not root: uid 50000 like Airflow's own image; group 0 so an orchestrator running an arbitrary uid
# (group 0) can still write the folders below.
RUN useradd --uid 50000 --gid 0 --create-home --home-dir /home/chaintrace chaintrace

WORKDIR /app

# Dependencies first, in a layer of their own: a change to the code does not reinstall Airflow.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY lineage lineage
COPY chaintrace_cli chaintrace_cli
COPY plugins plugins
COPY dags dags
COPY expectations expectations
# Editable: chaintrace_chain is imported from /app/plugins, the same copy Airflow's plugins folder holds,
# and its default paths (GX suites, specs, policy) resolve inside /app as in a checkout.
RUN pip install --no-deps -e . \
    && mkdir -p /data /spool /opt/airflow/logs /opt/airflow/auth \
    && chown -R chaintrace:0 /data /spool /opt/airflow /app/expectations \
    && chmod -R g+rwX /data /spool /opt/airflow /app/expectations

USER chaintrace
EXPOSE 5000 8080
CMD ["chaintrace", "lineage", "serve", "--host", "0.0.0.0", "--port", "5000"]
