"""The Celery application: tasks are autodiscovered from every installed app's ``tasks.py``."""

import os

from celery import Celery
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "usage_portal.settings")

app = Celery("usage_portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

#: What publishing a task raises when the broker is down or hung, by transport (kombu wraps most).
#: A publish after a commit catches these: the work is recorded in the database, and a beat sweep
#: does it when the task is lost.
BROKER_ERRORS = (KombuError, RedisError, OSError)
