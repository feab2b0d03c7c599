"""The real Celery app publishing to a broker, as a deployment runs it (the suite is eager).

``publishing_to("memory://")`` takes messages and runs nothing, so a test sees what a request
queued (``queued_messages``) and can then run it as a worker would; a refused address
(``DEAD_BROKER``) is a stopped Redis.
"""

from __future__ import annotations

import contextlib

from usage_portal.celery import app

# Nothing listens there: every connection is refused at once, as with a stopped Redis.
DEAD_BROKER = "redis://127.0.0.1:9/0"


def _forget_connections() -> None:
    # The app caches its connection and producer pools; the next publish builds them anew from
    # the configuration in force.
    app._pool = None
    app.amqp._producer_pool = None


@contextlib.contextmanager
def publishing_to(broker_url: str):
    """The app, not eager, publishing to ``broker_url`` (messages already there are dropped)."""
    keys = ("broker_url", "task_always_eager", "task_publish_retry_policy")
    saved = {key: app.conf[key] for key in keys}
    saved_options = app.conf.broker_transport_options
    app.conf.update(
        broker_url=broker_url,
        task_always_eager=False,
        broker_transport_options={"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.1},
    )
    _forget_connections()
    try:
        if broker_url.startswith("memory://"):
            queued_messages()
        yield app
    finally:
        if broker_url.startswith("memory://"):
            queued_messages()
        _forget_connections()
        app.conf.update(**saved, broker_transport_options=saved_options)


def queued_messages(queue: str = "scoring") -> list[tuple[str, str, list]]:
    """Take every message off the broker's ``queue``: (task name, task id, positional args)."""
    found = []
    with app.connection_for_read() as conn:
        simple = conn.SimpleQueue(queue)
        try:
            while True:
                try:
                    message = simple.get(block=False)
                except simple.Empty:
                    break
                args, _kwargs, _embed = message.decode()
                found.append((message.headers["task"], message.headers["id"], args))
                message.ack()
        finally:
            simple.close()
    return found
