"""A :class:`Store` on a Redis (or Valkey) server, so that several machines share one cache.

The keys and values are exactly the diskcache store's (the response cache's key, its JSON entry),
under one prefix; hits and misses are counters on the server. Safety between writers on several
machines comes from the server's atomic commands alone: an entry is written with ``SET ... NX``
(set if absent), so when two processes race on one key the first answer stored is the one every
later reader is served, and nothing stored is ever overwritten; the counters move by ``HINCRBY``.

A server that cannot be reached is a :class:`StoreError` with ``unreachable`` set: the response
cache then treats lookups as misses and counts the answers it could not store, and the run goes
on (its journal holds every answer it was given).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from dialbgm.errors import ConfigError
from dialbgm.storage._diskstore import Place, Store, StoreError

PREFIX = "dialbgm:response:"
TOTALS = "dialbgm:totals"
SCHEMES = ("redis", "rediss", "unix", "valkey", "valkeys")
_T = TypeVar("_T")


class Unreachable(StoreError):
    """The server did not answer (refused, timed out, connection dropped)."""


def redacted_url(url: str) -> str:
    """The URL as it may be shown: a password in it is replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password, port_number = parts.password, parts.port
    except ValueError:  # unparseable (a bad port, a broken IPv6 host): it may still hold a password
        return "<a URL that cannot be parsed>"
    if password is None:
        return url
    host = parts.hostname or ""
    user = f"{parts.username}:***@" if parts.username else ":***@"
    port = f":{port_number}" if port_number else ""
    return urlunsplit((parts.scheme, f"{user}{host}{port}", parts.path, parts.query, parts.fragment))


def is_shared_url(url: str) -> bool:
    # By its scheme alone: a URL too broken for urlsplit is still one, to be refused as such.
    return "://" in url and url.split("://", 1)[0].lower() in SCHEMES


class RedisStore(Store):
    """The operations of :class:`Store` on a Redis server (see the module's docstring)."""

    shared = True

    def __init__(self, place: Place, url: str, *, timeout_s: float = 5.0) -> None:
        super().__init__(place)
        try:
            import redis
        except ImportError:  # a set-up problem, not a server that went away: the run must not start
            raise ConfigError(
                f"{place.what} {redacted_url(url)} needs the redis client: pip install 'dialbgm[redis]'"
            ) from None
        self._redis_mod = redis
        try:
            scheme, _port = urlsplit(url).scheme, urlsplit(url).port
        except ValueError as e:
            raise ConfigError(f"{place.what} {redacted_url(url)} is not a usable Redis URL ({e})") from None
        # Valkey speaks the same protocol; the client only knows redis:// names.
        url = {"valkey": "redis", "valkeys": "rediss"}.get(scheme, scheme) + url[len(scheme) :]
        self.url = url
        try:
            self._client = redis.Redis.from_url(
                url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s, decode_responses=True
            )
        except ValueError as e:  # a scheme, port or host redis cannot use; the message never holds the URL
            raise ConfigError(f"{place.what} {redacted_url(url)} is not a usable Redis URL ({e})") from None
        self._call(self._client.ping)  # fail at open, naming the server, not at the first lookup

    def _call(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        errors = self._redis_mod.exceptions
        try:
            return fn(*args, **kwargs)
        except (errors.ConnectionError, errors.TimeoutError, OSError) as e:
            raise Unreachable(f"{self.place.what} {redacted_url(self.url)} cannot be reached ({e})") from None
        except errors.ResponseError as e:  # e.g. NOAUTH, READONLY replica, OOM
            raise StoreError(f"{self.place.what} {redacted_url(self.url)} refused the command ({e})") from None

    def get(self, key: str) -> Any:
        return self._call(self._client.get, PREFIX + key)

    def set(self, key: str, value: str) -> None:
        self.set_if_absent(key, value)

    def set_if_absent(self, key: str, value: str) -> bool:
        """Store ``value`` unless the key holds one already; True when this call stored it."""
        return bool(self._call(self._client.set, PREFIX + key, value, nx=True))

    def delete(self, key: str) -> bool:
        return bool(self._call(self._client.delete, PREFIX + key))

    def clear(self) -> int:
        removed = 0
        batch: list[str] = []
        for k in self._scan():
            batch.append(k)
            if len(batch) >= 500:
                removed += int(self._call(self._client.delete, *batch))
                batch = []
        if batch:
            removed += int(self._call(self._client.delete, *batch))
        return removed

    def _scan(self) -> Iterator[str]:
        it = self._call(self._client.scan_iter, match=PREFIX + "*", count=1000)
        while True:
            try:
                k = self._call(next, it)
            except StopIteration:
                return
            yield k

    def iterkeys(self) -> Iterator[str]:
        for k in self._scan():
            yield k[len(PREFIX) :]

    def count(self) -> int:
        return sum(1 for _ in self._scan())

    def volume(self) -> int:
        total = 0
        keys = list(self._scan())
        for i in range(0, len(keys), 500):
            pipe = self._client.pipeline(transaction=False)
            for k in keys[i : i + 500]:
                pipe.strlen(k)
            total += sum(int(n) for n in self._call(pipe.execute))
        return total

    def check(self, fix: bool) -> list[str]:
        self._call(self._client.ping)
        return []  # the server keeps its own storage consistent; entries are checked one by one

    def totals(self) -> tuple[int, int]:
        got = self._call(self._client.hmget, TOTALS, ["hits", "misses"])
        return int(got[0] or 0), int(got[1] or 0)

    def add_totals(self, hits: int, misses: int) -> None:
        pipe = self._client.pipeline(transaction=True)
        pipe.hincrby(TOTALS, "hits", hits)
        pipe.hincrby(TOTALS, "misses", misses)
        self._call(pipe.execute)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a dead connection must not hide what went before
            self._client.close()


def open_redis_store(place: Place, url: str) -> RedisStore:
    return RedisStore(place, url)
