"""Who is calling: the single ``PERFICS_API_KEY``, a key from the store, or nobody on an open
proxy. Keys are looked up in the store and kept for ``cache_s`` (a revoked or rotated key stops
working in every process within that time); so is whether any key exists at all.
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Callable, Mapping

import structlog

from proxy.errors import AuthenticationFailed, KeyStoreUnavailable
from proxy.keys import hash_secret, looks_like_secret
from proxy.store.base import Store, StoreUnavailable
from proxy.store.records import KeyRecord

log = structlog.get_logger(__name__)

KEY_CACHE_S = 1.0
UNAVAILABLE = "the key store is unavailable; requests that need it are refused until it is back"


class Callers:
    """Identifies callers by their bearer key. ``clock`` (monotonic) times the cache, ``wall``
    (seconds since the epoch) decides expiry."""

    def __init__(
        self,
        store: Store,
        *,
        cache_s: float = KEY_CACHE_S,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._cache_s = cache_s
        self._clock = clock
        self._wall = wall
        self._keys: dict[str, tuple[float, KeyRecord | None]] = {}
        self._has_keys: tuple[float, bool] = (-math.inf, False)

    async def caller(self, headers: Mapping[str, str], api_key: str | None) -> KeyRecord | None:
        """The caller's key; None for the single ``PERFICS_API_KEY`` or an open proxy (no key
        configured and none ever made). Raises ``AuthenticationFailed`` otherwise."""
        supplied = headers.get("authorization", "").removeprefix("Bearer ").strip()
        if api_key and hmac.compare_digest(supplied.encode(), api_key.encode()):
            return None
        if looks_like_secret(supplied):
            key = await self._key(hash_secret(supplied))
            if key is not None and key.usable(self._wall()):
                return key
            if key is not None:
                raise AuthenticationFailed("this API key has been revoked or has expired")
        if api_key or await self.keys_exist():
            raise AuthenticationFailed("invalid or missing API key")
        return None

    async def _key(self, digest: str) -> KeyRecord | None:
        now = self._clock()
        cached = self._keys.get(digest)
        if cached is not None and now - cached[0] < self._cache_s:
            return cached[1]
        try:
            key = await self.store.key_by_hash(digest)
        except StoreUnavailable as exc:
            raise unavailable(exc) from exc
        if len(self._keys) > 10_000:
            self._keys.clear()
        self._keys[digest] = (now, key)
        return key

    async def keys_exist(self) -> bool:
        """Whether any key was ever made (``Store.has_keys``), as of at most ``cache_s``
        ago. Raises ``KeyStoreUnavailable`` when the store cannot say, except on a proxy
        already seen open."""
        now = self._clock()
        checked, exist = self._has_keys
        if now - checked < self._cache_s:
            return exist
        try:
            exist = await self.store.has_keys()
        except StoreUnavailable as exc:
            if checked > -math.inf and not exist:
                return False  # an open proxy stays open while its store is away
            raise unavailable(exc) from exc
        self._has_keys = (now, exist)
        return exist

    def forget_keys(self) -> None:
        """Drop the cache (after this process changed a key)."""
        self._keys.clear()
        self._has_keys = (-math.inf, False)


def unavailable(exc: StoreUnavailable) -> KeyStoreUnavailable:
    log.error("store.unavailable", error=str(exc))
    return KeyStoreUnavailable(UNAVAILABLE, headers={"retry-after": "5"})
