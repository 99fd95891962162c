"""Client keys: making, rotating, changing and revoking them. ``perfics keys`` and
``/admin/keys`` both call these, so the two cannot differ.

A secret is ``pk-`` and 43 URL-safe characters (256 bits from ``secrets``), shown once when
made or rotated; the store keeps its SHA-256 (enough for a random secret of that length: there
is nothing to guess) and a hint of its first and last characters.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import time
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

from proxy.store.base import UPDATABLE, Store
from proxy.store.records import PERIODS, KeyRecord, KeyUsage, Period

SECRET_PREFIX = "pk-"
_SECRET = re.compile(r"^pk-[A-Za-z0-9_-]{43}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class InvalidKeyInput(ValueError):
    """A key operation's input is invalid (the message says which field and why)."""


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_secret(secret: str) -> bool:
    """Whether ``secret`` has a key's shape; others are refused without asking the store."""
    return _SECRET.match(secret) is not None


def _new_secret() -> tuple[str, str, str]:
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    return secret, hash_secret(secret), f"{secret[:7]}…{secret[-4:]}"


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """What ``keys create`` / ``keys update`` may set. None leaves a field unlimited (create)
    or unchanged (update); ``clear`` names fields to set back to unlimited."""

    budget_usd: float | None = None
    period: Period | None = None
    rpm: int | None = None
    tpm: int | None = None
    models: tuple[str, ...] | None = None
    tasks: tuple[str, ...] | None = None
    max_rounds: int | None = None
    max_samples: int | None = None
    expires_at: float | None = None
    clear: frozenset[str] = frozenset()

    def checked(self) -> KeyLimits:
        if self.budget_usd is not None and not (
            math.isfinite(self.budget_usd) and self.budget_usd >= 0
        ):
            raise InvalidKeyInput("budget_usd must be a non-negative number")
        if self.period is not None and self.period not in PERIODS:
            raise InvalidKeyInput(f"period must be one of {', '.join(PERIODS)}")
        for name in ("rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InvalidKeyInput(f"{name} must be at least 1")
        if self.max_rounds is not None and self.max_rounds < 0:
            raise InvalidKeyInput("max_rounds must be 0 or more")
        if self.max_samples is not None and self.max_samples < 0:
            raise InvalidKeyInput("max_samples must be 0 or more")
        for name in ("models", "tasks"):
            values = getattr(self, name)
            if values is not None and (not values or not all(_NAME.match(v) for v in values)):
                raise InvalidKeyInput(f"{name} must list names of letters, digits, '.', '_' or '-'")
        unknown = self.clear - {
            "budget_usd",
            "rpm",
            "tpm",
            "models",
            "tasks",
            "max_rounds",
            "max_samples",
            "expires_at",
        }
        if unknown:
            raise InvalidKeyInput(f"cannot clear {', '.join(sorted(unknown))}")
        return self


def parse_expiry(text: str) -> float:
    """``2027-01-31`` (end of that day, UTC) or an ISO date-time, as epoch seconds."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=UTC).timestamp()
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidKeyInput(f"expires: {text[:40]!r} is not a date (YYYY-MM-DD)") from exc
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidKeyInput(
            "name must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


async def create_key(store: Store, name: str, limits: KeyLimits) -> tuple[KeyRecord, str]:
    """A new key and its secret (shown once)."""
    limits.checked()
    secret, digest, hint = _new_secret()
    key = KeyRecord(
        id="key_" + secrets.token_hex(8),
        name=check_name(name),
        hint=hint,
        created_at=time.time(),
        expires_at=limits.expires_at,
        budget_usd=limits.budget_usd,
        period=limits.period or "month",
        rpm=limits.rpm,
        tpm=limits.tpm,
        models=limits.models,
        tasks=limits.tasks,
        max_rounds=limits.max_rounds,
        max_samples=limits.max_samples,
    )
    await store.insert_key(key, digest)
    return key, secret


async def update_key(store: Store, ref: str, name: str | None, limits: KeyLimits) -> KeyRecord:
    limits.checked()
    key = await store.key(ref)
    changes: dict[str, Any] = {field: None for field in limits.clear}
    if name is not None:
        changes["name"] = check_name(name)
    for field in sorted(UPDATABLE - {"name"}):
        value = getattr(limits, field)
        if value is not None:
            changes[field] = value
    await store.update_key(key.id, changes)
    return replace(key, **changes)


async def rotate_key(store: Store, ref: str) -> tuple[KeyRecord, str]:
    """A new secret for the key; the old one stops working (within the cache's second)."""
    key = await store.key(ref)
    secret, digest, hint = _new_secret()
    await store.set_secret(key.id, digest, hint)
    return replace(key, hint=hint), secret


async def revoke_key(store: Store, ref: str) -> KeyRecord:
    key = await store.key(ref)
    now = time.time()
    await store.revoke(key.id, now)
    return replace(key, revoked_at=key.revoked_at or now)


def key_view(usage: KeyUsage, now: float) -> dict[str, Any]:
    """A key as ``keys list`` and ``GET /admin/keys`` show it: never its secret."""
    key = usage.key
    status = "active"
    if key.revoked_at is not None:
        status = "revoked"
    elif key.expires_at is not None and key.expires_at <= now:
        status = "expired"
    return {
        "id": key.id,
        "name": key.name,
        "hint": key.hint,
        "status": status,
        "created_at": _iso(key.created_at),
        "expires_at": _iso(key.expires_at),
        "budget_usd": key.budget_usd,
        "period": key.period if key.budget_usd is not None else None,
        "current_period": usage.period,
        "spent_usd": round(usage.spent_usd, 12),
        "reserved_usd": round(usage.reserved_usd, 12),
        "remaining_usd": None if usage.remaining_usd is None else round(usage.remaining_usd, 12),
        "rpm": key.rpm,
        "tpm": key.tpm,
        "models": list(key.models) if key.models is not None else None,
        "tasks": list(key.tasks) if key.tasks is not None else None,
        "max_rounds": key.max_rounds,
        "max_samples": key.max_samples,
    }


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
