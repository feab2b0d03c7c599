"""The request id every log line carries, and the JSON shape of a line (``LOG_FORMAT=json``).

One id per HTTP request: taken from an incoming ``X-Request-ID`` when it is sane (a proxy or a
load balancer in front made one, and its access log has it), else made here. The request-id
middleware sets it for the request, the Celery publish signal copies it into the header of every
task queued meanwhile, and the worker sets it again while that task runs — so a ping's request
line, the refresh it queued and the worker's lines of that refresh share one id.

No framework (the standard library and python-json-logger): the web tier, the worker and the
settings all use it.
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

#: What an incoming id may look like: a uuid, nginx's ``$request_id``, a trace id. Anything
#: else (spaces, quotes, newlines, a novel) is replaced: it lands in every log line.
SANE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
HEADER = "X-Request-ID"
#: The Celery message header that carries it to the worker.
TASK_HEADER = "request_id"

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
#: (task id, task name) while a Celery task runs in this context.
current_task: ContextVar[tuple[str, str] | None] = ContextVar("current_task", default=None)


def request_id_new() -> str:
    return uuid.uuid4().hex


def request_id_from(incoming: str | None) -> str:
    """The incoming id when it is sane, else a new one."""
    if incoming and SANE.fullmatch(incoming):
        return incoming
    return request_id_new()


class RequestIdFilter(logging.Filter):
    """Puts ``request_id`` (``-`` outside a request or task) on every record, and the task's id
    and name while a task runs; attached to the handlers, so third-party loggers get it too."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            # django.request logs a 4xx/5xx answer after the middleware has handed the request
            # back (the context is reset by then), with the request attached to the record.
            record.request_id = (
                request_id.get() or getattr(getattr(record, "request", None), "request_id", None)
            ) or "-"
        task = current_task.get()
        if task is not None and not hasattr(record, "task_id"):
            record.task_id, record.task_name = task
        return True


class JsonFormatter(_JsonFormatter):
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, request_id, and
    every extra attribute a record carries (task_id, task_name, status_code …)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("fmt", ["levelname", "name", "message", "request_id"])
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", "time")
        # The HttpRequest django.request attaches would print as its repr: the path is in the
        # message already.
        kwargs.setdefault("reserved_attrs", [*RESERVED_ATTRS, "request"])
        super().__init__(*args, **kwargs)
