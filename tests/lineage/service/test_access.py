"""AccessService: token -> principal, cached by the token's digest for key_cache_s, revocation within it."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import event

from lineage.service.access import AccessService, token_digest
from lineage.settings import LineageSettings
from lineage.store.db import create_store_engine, migrate
from lineage.store.keys import create_key, revoke_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _service(url: str, tmp_path: Path, cache_s: float, clock: Clock, **kw: int) -> AccessService:
    engine = create_store_engine(url)
    migrate(engine)
    settings = LineageSettings(db_url=url, data_root=tmp_path, key_cache_s=cache_s)
    return AccessService(engine, settings, clock=clock, **kw)


def _count_queries(service: AccessService) -> list[str]:
    seen: list[str] = []
    event.listen(service.engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_a: seen.append(statement))
    return seen


def test_a_key_resolves_to_its_principal_and_repeats_come_from_the_cache(
    store_url: str, tmp_path: Path
) -> None:
    clock = Clock()
    access = _service(store_url, tmp_path, 30, clock)
    key, token = create_key(access.engine, name="reader-1", role="reader", clearance="L2", jurisdiction="EU")
    queries = _count_queries(access)

    principal = access.authenticate(token)
    assert principal is not None
    assert (principal.key_id, principal.name, principal.role) == (key.key_id, "reader-1", "reader")
    assert (principal.clearance, principal.jurisdiction) == ("L2", "EU")
    first = len(queries)
    assert first >= 1
    for _ in range(5):
        assert access.authenticate(token) == principal
    assert len(queries) == first, "repeats within the TTL must not ask the store"
    # The cache holds the token's digest only, never the token nor its secret.
    assert access.cache_keys() == [token_digest(token)]
    secret = token.split("_", 2)[2]
    assert all(token not in k and secret not in k for k in access.cache_keys())
    access.engine.dispose()


def test_revocation_takes_effect_once_the_cached_answer_expires(sqlite_url: str, tmp_path: Path) -> None:
    clock = Clock()
    access = _service(sqlite_url, tmp_path, 30, clock)
    key, token = create_key(access.engine, name="p", role="producer")
    assert access.authenticate(token) is not None
    revoke_key(access.engine, key.key_id)
    clock.now += 29  # within the TTL: the documented window in which a revoked key still works
    assert access.authenticate(token) is not None
    clock.now += 2
    assert access.authenticate(token) is None
    access.engine.dispose()


def test_with_no_cache_every_request_asks_the_store(sqlite_url: str, tmp_path: Path) -> None:
    clock = Clock()
    access = _service(sqlite_url, tmp_path, 0, clock)
    key, token = create_key(access.engine, name="r", role="reader")
    queries = _count_queries(access)
    assert access.authenticate(token) is not None
    assert access.authenticate(token) is not None
    assert len(queries) == 2
    assert access.cache_size() == 0
    revoke_key(access.engine, key.key_id)
    assert access.authenticate(token) is None
    access.engine.dispose()


def test_unknown_and_malformed_tokens_are_refused_and_the_cache_stays_bounded(
    sqlite_url: str, tmp_path: Path
) -> None:
    clock = Clock()
    access = _service(sqlite_url, tmp_path, 30, clock, max_cached=3)
    _key, token = create_key(access.engine, name="r", role="reader")
    queries = _count_queries(access)
    for malformed in ("", "Bearer", "ct_", "ct__x", "xx_abc_def", "ct_abc", "ct_" + "a" * 40 + "_s"):
        assert access.authenticate(malformed) is None
    assert queries == [], "a malformed token must not reach the store"
    wrong_secret = token[:-3] + "zzz"
    assert access.authenticate(wrong_secret) is None
    unknown = [f"ct_{i:012x}_secret{i}" for i in range(5)]
    for made_up in unknown:
        assert access.authenticate(made_up) is None
    assert access.cache_size() == 3  # the oldest answers went first
    assert access.authenticate(token) is not None
    access.engine.dispose()


def test_many_threads_at_once_get_the_same_answers(sqlite_url: str, tmp_path: Path) -> None:
    clock = Clock()
    access = _service(sqlite_url, tmp_path, 30, clock, max_cached=8)
    tokens = {create_key(access.engine, name=f"k{i}", role="reader")[1]: f"k{i}" for i in range(6)}
    bad = [f"ct_{i:012x}_nope" for i in range(6)]
    failures: list[str] = []

    def hammer(seed: int) -> None:
        for n in range(200):
            token = list(tokens)[(seed + n) % len(tokens)]
            principal = access.authenticate(token)
            if principal is None or principal.name != tokens[token]:
                failures.append(f"{tokens[token]} -> {principal}")
            if access.authenticate(bad[(seed + n) % len(bad)]) is not None:
                failures.append("a made-up token was accepted")

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert access.cache_size() <= 8
    access.engine.dispose()
