"""GET /api/v1/stream against the real app under uvicorn, read with httpx: posted events and their alerts
arrive, filtered by namespace and type; resume by Last-Event-ID; heartbeats; slow clients dropped."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from lineage.context import LineageContext
from lineage.monitoring.stream import StreamHub

RULES: dict[str, Any] = {"rules": [{"name": "runs", "kind": "run_failed", "severity": "error"}]}
SSE_HEADERS = {"Accept": "text/event-stream"}


class SSE:
    """Frames of a server-sent event stream: dicts with id, event, data (parsed) and comments."""

    def __init__(self, response: httpx.Response) -> None:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        self._lines: Iterator[str] = response.iter_lines()

    def next(self) -> dict[str, Any]:
        frame: dict[str, Any] = {"comments": []}
        for line in self._lines:
            if line == "":
                if len(frame) > 1 or frame["comments"]:
                    return frame
                continue
            if line.startswith(":"):
                frame["comments"].append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            frame[name] = orjson.loads(value) if name == "data" else value
        raise AssertionError("the stream ended")

    def until(self, done: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """Items (frames with an event) up to and including the first that ``done`` accepts."""
        seen = []
        while True:
            frame = self.next()
            if "event" in frame:
                seen.append(frame)
                if done(frame):
                    return seen


def client(base: str, headers: dict[str, str]) -> httpx.Client:
    return httpx.Client(base_url=base, headers={**headers, **SSE_HEADERS}, timeout=httpx.Timeout(30.0))


def post(base: str, headers: dict[str, str], *events: dict[str, Any]) -> None:
    reply = httpx.post(f"{base}/api/v1/lineage/batch", json=list(events), headers=headers, timeout=30)
    assert reply.status_code == 200, reply.text


def test_posted_events_and_their_alerts_arrive_filtered_by_namespace(
    monitor: Callable[..., Any], kit: Any, serve: Callable[[LineageContext], str], context: LineageContext
) -> None:
    monitor(RULES)
    base = serve(context)
    producer = kit.headers(context, "producer", "L1")
    with client(base, kit.headers(context, "reader", "L4")) as http, \
            http.stream("GET", "/api/v1/stream", params={"namespace": "etl"}) as response:
        sse = SSE(response)
        hello = sse.next()
        assert hello["retry"] == "3000" and hello["comments"][0].startswith("connected")
        failed = kit.run_id()
        post(base, producer,
             # Neither this event nor its alert passes the filter.
             kit.run("FAIL", "elsewhere", 0, namespace="other"),
             # This one does: its output is in etl (and the next one's job is).
             kit.run("START", "load", 1, namespace="ops", outputs=[kit.dataset("etl", "orders")]),
             kit.run("FAIL", "load", 2, run_id=failed, inputs=[kit.dataset("db", "people")]))
        items = sse.until(lambda f: f["event"] == "alert")
    events = [f for f in items if f["event"] == "event"]
    assert [(f["data"]["job"]["name"], f["data"]["eventType"]) for f in events] == [
        ("load", "START"), ("load", "FAIL")]
    start, fail = (f["data"] for f in events)
    assert start["outputs"] == [{"namespace": "etl", "name": "orders"}] and start["eventTime"] == kit.at(1)
    assert fail["runId"] == failed and fail["inputs"] == [{"namespace": "db", "name": "people"}]
    assert all(f["id"] == f"e{f['data']['id']}" for f in events)
    alert = items[-1]
    assert alert["data"]["kind"] == "run_failed" and alert["data"]["runId"] == failed
    assert alert["id"] == f"a{alert['data']['id']}"
    assert alert["data"]["job"] == {"namespace": "etl", "name": "load"}


def test_types_resume_and_reset(
    monitor: Callable[..., Any], kit: Any, serve: Callable[[LineageContext], str], context: LineageContext
) -> None:
    m = monitor(RULES)
    base = serve(context)
    producer, reader = kit.headers(context, "producer", "L1"), kit.headers(context, "reader", "L4")
    with client(base, reader) as http:
        with http.stream("GET", "/api/v1/stream", params={"types": "alerts"}) as response:
            sse = SSE(response)
            post(base, producer, kit.run("COMPLETE", "quiet", 0), kit.run("FAIL", "loud", 1))
            (only,) = sse.until(lambda f: True)  # the first item is the alert: events were left out
            assert only["event"] == "alert" and only["data"]["job"]["name"] == "loud"
        with http.stream("GET", "/api/v1/stream") as response:
            sse = SSE(response)
            post(base, producer, kit.run("COMPLETE", "first", 2))
            (first,) = sse.until(lambda f: f["event"] == "event")
        # Disconnected: these happen while no one reads.
        post(base, producer, kit.run("COMPLETE", "second", 3), kit.run("COMPLETE", "third", 4))
        assert context.ingest.writer.wait_projected()
        m.service.catch_up()  # streamed (into the buffer) by the time it returns
        with http.stream("GET", "/api/v1/stream", headers={"Last-Event-ID": first["id"]}) as response:
            sse = SSE(response)
            resumed = sse.until(lambda f: f["data"]["job"]["name"] == "third")
        assert [f["data"]["job"]["name"] for f in resumed] == ["second", "third"]
        with http.stream("GET", "/api/v1/stream", params={"lastEventId": "e999999999"}) as response:
            sse = SSE(response)
            sse.next()
            reset = sse.next()
        assert reset["event"] == "reset" and reset["data"]["lastEventId"] == "e999999999"


def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.new_event_loop()


def test_heartbeats_and_an_end(
    monitor: Callable[..., Any], kit: Any, serve: Callable[[LineageContext], str], context: LineageContext
) -> None:
    monitor(RULES, heartbeat_s=0.1)
    base = serve(context)
    with client(base, kit.headers(context, "reader", "L1")) as http, \
            http.stream("GET", "/api/v1/stream", params={"maxSeconds": 1}) as response:
        sse = SSE(response)
        sse.next()
        beat = sse.next()
        assert beat["comments"][0].startswith("heartbeat") and "event" not in beat
        with pytest.raises(AssertionError, match="the stream ended"):  # maxSeconds ends it
            while True:
                sse.next()


def test_a_stream_ends_with_its_position_and_the_client_resumes_from_it(
    monitor: Callable[..., Any], kit: Any, serve: Callable[[LineageContext], str], context: LineageContext
) -> None:
    m = monitor(RULES, stream_max_s=3)
    base = serve(context)
    producer = kit.headers(context, "producer", "L1")
    with client(base, kit.headers(context, "reader", "L4")) as http:
        frames = []
        with http.stream("GET", "/api/v1/stream", params={"types": "alerts"}) as response:
            sse = SSE(response)
            sse.next()
            post(base, producer, kit.run("COMPLETE", "quiet", 0))  # an event this client's filter skips
            assert context.ingest.writer.wait_projected()
            m.service.catch_up()  # published (the stream has 3 s to pass over it)
            with pytest.raises(AssertionError, match="the stream ended"):  # after stream_max_s
                while True:
                    frames.append(sse.next())
        assert all("event" not in f for f in frames)
        last = frames[-1]["id"]  # the position, though the client was shown nothing
        assert last.startswith("e")
        with http.stream("GET", "/api/v1/stream", params={"types": "alerts"},
                         headers={"Last-Event-ID": last}) as response:
            sse = SSE(response)
            post(base, producer, kit.run("FAIL", "loud", 1))
            (first,) = sse.until(lambda f: True)
        assert first["event"] == "alert"  # resumed: no reset


def test_refusals(monitor: Callable[..., Any], kit: Any, serve: Callable[[LineageContext], str],
                  context: LineageContext) -> None:
    monitor(RULES)
    base = serve(context)
    reader = kit.headers(context, "reader", "L4")
    plain = httpx.get(f"{base}/api/v1/stream", headers=reader, timeout=30)
    assert plain.status_code == 406 and "Accept: text/event-stream" in plain.json()["message"]
    bad = httpx.get(f"{base}/api/v1/stream", params={"types": "events,logs"},
                    headers={**reader, **SSE_HEADERS}, timeout=30)
    assert bad.status_code == 400 and "types must be" in bad.json()["message"]
    producer = httpx.get(f"{base}/api/v1/stream", headers={**kit.headers(context, "producer"), **SSE_HEADERS},
                         timeout=30)
    assert producer.status_code == 403
    assert httpx.get(f"{base}/api/v1/stream", headers=SSE_HEADERS, timeout=30).status_code == 401


def test_a_slow_client_is_dropped_and_never_holds_up_ingest(
    monitor: Callable[..., Any], kit: Any, serve: Callable[[LineageContext], str], context: LineageContext
) -> None:
    m = monitor(RULES, buffer_size=4)
    base = serve(context)
    with client(base, kit.headers(context, "reader", "L4")) as http, \
            http.stream("GET", "/api/v1/stream") as response:
        sse = SSE(response)
        sse.next()
        # The client reads nothing while 40 failures are stored and alerted.
        assert m.ingest(*[kit.run("FAIL", f"job{i}", i) for i in range(40)]) == 40
        # More items at once than the buffer holds: whoever had not read them all is dropped.
        m.service.hub.publish([(f"x{i}", "event", frozenset(), {"n": i}) for i in range(10)])
        frames = sse.until(lambda f: f["event"] == "dropped")
        assert "reconnect" in frames[-1]["data"]["message"]
        with pytest.raises(AssertionError, match="the stream ended"):
            sse.next()
    assert m.service.hub.dropped >= 1


def test_the_hub_keeps_a_bounded_buffer() -> None:
    clock = [0.0]
    hub = StreamHub(3, keep_s=10, clock=lambda: clock[0])
    loop = _loop()
    try:
        early, _ = hub.subscribe(loop)
        hub.publish([(f"e{i}", "event", frozenset({"ns"}), {"i": i}) for i in range(2)])
        assert [item.id for item in hub.take(early) or []] == ["e0", "e1"]
        hub.publish([(f"e{i}", "event", frozenset(), {"i": i}) for i in range(2, 7)])
        assert hub.take(early) is None  # e2, e3 were overwritten unread
        late, lost = hub.subscribe(loop, "e4")
        assert not lost and [item.id for item in hub.take(late) or []] == ["e5", "e6"]
        _, lost = hub.subscribe(loop, "e1")
        assert lost
        for subscription in list(hub._subscribers):
            hub.unsubscribe(subscription)
        assert hub.wanted()  # someone was here lately
        clock[0] = 11
        assert not hub.wanted()  # nobody for keep_s: the buffer is emptied, so no resume skips a gap
        _, lost = hub.subscribe(loop, "e6")
        assert lost
    finally:
        loop.close()
