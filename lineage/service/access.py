"""API keys on the request path: token -> principal, with a short in-memory cache.

Every request that carries a key would otherwise cost a store query; the cache answers repeats from
memory for ``settings.key_cache_s`` seconds. It is keyed by the SHA-256 of the whole token, so the
process never holds a caller's token after the request (a heap dump or a debugger shows digests only).

Revocation: ``chaintrace keys revoke`` writes to the store, which this cache does not watch, so a
revoked key keeps working in a running service for at most ``key_cache_s`` seconds (default 30) after
its last check; set ``CHAINTRACE_KEY_CACHE_S=0`` to ask the store on every request. Answers "no such
key" are cached too (so a flood of made-up tokens costs one query each per TTL), in a bounded table:
when it is full the oldest entries go first.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from sqlalchemy import Engine

from lineage.governance.principal import Principal
from lineage.settings import LineageSettings
from lineage.store import keys

#: Most tokens remembered at once (valid and invalid together); a few MB at most.
MAX_CACHED: Final = 10_000


def token_digest(token: str) -> str:
    """The cache key of a token: its SHA-256, never the token itself."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class AccessService:
    """Resolves a caller's token to a :class:`Principal` (None: unknown, malformed, wrong or revoked).

    Thread-safe: the auth layer calls it from the event loop (cache hits) and from worker threads
    (store lookups) at once.
    """

    def __init__(self, engine: Engine, settings: LineageSettings, *,
                 clock: Callable[[], float] = time.monotonic, max_cached: int = MAX_CACHED) -> None:
        self.engine = engine
        self.settings = settings
        self._clock = clock
        self._max_cached = max_cached
        self._lock = threading.Lock()
        # digest -> (expires at, principal or None for "no valid key"); oldest first.
        self._cache: OrderedDict[str, tuple[float, Principal | None]] = OrderedDict()

    @property
    def ttl_s(self) -> float:
        return self.settings.key_cache_s

    def cached(self, token: str) -> tuple[bool, Principal | None]:
        """(True, answer) when the cache holds a live answer for ``token``; (False, None) otherwise.

        Never touches the store: the auth layer calls it on the event loop and goes to a thread only
        on a miss.
        """
        if keys.split_token(token) is None:
            return True, None  # malformed: refused without a store query, so nothing to cache
        if self.ttl_s <= 0:
            return False, None
        digest = token_digest(token)
        with self._lock:
            entry = self._cache.get(digest)
            if entry is None:
                return False, None
            expires, principal = entry
            if expires <= self._clock():
                del self._cache[digest]
                return False, None
            return True, principal

    def authenticate(self, token: str) -> Principal | None:
        """The principal behind ``token``, from the cache when it is fresh, else from the store."""
        hit, principal = self.cached(token)
        if hit:
            return principal
        key = keys.authenticate(self.engine, token)
        principal = Principal.of_key(key) if key is not None else None
        if self.ttl_s > 0:
            self._remember(token_digest(token), principal)
        return principal

    def forget(self) -> None:
        """Drop every cached answer (the next request of each caller asks the store)."""
        with self._lock:
            self._cache.clear()

    def cache_size(self) -> int:
        with self._lock:
            return len(self._cache)

    def cache_keys(self) -> list[str]:
        """What the cache is keyed by (digests), for tests that check no token is kept."""
        with self._lock:
            return list(self._cache)

    def _remember(self, digest: str, principal: Principal | None) -> None:
        with self._lock:
            self._cache.pop(digest, None)
            self._cache[digest] = (self._clock() + self.ttl_s, principal)
            while len(self._cache) > self._max_cached:
                self._cache.popitem(last=False)
