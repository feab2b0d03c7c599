"""Django's Redis cache backend, with one Redis client per connection pool instead of one per call.

Django's ``RedisCacheClient.get_client`` builds a new ``redis.Redis`` for every cache operation
(the pool is shared; the client object is not). Building one costs more CPU than the GET it
sends: redis-py fills a table of ~200 response callbacks each time — 145-200 µs against 120-150
µs for the GET itself, measured on a slow two-core machine. Every ping request reads the token
throttle's counter and every C360 page makes a few cache reads, so each paid that. A client
only holds its pool and that table, and redis-py's clients are safe to share between threads
(each command takes its own connection from the pool; a forked child's pool reconnects), so one
per pool serves every thread of the process. Django leaves ``get_client`` to be overridden for
this kind of reason (its comment names sharding).
"""

from __future__ import annotations

from django.core.cache.backends import redis


class RedisCacheClient(redis.RedisCacheClient):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict = {}  # pool -> client; Django keeps one pool per server

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(pool)
        if client is None:
            # Two threads may both build one here: either is right, and the last one is kept.
            client = self._clients[pool] = self._client(connection_pool=pool)
        return client


class RedisCache(redis.RedisCache):
    """``django.core.cache.backends.redis.RedisCache`` with the client above."""

    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient
