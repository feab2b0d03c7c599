"""The Celery application: tasks are autodiscovered from every installed app's ``tasks.py``.

Also the worker's side of operations (docs/operations.md): the request id travels from the
request that queued a task to the worker's log lines of it, the worker's log lines are JSON when
``LOG_FORMAT=json``, and each heartbeat touches ``WORKER_HEARTBEAT_FILE`` for a liveness probe.
"""

import logging
import os
from pathlib import Path

from celery import Celery
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    before_task_publish,
    heartbeat_sent,
    task_postrun,
    task_prerun,
)
from django.conf import settings
from kombu.exceptions import KombuError
from kombu.transport import TRANSPORT_ALIASES
from redis.exceptions import RedisError

from usage_portal import logs

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "usage_portal.settings")
logger = logging.getLogger(__name__)

# Every redis:// connection (the broker, the readiness check, the queue-depth metric) uses
# kombu's Redis transport with the portal's fixes (usage_portal.broker). An alias rather than
# the broker_transport setting: that one would also turn memory:// and filesystem:// URLs into
# Redis connections.
TRANSPORT_ALIASES["redis"] = TRANSPORT_ALIASES["rediss"] = "usage_portal.broker:Transport"

app = Celery("usage_portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

#: What publishing a task raises when the broker is down or hung, by transport (kombu wraps most).
#: A publish after a commit catches these: the work is recorded in the database, and a beat sweep
#: does it when the task is lost.
BROKER_ERRORS = (KombuError, RedisError, OSError)


# --- The request id, from the request to the worker -------------------------------------------


@before_task_publish.connect(dispatch_uid="usage_portal.request_id_publish")
def request_id_publish(headers=None, **kwargs) -> None:
    """A task queued while a request (or a task) runs carries its id in the message header."""
    request_id = logs.request_id.get()
    if request_id and headers is not None:
        headers.setdefault(logs.TASK_HEADER, request_id)


#: task id → the context tokens its run set, to restore what was there before (an eager task
#: runs inside the request that queued it and must hand the request its id back).
_running: dict[str, tuple] = {}


def task_header(request, name: str):
    """A custom message header of the running task: an attribute of the worker's request, in
    ``request.headers`` of an eager one (``apply(headers=...)``)."""
    value = getattr(request, name, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(name)
    return value


@task_prerun.connect(dispatch_uid="usage_portal.request_id_task_start")
def request_id_task_start(task_id=None, task=None, **kwargs) -> None:
    incoming = task_header(task.request, logs.TASK_HEADER)
    request_id = (
        incoming
        if isinstance(incoming, str) and logs.SANE.fullmatch(incoming)
        else logs.request_id.get()
    )
    _running[task_id] = (
        logs.request_id.set(request_id),
        logs.current_task.set((task_id, task.name)),
    )


@task_postrun.connect(dispatch_uid="usage_portal.request_id_task_end")
def request_id_task_end(task_id=None, **kwargs) -> None:
    tokens = _running.pop(task_id, None)
    if tokens is not None:
        logs.request_id.reset(tokens[0])
        logs.current_task.reset(tokens[1])


# --- The worker's log lines -------------------------------------------------------------------


@after_setup_logger.connect(dispatch_uid="usage_portal.worker_log_format")
@after_setup_task_logger.connect(dispatch_uid="usage_portal.worker_task_log_format")
def worker_log_format(logger=None, **kwargs) -> None:
    """Celery replaces the handlers of the root and task loggers with its own text format; with
    ``LOG_FORMAT=json`` they are given the portal's JSON lines and the request id instead."""
    if logger is None or settings.LOG_FORMAT != "json":
        return
    for handler in logger.handlers:
        handler.setFormatter(logs.JsonFormatter())
        handler.addFilter(logs.RequestIdFilter())


# --- Worker heartbeat -------------------------------------------------------------------------


@heartbeat_sent.connect(dispatch_uid="usage_portal.worker_heartbeat_file")
def worker_heartbeat_file(**kwargs) -> None:
    """Every heartbeat (2 s) of a worker connected to its broker touches the file: a file older
    than a minute is a worker whose consumer is stuck or cut off."""
    path = settings.WORKER_HEARTBEAT_FILE
    if not path:
        return
    try:
        Path(path).touch()
    except OSError as exc:
        logger.warning("cannot touch WORKER_HEARTBEAT_FILE %s: %s", path, exc)
