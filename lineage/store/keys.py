"""API keys: created, looked up by the token a caller presents, listed, revoked.

A token reads ``ct_<key_id>_<secret>``; the store keeps the key id and a SHA-256 of the secret only,
so the token cannot be recovered from the database. Lookups compare digests in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Engine, insert, select, update

from lineage.governance.levels import Level, parse_level
from lineage.store import schema as s
from lineage.store.times import now

Role = Literal["producer", "reader", "consumer", "admin"]
ROLES: tuple[Role, ...] = ("producer", "reader", "consumer", "admin")
TOKEN_PREFIX = "ct_"


class ApiKeyError(ValueError):
    """A bad role, clearance or key id given to a key operation; the message names it."""


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    role: Role
    clearance: Level
    jurisdiction: str | None
    created_at: str
    revoked_at: str | None = None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def parse_role(value: str) -> Role:
    folded = value.strip().lower()
    for role in ROLES:
        if folded == role:
            return role
    raise ApiKeyError(f"role {value!r} is not one of {', '.join(ROLES)}")


def split_token(token: str) -> tuple[str, str] | None:
    """``ct_<id>_<secret>`` -> (id, secret); None for anything else (never echo the token back)."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    key_id, sep, secret = token[len(TOKEN_PREFIX):].partition("_")
    if not sep or not key_id or not secret or len(key_id) > 32:
        return None
    return key_id, secret


def create_key(
    engine: Engine, *, name: str, role: str, clearance: str = "L1", jurisdiction: str | None = None
) -> tuple[ApiKey, str]:
    """Store a new key; returns it and its token (shown once, never stored)."""
    checked_role = parse_role(role)
    level = parse_level(clearance, where="clearance")
    if not name.strip():
        raise ApiKeyError("a key needs a non-blank name")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key = ApiKey(key_id, name.strip(), checked_role, level, jurisdiction, now())
    with engine.begin() as connection:
        connection.execute(insert(s.api_keys).values(
            key_id=key.key_id, name=key.name, role=key.role, clearance=key.clearance,
            jurisdiction=key.jurisdiction, secret_sha256=_digest(secret), created_at=key.created_at,
        ))
    return key, f"{TOKEN_PREFIX}{key_id}_{secret}"


def _from_row(row: object) -> ApiKey:
    return ApiKey(
        key_id=row.key_id,  # type: ignore[attr-defined]
        name=row.name,  # type: ignore[attr-defined]
        role=parse_role(row.role),  # type: ignore[attr-defined]
        clearance=parse_level(row.clearance),  # type: ignore[attr-defined]
        jurisdiction=row.jurisdiction,  # type: ignore[attr-defined]
        created_at=row.created_at,  # type: ignore[attr-defined]
        revoked_at=row.revoked_at,  # type: ignore[attr-defined]
    )


def authenticate(engine: Engine, token: str) -> ApiKey | None:
    """The live key a token belongs to; None for an unknown, malformed, wrong or revoked token."""
    parts = split_token(token)
    if parts is None:
        return None
    key_id, secret = parts
    with engine.connect() as connection:
        row = connection.execute(select(s.api_keys).where(s.api_keys.c.key_id == key_id)).first()
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.secret_sha256, _digest(secret)):
        return None
    return _from_row(row)


def list_keys(engine: Engine) -> list[ApiKey]:
    with engine.connect() as connection:
        rows = connection.execute(select(s.api_keys).order_by(s.api_keys.c.created_at)).all()
    return [_from_row(row) for row in rows]


def revoke_key(engine: Engine, key_id: str) -> ApiKey:
    with engine.begin() as connection:
        done = connection.execute(
            update(s.api_keys).where(s.api_keys.c.key_id == key_id, s.api_keys.c.revoked_at.is_(None))
            .values(revoked_at=now())
        )
        if done.rowcount == 0:
            raise ApiKeyError(f"no live key with id {key_id!r}")
        row = connection.execute(select(s.api_keys).where(s.api_keys.c.key_id == key_id)).one()
    return _from_row(row)
