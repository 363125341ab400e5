"""An OpenLineage transport that never stalls a task and never loses an event: a disk spool, or HTTP.

Two deliveries (config key ``delivery``):

* ``spool`` (spool-first, for a service on the same machine): ``emit`` writes the event to the spool
  folder (atomic write-then-rename) and returns, no network at all; the lineage service watches that
  folder (``CHAINTRACE_SPOOL_DIR``) and ingests each file. Airflow's OpenLineage provider emits from a
  forked child that ends with ``os._exit``, so a background sender thread would die with its events:
  a file on disk is the cheapest thing that outlives the task. ``fsync`` (default true) makes each
  file survive a machine crash too, at about 10 ms p99 per event on the project VM; without it a
  write costs about 0.2 ms and survives a crash of the task's process (the rename), not of the machine.
* ``http`` (the default), as follows.

The provider's own HTTP transport retries an event for about 9 s when the lineage service is down and
then drops it. This one posts once with a short timeout; when the service cannot take the event
(connection refused, timeout, 5xx, 429, or a 4xx that is about the request rather than the event) it
writes the event to the spool at once and opens a circuit, so the events of the next ``circuit_open_s``
seconds go straight to disk without touching the network. After the cooldown one event probes the
service. The circuit is shared by every process using the same spool (a marker file in it), because
Airflow runs each task in a process of its own: one task finding the service down spares the others
the timeout. Events the service refuses as invalid (400, 413, 415, 422) are logged with the service's
message and kept in ``rejected/``. ``emit`` never raises.

The service takes events from producer keys only: give the key as ``auth`` (``{"type": "api_key",
"apiKey": ...}``, the HTTP transport's spelling) or ``api_key``; it goes as ``Authorization: Bearer``
and is never logged. A missing or wrong key (401, 403) spools the event and opens the circuit like an
outage, so nothing is lost while the key is fixed. Spool-first delivery sends nothing and needs no key.

Replay is not done here (tasks stay fast): ``chaintrace lineage replay-spool`` delivers the spool, and
so does the service itself (on start, then every ``spool_poll_ms``) when its ``CHAINTRACE_SPOOL_DIR``
names the same folder.

Configure it by dotted path, e.g. Airflow ``[openlineage] transport``::

    {"type": "chaintrace_chain.transport.SpoolingHttpTransport", "url": "http://127.0.0.1:5000",
     "spool_dir": "/data/lineage-spool", "auth": {"type": "api_key", "apiKey": "ct_..."}}
    {"type": "chaintrace_chain.transport.SpoolingHttpTransport", "delivery": "spool",
     "spool_dir": "/data/lineage-spool", "fsync": false}
"""

from __future__ import annotations

import gzip
import logging
import os
import threading
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import attr
import httpx
from openlineage.client.serde import Serde
from openlineage.client.transport.transport import Config, Transport

from chaintrace_chain.spool import SPOOL_DIR_ENV, Spool, spool_dir_from_env
from lineage.spool_format import write_atomic

if TYPE_CHECKING:
    from openlineage.client.client import Event

log = logging.getLogger(__name__)

CIRCUIT_MARKER = ".circuit-open"  # holds the epoch second until which the circuit stays open
# The event itself is wrong: retrying cannot help, so it goes to rejected/.
REJECT_STATUSES = frozenset({400, 413, 415, 422})
_KEYS = ("type", "url", "endpoint", "api_key", "auth", "timeout", "connect_timeout", "spool_dir",
         "circuit_open_s", "compression", "delivery", "fsync")
DELIVERIES = ("http", "spool")
# The HTTP transport spells it apiKey; OpenLineage's env-var loader lowercases that to apikey.
_ALIASES = {"apikey": "api_key", "apiKey": "api_key"}


class EmitOutcome(StrEnum):
    SENT = "sent"  # acknowledged by the service
    SPOOLED = "spooled"  # on disk, for replay
    REJECTED = "rejected"  # refused as invalid; kept in rejected/
    FAILED = "failed"  # could not even be spooled (logged with the event)


def _seconds(params: dict[str, Any], key: str, default: float, *, zero_ok: bool = False) -> float:
    value = params.get(key, default)
    try:
        number = float(value)  # values from environment variables arrive as strings
    except (TypeError, ValueError):
        raise ValueError(f"SpoolingHttpTransport config: {key} must be a number, got {value!r}") from None
    if number < 0 or (number == 0 and not zero_ok):
        bound = ">= 0" if zero_ok else "> 0"
        raise ValueError(f"SpoolingHttpTransport config: {key} must be {bound} seconds, got {value!r}")
    return number


def _flag(params: dict[str, Any], key: str, default: bool) -> bool:
    value = params.get(key, default)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()  # values from environment variables arrive as strings
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"SpoolingHttpTransport config: {key} must be true or false, got {value!r}")


@attr.define
class SpoolingHttpConfig(Config):
    url: str
    spool_dir: Path
    endpoint: str = "api/v1/lineage"
    api_key: str | None = attr.field(default=None, repr=False)  # a secret: kept out of logs
    timeout: float = 1.0  # seconds each read/write of an attempt may wait
    connect_timeout: float = 0.5
    circuit_open_s: float = 30.0
    compression: str | None = None  # "gzip" or None
    delivery: str = "http"  # "http": POST, spool on failure; "spool": write to the spool only
    fsync: bool = True  # spool files survive a machine crash (slower); False: a process crash only

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> SpoolingHttpConfig:
        params = {_ALIASES.get(key, key): value for key, value in params.items()}
        unknown = sorted(set(params) - set(_KEYS))
        if unknown:
            raise ValueError(f"SpoolingHttpTransport config: unknown key(s) {unknown}; "
                             f"known: {sorted(set(_KEYS) - {'type'})}")
        delivery = str(params.get("delivery") or "http").strip().lower()
        if delivery not in DELIVERIES:
            raise ValueError(f"SpoolingHttpTransport config: delivery must be one of {list(DELIVERIES)}, "
                             f"got {params.get('delivery')!r}")
        url = str(params.get("url") or "").strip()
        parts = urlsplit(url)
        # Spool-first never touches the network: the url is optional there, but checked when given.
        if (url or delivery == "http") and (parts.scheme not in ("http", "https") or not parts.netloc):
            raise ValueError(f"SpoolingHttpTransport config: url must be an http(s) URL, got {url!r}")
        spool_value = params.get("spool_dir")
        spool_dir = Path(str(spool_value)) if spool_value else spool_dir_from_env()
        if spool_dir is None:
            raise ValueError(f"SpoolingHttpTransport config: spool_dir is required (or set {SPOOL_DIR_ENV})")
        api_key = params.get("api_key")
        auth = params.get("auth")
        if api_key is None and isinstance(auth, dict):  # the HTTP transport's {"type": "api_key", ...}
            api_key = auth.get("apiKey") or auth.get("apikey") or auth.get("api_key")
        compression = params.get("compression") or None
        if compression not in (None, "gzip"):
            raise ValueError(f"SpoolingHttpTransport config: compression must be 'gzip' or absent, "
                             f"got {compression!r}")
        return cls(
            url=url,
            spool_dir=spool_dir.expanduser().absolute(),
            endpoint=str(params.get("endpoint") or "api/v1/lineage"),
            api_key=str(api_key) if api_key else None,
            timeout=_seconds(params, "timeout", 1.0),
            connect_timeout=_seconds(params, "connect_timeout", 0.5),
            circuit_open_s=_seconds(params, "circuit_open_s", 30.0, zero_ok=True),
            compression=compression,
            delivery=delivery,
            fsync=_flag(params, "fsync", True),
        )


class SpoolingHttpTransport(Transport):
    """``delivery: http``: POST each event once; on failure spool it and open the circuit.
    ``delivery: spool``: write each event to the spool, nothing else. Counters: emitted (acknowledged
    by the service), spooled, rejected, failed (attributes)."""

    kind = "chaintrace_spooling_http"
    config_class = SpoolingHttpConfig

    def __init__(self, config: SpoolingHttpConfig) -> None:
        self.config = config
        self.spool = Spool(config.spool_dir, fsync=config.fsync)
        self.target = urljoin(config.url.rstrip("/") + "/", config.endpoint.lstrip("/"))
        self.emitted = 0
        self.spooled = 0
        self.rejected = 0
        self.failed = 0
        self._lock = threading.Lock()
        self._open_until = 0.0  # epoch seconds; 0: closed
        self._probing = False
        self._client: httpx.Client | None = None
        self._client_pid = 0
        self._marker = config.spool_dir / CIRCUIT_MARKER
        self._headers = {"Content-Type": "application/json"}
        if config.api_key:
            self._headers["Authorization"] = f"Bearer {config.api_key}"
        if config.compression == "gzip":
            self._headers["Content-Encoding"] = "gzip"
        # A spool that cannot be created is a configuration error: say so now, not at the first outage.
        config.spool_dir.mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------------------------- interface
    def emit(self, event: Event) -> EmitOutcome:
        """Deliver ``event`` or keep it on disk; never raises (lineage must not fail a task)."""
        try:
            body = Serde.to_json(event).encode("utf-8")
        except Exception:
            log.exception("OpenLineage event %r cannot be serialised; dropped", type(event).__name__)
            return self._count(EmitOutcome.FAILED)
        if self.config.delivery == "spool":
            return self._spool(body, None)  # _spool never raises
        try:
            return self._emit(body)
        except Exception as exc:
            log.exception("unexpected error sending an OpenLineage event; spooling it")
            return self._spool(body, f"unexpected error: {exc!r}")

    def close(self, timeout: float = -1) -> bool:
        """Every event is either acknowledged or on disk already: nothing to wait for."""
        if self._client is not None and self._client_pid == os.getpid():
            self._client.close()
        self._client = None
        log.info("lineage transport closing: %s", self.stats())
        return True

    def stats(self) -> dict[str, int]:
        return {"emitted": self.emitted, "spooled": self.spooled, "rejected": self.rejected,
                "failed": self.failed}

    @property
    def circuit_open(self) -> bool:
        return time.time() < max(self._open_until, self._marker_until())

    # ---------------------------------------------------------------------------------- internals
    def _emit(self, body: bytes) -> EmitOutcome:
        probe = self._network_allowed()
        if probe is None:
            return self._spool(body, None)
        try:
            try:
                status, text = self._post(body)
            except httpx.HTTPError as exc:  # refused, reset, timed out, DNS...
                self._trip(f"{type(exc).__name__}: {exc}")
                return self._spool(body, None)
            if 200 <= status < 300:
                if probe:
                    self._close_circuit()
                return self._count(EmitOutcome.SENT)
            if status in REJECT_STATUSES:
                if probe:
                    self._close_circuit()
                return self._reject(body, status, text)
            # 5xx, 429, 401/403/404...: the service (or our access to it) is not fit now; the event is.
            log.error("lineage service %s answered %d: %s", self.target, status, text[:500])
            self._trip(f"HTTP {status}")
            return self._spool(body, None)
        finally:
            if probe:
                with self._lock:
                    self._probing = False

    def _network_allowed(self) -> bool | None:
        """None: circuit open, spool directly. False: closed, send. True: send as the one probe."""
        now = time.time()
        with self._lock:
            if self._probing:
                return None
            until = max(self._open_until, self._marker_until())
            if not until:
                return False
            if now < until:
                self._open_until = until
                return None
            # Cooldown over: this event probes; meanwhile everyone else (other processes too) spools.
            self._probing = True
            self._open_until = now + self.config.circuit_open_s
            self._write_marker(self._open_until)
            return True

    def _post(self, body: bytes) -> tuple[int, str]:
        content = gzip.compress(body, compresslevel=3) if self.config.compression == "gzip" else body
        response = self._http().post(self.target, content=content, headers=self._headers)
        return response.status_code, response.text

    def _http(self) -> httpx.Client:
        # A client made before a fork shares its sockets with the parent: each process makes its own.
        if self._client is None or self._client_pid != os.getpid():
            timeout = httpx.Timeout(self.config.timeout, connect=self.config.connect_timeout)
            self._client = httpx.Client(timeout=timeout)
            self._client_pid = os.getpid()
        return self._client

    def _trip(self, reason: str) -> None:
        with self._lock:
            was_open = self._open_until > 0
            self._open_until = time.time() + self.config.circuit_open_s
            self._write_marker(self._open_until)
        if not was_open:
            log.warning("lineage service %s unreachable (%s): spooling events to %s for %.0f s; %s",
                        self.target, reason, self.config.spool_dir, self.config.circuit_open_s, self.stats())

    def _close_circuit(self) -> None:
        with self._lock:
            self._open_until = 0.0
            try:
                self._marker.unlink()
            except FileNotFoundError:
                pass
            except OSError:
                log.warning("cannot remove the circuit marker %s", self._marker, exc_info=True)
        log.info("lineage service %s reachable again; %d event(s) wait in %s for "
                 "`chaintrace lineage replay-spool`", self.target, len(self.spool.events()),
                 self.config.spool_dir)

    def _marker_until(self) -> float:
        try:
            return float(self._marker.read_text() or 0)
        except (OSError, ValueError):
            return 0.0

    def _write_marker(self, until: float) -> None:
        try:
            write_atomic(self.config.spool_dir, CIRCUIT_MARKER, repr(until).encode())
        except OSError:  # the in-process circuit still works
            log.warning("cannot write the circuit marker %s", self._marker, exc_info=True)

    def _spool(self, body: bytes, reason: str | None) -> EmitOutcome:
        try:
            path = self.spool.write(body)
        except Exception:
            # The last place the event can survive is the log.
            log.exception("cannot spool an OpenLineage event to %s (%s); event: %s",
                          self.config.spool_dir, reason, body.decode("utf-8", "replace"))
            return self._count(EmitOutcome.FAILED)
        log.debug("spooled OpenLineage event to %s", path)
        return self._count(EmitOutcome.SPOOLED)

    def _reject(self, body: bytes, status: int, text: str) -> EmitOutcome:
        log.error("lineage service %s refused an OpenLineage event as invalid (HTTP %d): %s",
                  self.target, status, text[:2000])
        try:
            path = self.spool.write_rejected(body, {"status": status, "message": text})
        except Exception:
            log.exception("cannot keep the rejected event in %s; event: %s", self.config.spool_dir,
                          body.decode("utf-8", "replace"))
            return self._count(EmitOutcome.FAILED)
        log.error("rejected event kept in %s", path)
        return self._count(EmitOutcome.REJECTED)

    def _count(self, outcome: EmitOutcome) -> EmitOutcome:
        with self._lock:
            if outcome is EmitOutcome.SENT:
                self.emitted += 1
            elif outcome is EmitOutcome.SPOOLED:
                self.spooled += 1
            elif outcome is EmitOutcome.REJECTED:
                self.rejected += 1
            else:
                self.failed += 1
        return outcome
