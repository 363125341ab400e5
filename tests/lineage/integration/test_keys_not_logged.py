"""No API key ever reaches a log or an answer: a real ``chaintrace lineage serve`` at log level debug
with uvicorn's access log on, called with valid, invalid and revoked keys in both headers, on paths
that answer 200, 201, 400, 401, 403, 404 and 422; then neither a token nor its secret part is in the
server's output or in any response (headers included). ``chaintrace keys list`` shows no secret either.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import orjson

from lineage.store.db import create_store_engine, migrate
from lineage.store.keys import create_key, revoke_key, split_token

# ``serve`` turns uvicorn's access log off (it costs ingest throughput) and configures uvicorn's loggers
# only; this module, first on the server's PYTHONPATH, turns the access log back on and sends every other
# logger's records from DEBUG up (ours, SQLAlchemy's statements and rows, httpx's...) to the output too,
# as the most verbose deployment would.
VERBOSE = '''
import logging

import uvicorn

logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
logging.getLogger("sqlalchemy.engine").setLevel(logging.DEBUG)  # SQLAlchemy holds itself at WARNING
_run = uvicorn.run


def _run_with_access_log(*args, **kwargs):
    kwargs["access_log"] = True
    return _run(*args, **kwargs)


uvicorn.run = _run_with_access_log
'''


WINDOW = 12


def _keys(db_url: str) -> dict[str, str]:
    engine = create_store_engine(db_url)
    try:
        migrate(engine)
        made = {role: create_key(engine, name=f"log-{role}", role=role, clearance="L2")[1]
                for role in ("producer", "reader", "consumer")}
        revoked, made["revoked"] = create_key(engine, name="log-revoked", role="admin", clearance="L4")
        revoke_key(engine, revoked.key_id)
    finally:
        engine.dispose()
    return made


def test_keys_never_appear_in_the_server_output_nor_in_answers(it: Any, server_factory: Any,
                                                                tmp_path: Path) -> None:
    url = it.store_url("sqlite", "keys-log")
    tokens = _keys(url)
    # One key made the way an operator makes them, by the CLI (it prints the token once, on stdout).
    created = it.cli_keys("create", "--role", "admin", "--name", "cli-admin", "--token-only", "--db", url)
    tokens["cli admin"] = created.stdout.strip()
    assert tokens["cli admin"] not in created.stderr
    tokens["unknown"] = f"ct_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"
    tokens["malformed"] = "ct-" + secrets.token_urlsafe(24)

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(VERBOSE)
    server = server_factory(url, log_name="keys-log", CHAINTRACE_LOG_LEVEL="debug", PYTHONPATH=str(site))
    tokens["server admin"] = server.api_key

    good = {"runId": "0f6f0f6f-0f6f-4f6f-8f6f-0f6f0f6f0f6f"}
    event = it.run_event("START", "2026-01-01T00:00:00Z", good["runId"], "keys-log-job")
    invalid_event = {**event, "eventType": 12}

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def header(token: str) -> dict[str, str]:
        return {"X-API-Key": token}

    calls: list[tuple[str, str, dict[str, str], bytes | None, int]] = []
    for form in (bearer, header):
        calls += [
            ("GET", "/api/v1/namespaces", form(tokens["reader"]), None, 200),
            ("GET", "/api/v1/namespaces", form(tokens["cli admin"]), None, 200),
            ("POST", "/api/v1/lineage", form(tokens["producer"]), orjson.dumps(event), 201),
            ("GET", "/api/v1/lineage?nodeId=nonsense", form(tokens["reader"]), None, 400),
            ("GET", "/api/v1/namespaces", {}, None, 401),
            ("GET", "/api/v1/namespaces", form(tokens["unknown"]), None, 401),
            ("GET", "/api/v1/namespaces", form(tokens["malformed"]), None, 401),
            ("GET", "/api/v1/namespaces", form(tokens["revoked"]), None, 401),
            ("POST", "/api/v1/lineage", form(tokens["revoked"]), orjson.dumps(event), 401),
            ("POST", "/api/v1/lineage/batch", form(tokens["unknown"]), orjson.dumps([event]), 401),
            ("POST", "/api/v1/lineage", form(tokens["reader"]), orjson.dumps(event), 401),
            ("GET", "/api/v1/namespaces", form(tokens["producer"]), None, 403),
            ("GET", "/api/v1/audit", form(tokens["consumer"]), None, 403),
            ("GET", "/api/v1/namespaces/no-such-namespace", form(tokens["reader"]), None, 404),
            ("POST", "/api/v1/lineage", form(tokens["producer"]), orjson.dumps(invalid_event), 422),
        ]
    calls.append(("GET", "/api/v1/namespaces", {"Authorization": f"Basic {tokens['reader']}"}, None, 401))

    answers: list[str] = []
    conn = server.connection(api_key=None)
    try:
        for method, path, headers, body, status in calls:
            if method == "POST":
                assert body is not None
                reply = it.http_post(conn, path, body, headers)
            else:
                reply = it.http_get(conn, path, headers)
            assert reply.status == status, (method, path, list(headers), reply.status, reply.body[:300])
            answers.append(repr(reply.headers) + reply.body.decode("utf-8", "replace"))
    finally:
        conn.close()
    assert server.stop() is not None
    output = server.log.read_text(errors="replace")

    # The output searched is really the debug output, with request lines and the key lookups in it.
    assert "DEBUG " in output
    assert "FROM api_keys" in output
    assert '"GET /api/v1/namespaces HTTP/1.1" 401' in output
    assert '"POST /api/v1/lineage HTTP/1.1" 201' in output

    # A token, its secret part, or any 12 characters of the secret in a row (a truncated token still
    # gives much of it away; 12 random characters do not occur by chance).
    seen = []
    for who, token in tokens.items():
        split = split_token(token)
        secret = split[1] if split is not None else token
        pieces = {token, *(secret[i:i + WINDOW] for i in range(max(len(secret) - WINDOW + 1, 1)))}
        if any(piece in output for piece in pieces):
            seen.append(f"{who}: in the server output")
        if any(piece in answer for piece in pieces for answer in answers):
            seen.append(f"{who}: in an answer")
    assert not seen, seen

    listed = it.cli_keys("list", "--db", url)
    for who, token in tokens.items():
        split = split_token(token)
        assert token not in listed.stdout + listed.stderr, who
        if split is not None:
            assert split[1] not in listed.stdout + listed.stderr, who
            if who not in ("unknown",):
                assert split[0] in listed.stdout, f"{who}'s key id is listed"

