"""Loaded by pytest before Django (``-p tests.environment``): a test machine's environment."""

import os

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production-" + "x7Kq" * 10)
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECURE_COOKIES", "0")
os.environ.setdefault("STATIC_MANIFEST", "0")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "1")
# Playwright's sync API runs an event loop in the test thread; Django's ORM must still be usable.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
# The brute-force limits would trip over the suite's own thousands of refused requests from one
# address; tests/web/test_throttle.py sets them low where it exercises them.
os.environ.setdefault("TOKEN_FAILURE_RATE", "1000000/m")
os.environ.setdefault("ANONYMOUS_PING_RATE", "1000000/m")
os.environ.setdefault("LOGIN_FAILURE_LIMIT", "1000000")
