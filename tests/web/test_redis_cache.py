"""The Redis cache backend (``usage_portal.caches``) against a real Redis: every operation of
every thread goes through one client per pool, values round-trip, and a Redis that restarts is
used again without a new client."""

from __future__ import annotations

import threading
from unittest import mock

import pytest
import redis as redis_lib
from django.conf import settings

from tests.redis_support import OwnRedis
from usage_portal.caches import RedisCache

pytestmark = pytest.mark.integration


def _cache(url: str) -> RedisCache:
    return RedisCache(url, {"KEY_PREFIX": "cache-test", "OPTIONS": {"socket_timeout": 2}})


def test_the_portal_caches_use_this_backend():
    for name in ("default", "throttle"):
        assert settings.CACHES[name]["BACKEND"] == "usage_portal.caches.RedisCache", (
            "run with REDIS_URL set"
        )


def test_every_operation_of_every_thread_uses_one_client(tmp_path):
    own = OwnRedis(tmp_path)
    own.start()
    try:
        cache = _cache(own.url)
        built = mock.patch.object(
            redis_lib.Redis, "__init__", side_effect=redis_lib.Redis.__init__, autospec=True
        )
        with built as constructed:
            cache.set("first", {"n": 1})
            assert cache.get("first") == {"n": 1}
            errors: list[BaseException] = []

            def work(n: int) -> None:
                try:
                    for i in range(20):
                        cache.set(f"k{n}-{i}", [n, i])
                        assert cache.get(f"k{n}-{i}") == [n, i]
                    assert cache.get_many([f"k{n}-0", f"k{n}-19"]) == {
                        f"k{n}-0": [n, 0],
                        f"k{n}-19": [n, 19],
                    }
                    assert cache.add(f"c{n}", 1)
                    assert cache.incr(f"c{n}") == 2
                    cache.delete(f"k{n}-0")
                    assert cache.get(f"k{n}-0") is None
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)

            threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert errors == []
        # Django's own backend builds a client for each of these ~370 operations.
        assert constructed.call_count == 1
    finally:
        own.stop()


def test_a_restarted_redis_is_used_again_by_the_same_client(tmp_path):
    own = OwnRedis(tmp_path)
    own.start()
    try:
        cache = _cache(own.url)
        cache.set("kept", "before")
        client = cache._cache.get_client()
        own.stop()
        with pytest.raises(redis_lib.ConnectionError):
            cache.get("kept")
        own.start()  # same folder and port: the append-only file brings the key back
        assert cache.get("kept") == "before"
        assert cache._cache.get_client() is client
    finally:
        own.stop()
