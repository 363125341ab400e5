"""Eight producers hammer a real ``chaintrace lineage serve`` process at once (both backends).

Each producer owns 2,500 of 20,000 Airflow-style events (START and COMPLETE of one run usually land on
different producers, so the server sees them in racing order) and sends them on one keep-alive
connection as a mix of single events, JSON-array batches, NDJSON batches and gzip bodies; it also
re-sends a few events owned by its neighbour, so identical events race each other.

The store must end up with exactly the 20,000 distinct events, every event must have been reported
"created" exactly once over all replies, and the derived graph must be the one a store filled with the
same events sequentially (in-process, batch by batch) has.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Any

import orjson
import pytest

from lineage.store.events import graph_hash
from lineage.synthetic import airflow_style_events

N_EVENTS = 20_000
PRODUCERS = 8
SINGLE_SHARE = 0.12  # fraction of each producer's events sent one per request
RESENDS = 25  # events of the neighbour producer each producer sends again

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus() -> list[dict[str, Any]]:
    events = airflow_style_events(N_EVENTS, seed=2024)
    assert len(events) == N_EVENTS
    return events


Request = tuple[str, bytes, dict[str, str], list[dict[str, Any]]]  # path, body, headers, events


def _plan(k: int, mine: list[dict[str, Any]], neighbour: list[dict[str, Any]], gz: Any) -> list[Request]:
    """Requests of producer ``k``, in deterministic shapes."""
    rng = random.Random(1000 + k)
    requests: list[Request] = []
    i = 0
    while i < len(mine):
        if rng.random() < SINGLE_SHARE:
            requests.append(("/api/v1/lineage", orjson.dumps(mine[i]), {}, [mine[i]]))
            i += 1
            continue
        size = rng.choice((2, 7, 16, 40, 64))
        chunk = mine[i : i + size]
        i += len(chunk)
        shape = rng.random()
        if shape < 0.2:
            body = b"\n".join(orjson.dumps(e) for e in chunk) + b"\n"
            requests.append(("/api/v1/lineage/batch", body, {"Content-Type": "application/x-ndjson"}, chunk))
        elif shape < 0.35:
            requests.append(("/api/v1/lineage/batch", gz(orjson.dumps(chunk)), {"Content-Encoding": "gzip"},
                             chunk))
        else:
            requests.append(("/api/v1/lineage/batch", orjson.dumps(chunk), {}, chunk))
    for event in rng.sample(neighbour, RESENDS):  # race the neighbour's own send of the same event
        requests.insert(rng.randrange(len(requests) + 1),
                        ("/api/v1/lineage", orjson.dumps(event), {}, [event]))
    return requests


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_eight_parallel_producers_store_every_event_once_and_the_sequential_graph(
    backend: str, corpus: list[dict[str, Any]], it: Any, server_factory: Any
) -> None:
    hashes = [it.event_hash(e) for e in corpus]
    assert len(set(hashes)) == N_EVENTS, "the generator must yield distinct events"
    slices = [corpus[k::PRODUCERS] for k in range(PRODUCERS)]
    plans = [_plan(k, slices[k], slices[(k + 1) % PRODUCERS], it.gzip) for k in range(PRODUCERS)]

    url = it.store_url(backend, "served")
    server = server_factory(url)
    statuses: list[list[tuple[str, str]]] = [[] for _ in range(PRODUCERS)]
    failures: list[str] = []
    barrier = threading.Barrier(PRODUCERS)

    def produce(k: int) -> None:
        conn = server.connection()
        try:
            barrier.wait(timeout=60)
            for path, body, headers, events in plans[k]:
                reply = it.http_post(conn, path, body, headers)
                if path.endswith("/batch"):
                    if reply.status != 200:
                        failures.append(f"producer {k}: batch -> {reply.status} {reply.body[:300]!r}")
                        return
                    results = reply.json["results"]
                    assert len(results) == len(events)
                    statuses[k].extend(
                        (it.event_hash(e), r["status"]) for e, r in zip(events, results, strict=True)
                    )
                else:
                    if reply.status != 201:
                        failures.append(f"producer {k}: single -> {reply.status} {reply.body[:300]!r}")
                        return
                    statuses[k].append((it.event_hash(events[0]), reply.json["status"]))
        except Exception as exc:  # reported by the main thread
            failures.append(f"producer {k}: {exc!r}")
        finally:
            conn.close()

    threads = [threading.Thread(target=produce, args=(k,), name=f"producer-{k}") for k in range(PRODUCERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not any(t.is_alive() for t in threads), "a producer hung"
    assert not failures, failures[:5]
    assert server.alive, "the server died under load"

    replies = [pair for per in statuses for pair in per]
    assert len(replies) == N_EVENTS + PRODUCERS * RESENDS
    created = Counter(h for h, status in replies if status == "created")
    assert set(status for _, status in replies) <= {"created", "duplicate"}
    assert set(created) == set(hashes), "some event was never reported created"
    assert max(created.values()) == 1, "an event was reported created twice"

    server.wait_projected()
    engine = it.engine(url)
    assert it.count_events(engine) == N_EVENTS
    assert it.stored_hashes(engine) == set(hashes)
    served_hash = graph_hash(engine)
    server.stop()

    reference = it.fill(it.store_url(backend, "reference"), corpus)
    assert served_hash == graph_hash(reference.engine)
