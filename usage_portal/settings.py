"""Usage Portal settings: everything that differs between machines comes from the environment.

Development defaults need no external service: SQLite under ``var/`` and kombu's filesystem
broker. Set ``DATABASE_URL`` and ``REDIS_URL`` to run on PostgreSQL and Redis.
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
import plotly
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = os.environ.get(name, "")
    try:
        number = int(value) if value.strip() else default
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {value!r}") from exc
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value!r}")
    return number


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    try:
        return float(value) if value.strip() else default
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from exc


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", default=False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY in the environment, or DEBUG=1 for development."
        )
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.humanize",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_tables2",
    "django_filters",
    "accounts",
    "instances",
    "scoring",
    "usage_portal.web",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Outermost but security: an outage of the database or broker raised in any view is a 503.
    "usage_portal.middleware.ServiceUnavailableMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "usage_portal.urls"
WSGI_APPLICATION = "usage_portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "usage_portal.context_processors.portal",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'usage_portal.sqlite3'}",
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while the worker writes.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
# plotly.js is served from the copy inside the installed plotly package: no CDN, no drift.
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/plotly", Path(plotly.__file__).resolve().parent / "package_data"),
]
STATIC_ROOT = VAR_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if not DEBUG and env_bool("STATIC_MANIFEST", default=True)
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = DEBUG
STATIC_ROOT.mkdir(parents=True, exist_ok=True)

# Security: production defaults, relaxed only where DEBUG says this is a development machine.
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
# Preloading is a one-way decision for the whole domain, so it is opt-in.
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=False)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SILENCED_SYSTEM_CHECKS = env_list("SILENCED_SYSTEM_CHECKS")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- Usage Portal behaviour -------------------------------------------------------------------

LABEL_REFRESH_DELAY_HOURS = float(os.environ.get("LABEL_REFRESH_DELAY_HOURS", "24") or 24)
if LABEL_REFRESH_DELAY_HOURS < 0:
    raise ImproperlyConfigured("LABEL_REFRESH_DELAY_HOURS must be 0 or more")
LABEL_REFRESH_DELAY = timedelta(hours=LABEL_REFRESH_DELAY_HOURS)
ALLOW_ANONYMOUS_PINGS = env_bool("ALLOW_ANONYMOUS_PINGS", default=False)
PING_MAX_BODY_BYTES = env_int("PING_MAX_BODY_BYTES", 5 * 1024 * 1024)
PING_MAX_DECOMPRESSED_BYTES = env_int("PING_MAX_DECOMPRESSED_BYTES", 20 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = PING_MAX_BODY_BYTES + 1024
# 0 or less would purge every raw payload at the next sweep: refused at start-up.
RAW_PAYLOAD_RETENTION_DAYS = env_int("RAW_PAYLOAD_RETENTION_DAYS", 730, minimum=1)
STALE_INSTANCE_DAYS = env_int("STALE_INSTANCE_DAYS", 60)
SCORING_SCHEME = os.environ.get("SCORING_SCHEME", "")  # empty: the scheme chosen in the admin
EXPORT_DIR = Path(os.environ.get("EXPORT_DIR", VAR_DIR / "exports"))

# --- Cache ---------------------------------------------------------------------------------------
# The C360 sections' heavy parts (accounts/fragments.py), keyed by each account's data version
# (Company.updated_at), so a stale entry is never served; the timeout bounds what depends on the
# clock (an instance turning stale). With Redis, web processes share entries (CACHE_URL, default
# REDIS_URL); without it each process keeps its own in memory. 0 turns the cache off.
C360_CACHE_SECONDS = env_int("C360_CACHE_SECONDS", 600)
CACHE_URL = os.environ.get("CACHE_URL", "") or os.environ.get("REDIS_URL", "")
CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "usage-portal"),
            # A hung Redis must cost a page a short wait, not a worker thread for minutes: the
            # C360 treats a cache error as a miss (fragment_cache).
            "OPTIONS": {
                "socket_connect_timeout": env_float("CACHE_SOCKET_TIMEOUT", 0.5),
                "socket_timeout": env_float("CACHE_SOCKET_TIMEOUT", 0.5),
            },
        }
        if CACHE_URL
        else {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "usage-portal",
            "OPTIONS": {"MAX_ENTRIES": 2000},
        }
    )
}

# --- Celery ------------------------------------------------------------------------------------

REDIS_URL = os.environ.get("REDIS_URL", "")
CELERY_BROKER_URL = REDIS_URL or "filesystem://"
if not REDIS_URL:
    _broker_dir = VAR_DIR / "broker"
    # kombu's filesystem transport expects its folders to exist.
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        # Exchange tables (worker remote control); kombu's default is ./control in the cwd.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # Redis redelivers an unacknowledged task after this long (a worker killed mid-task): it must
    # exceed the longest ETA we schedule (instances.labels.SHORT_ETA, 30 min; later label
    # changes wait in the database for the sweep) and the longest task.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env_int("BROKER_VISIBILITY_TIMEOUT", 3600, minimum=1800),
        # A publish after a commit must not hold a request when Redis is down or hung: the
        # pending refresh row is the durable record, the task only the fast path.
        "socket_connect_timeout": env_float("BROKER_SOCKET_TIMEOUT", 1.0),
        "socket_timeout": env_float("BROKER_SOCKET_TIMEOUT", 1.0),
    }
    # kombu's Redis transport with the fix for a worker dying when Redis drops (see the module).
    CELERY_BROKER_TRANSPORT = "usage_portal.broker:Transport"
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
CELERY_BROKER_CONNECTION_TIMEOUT = env_float("BROKER_SOCKET_TIMEOUT", 1.0)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_TASK_ACKS_LATE = True
# A pool child killed mid-task (the OOM killer) must requeue its message, not acknowledge it:
# every task is idempotent, and acks_late alone acknowledges on a lost worker.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_MAX_TASKS_PER_CHILD = env_int("CELERY_WORKER_MAX_TASKS_PER_CHILD", 1000)
CELERY_TASK_ROUTES = {
    "instances.tasks.purge_raw_payloads": {"queue": "ingest"},
    "instances.tasks.*": {"queue": "scoring"},  # labeling rules: scores follow them
    "instances.labels.*": {"queue": "scoring"},
    "scoring.tasks.*": {"queue": "scoring"},
}
CELERY_TASK_DEFAULT_QUEUE = "scoring"
# Tasks defined beside their service rather than in a tasks.py (autodiscovered as usual).
CELERY_IMPORTS = ("instances.labels",)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Every periodic job, in one place.
CELERY_BEAT_SCHEDULE = {
    "apply-due-label-changes": {
        "task": "instances.labels.apply_due_label_changes",
        "schedule": timedelta(seconds=env_int("LABEL_SWEEP_SECONDS", 60)),
    },
    "refresh-sweep": {  # scores whose refresh was lost on the way (broker down, worker killed)
        "task": "scoring.tasks.refresh_sweep",
        "schedule": timedelta(seconds=env_int("REFRESH_SWEEP_SECONDS", 60)),
    },
    "run-labeling-rules": {
        "task": "instances.tasks.run_labeling_rules",
        "schedule": crontab(hour=3, minute=15),
    },
    "daily-recompute": {  # account age and ping staleness move with the calendar
        "task": "scoring.tasks.recompute_all",
        "schedule": crontab(hour=1, minute=0),
        "kwargs": {"reason": "daily", "history": False},
    },
    "weekly-instance-type-export": {
        "task": "scoring.tasks.export_instance_types",
        "schedule": crontab(hour=4, minute=0, day_of_week="sunday"),
    },
    "purge-raw-payloads": {
        "task": "instances.tasks.purge_raw_payloads",
        "schedule": crontab(hour=2, minute=30),
    },
    "drop-digests": {  # each CSM's new health drops, once a day (idempotent per CSM and day)
        "task": "scoring.tasks.send_drop_digests",
        "schedule": crontab(hour=env_int("DROP_DIGEST_HOUR", 7), minute=0),
    },
}

# E-mail (the daily drop digest): SMTP when EMAIL_HOST is set, else printed to the console.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_PORT = env_int("EMAIL_PORT", 587)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "usage-portal@localhost")
#: Where people reach the portal, for links in e-mails.
PORTAL_URL = os.environ.get("PORTAL_URL", "http://127.0.0.1:8000").rstrip("/")

DJANGO_TABLES2_TEMPLATE = "partials/table.html"
DJANGO_TABLES2_TABLE_ATTRS = {"class": "table"}
