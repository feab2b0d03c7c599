"""Usage Portal settings: everything that differs between machines comes from the environment.

Development defaults need no external service: SQLite under ``var/`` and kombu's filesystem
broker. Set ``DATABASE_URL`` and ``REDIS_URL`` to run on PostgreSQL and Redis.
"""

import ipaddress
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from csp.constants import NONE, SELF
from django.core.checks.security.base import (
    SECRET_KEY_MIN_LENGTH,
    SECRET_KEY_MIN_UNIQUE_CHARACTERS,
)
from django.core.exceptions import ImproperlyConfigured

from usage_portal import contentpolicy

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
elif not DEBUG and (
    len(SECRET_KEY) < SECRET_KEY_MIN_LENGTH
    or len(set(SECRET_KEY)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS
    or SECRET_KEY.startswith(("django-insecure", "dev-only-insecure"))
):
    # Django's check only warns (security.W009), and a warning scrolls past at deploy time: a
    # guessable key forges sessions and password-reset links, so production refuses to start.
    raise ImproperlyConfigured(
        f"SECRET_KEY is too weak: use at least {SECRET_KEY_MIN_LENGTH} random characters, e.g. "
        "python -c 'import secrets; print(secrets.token_urlsafe(50))'."
    )

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
    "axes",
    "django_ratelimit",
    "csp",
    "accounts",
    "instances",
    "scoring",
    "usage_portal.web",
]

MIDDLEWARE = [
    # First and last but axes: django-prometheus counts and times every request and response.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    # Before everything that logs: every line of a request carries its id (usage_portal.logs).
    "usage_portal.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Outside the 503 middleware and every error handler: their pages carry the policy too.
    "csp.middleware.CSPMiddleware",
    # Outermost but security: an outage of the database or broker raised in any view is a 503.
    "usage_portal.middleware.ServiceUnavailableMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # The reader's time zone (their choice, else their browser's): it needs the person.
    "usage_portal.web.timezones.TimeZoneMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "usage_portal.web.ops.middleware.PrometheusAfterMiddleware",  # a hostile Content-Length
    # Last, as django-axes requires: it turns a locked-out login into the 429 page.
    "axes.middleware.AxesMiddleware",
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

# A read replica (usage_portal/dbrouting.py, docs/deploy.md): pages read from a PostgreSQL
# streaming replica, writes and a person's next pages after a write from the primary. Unset:
# one database, no router, no middleware.
DATABASE_REPLICA_URL = os.environ.get("DATABASE_REPLICA_URL", "").strip()
REPLICA_STICKY_SECONDS = env_int("REPLICA_STICKY_SECONDS", 10, minimum=1)
REPLICA_RETRY_SECONDS = env_int("REPLICA_RETRY_SECONDS", 5, minimum=1)
if DATABASE_REPLICA_URL:
    _replica = dj_database_url.parse(DATABASE_REPLICA_URL)
    # Where it is from its URL; everything else (CONN_MAX_AGE, health checks) as the default's.
    DATABASES["replica"] = {
        **DATABASES["default"],
        **{key: _replica[key] for key in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")},
        "OPTIONS": {**DATABASES["default"].get("OPTIONS", {}), **_replica.get("OPTIONS", {})},
        # The test suite reads the default's test database through it, never a copy of its own.
        "TEST": {"MIRROR": "default"},
    }
    if DATABASES["replica"]["ENGINE"] == "django.db.backends.postgresql":
        # A replica that does not answer costs a page this long once, then the primary serves.
        DATABASES["replica"]["OPTIONS"].setdefault(
            "connect_timeout", env_int("REPLICA_CONNECT_TIMEOUT", 2, minimum=1)
        )
    DATABASE_ROUTERS = ["usage_portal.dbrouting.ReplicaRouter"]
    MIDDLEWARE.insert(
        MIDDLEWARE.index("django.contrib.sessions.middleware.SessionMiddleware") + 1,
        "usage_portal.dbrouting.ReplicaMiddleware",
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# --- Brute force (usage_portal.web.throttle) --------------------------------------------------
AUTHENTICATION_BACKENDS = [
    # First, as django-axes requires: it refuses a locked-out username and address pair.
    "usage_portal.web.throttle.LockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "usage_portal.web.throttle.lockout_response"
AXES_CLIENT_IP_CALLABLE = "usage_portal.web.throttle.client_ip"
AXES_VERBOSE = False
# Behind a reverse proxy: the request header the proxy appends the client's address to, as
# Django names it (e.g. HTTP_X_FORWARDED_FOR); empty means REMOTE_ADDR is the client.
CLIENT_IP_HEADER = os.environ.get("CLIENT_IP_HEADER", "")

# --- Single sign-on: OpenID Connect (accounts/sso.py, usage_portal/web/sso.py, docs/sso.md) ----
# On when OIDC_RP_CLIENT_ID is set. The provider's endpoints are given one by one (its
# /.well-known/openid-configuration lists them): no request leaves at start-up.
OIDC_RP_CLIENT_ID = os.environ.get("OIDC_RP_CLIENT_ID", "").strip()
SSO_ENABLED = bool(OIDC_RP_CLIENT_ID)
OIDC_RP_CLIENT_SECRET = os.environ.get("OIDC_RP_CLIENT_SECRET", "")
OIDC_OP_AUTHORIZATION_ENDPOINT = os.environ.get("OIDC_OP_AUTHORIZATION_ENDPOINT", "").strip()
OIDC_OP_TOKEN_ENDPOINT = os.environ.get("OIDC_OP_TOKEN_ENDPOINT", "").strip()
OIDC_OP_USER_ENDPOINT = os.environ.get("OIDC_OP_USER_ENDPOINT", "").strip()
OIDC_OP_JWKS_ENDPOINT = os.environ.get("OIDC_OP_JWKS_ENDPOINT", "").strip()
OIDC_RP_SIGN_ALGO = os.environ.get("OIDC_RP_SIGN_ALGO", "").strip() or "RS256"
OIDC_RP_SCOPES = os.environ.get("OIDC_RP_SCOPES", "").strip() or "openid email profile groups"
OIDC_USE_PKCE = env_bool("OIDC_USE_PKCE", default=True)
OIDC_TIMEOUT = env_float("OIDC_TIMEOUT", 10.0)  # each call to the provider, in seconds
OIDC_GROUPS_CLAIM = os.environ.get("OIDC_GROUPS_CLAIM", "").strip() or "groups"
#: Role → the provider's groups that grant it (accounts.roles.roles_for_groups).
OIDC_ROLE_GROUPS = {
    "Ops": env_list("OIDC_OPS_GROUPS"),
    "CSM": env_list("OIDC_CSM_GROUPS"),
    "Viewer": env_list("OIDC_VIEWER_GROUPS"),
}
SSO_SUPPORT_CONTACT = (
    os.environ.get("SSO_SUPPORT_CONTACT", "").strip() or "your Usage Portal administrators"
)
# Break-glass: the password form (and the admin's) while SSO is down. Off: no password signs
# in anywhere, ModelBackend is not consulted.
PASSWORD_LOGIN = env_bool("PASSWORD_LOGIN", default=True)
if SSO_ENABLED:
    _missing = [
        name
        for name in (
            "OIDC_RP_CLIENT_SECRET",
            "OIDC_OP_AUTHORIZATION_ENDPOINT",
            "OIDC_OP_TOKEN_ENDPOINT",
            "OIDC_OP_USER_ENDPOINT",
            "OIDC_OP_JWKS_ENDPOINT",
        )
        if not globals()[name]
    ]
    if _missing:
        raise ImproperlyConfigured(f"single sign-on needs {', '.join(_missing)} (docs/sso.md)")
    if not any(OIDC_ROLE_GROUPS.values()):
        raise ImproperlyConfigured(
            "single sign-on needs at least one of OIDC_OPS_GROUPS, OIDC_CSM_GROUPS, "
            "OIDC_VIEWER_GROUPS: nobody could sign in (docs/sso.md)"
        )
    AUTHENTICATION_BACKENDS.append("accounts.sso.PortalOIDCBackend")
if not PASSWORD_LOGIN:
    if not SSO_ENABLED:
        raise ImproperlyConfigured("PASSWORD_LOGIN=0 needs single sign-on (OIDC_RP_CLIENT_ID)")
    AUTHENTICATION_BACKENDS.remove("django.contrib.auth.backends.ModelBackend")


def env_rate(name: str, default: str) -> str:
    """A django-ratelimit rate such as ``10/m`` or ``100/5m``, checked at start-up."""
    value = os.environ.get(name, "").strip() or default
    count, _, period = value.partition("/")
    if not (
        count.isdigit()
        and int(count) > 0
        and period[:-1] in ("", *map(str, range(1, 61)))
        and period[-1:] in ("s", "m", "h", "d")
    ):
        raise ImproperlyConfigured(f"{name} must look like 10/m or 100/5m, got {value!r}")
    return value


TOKEN_FAILURE_RATE = env_rate("TOKEN_FAILURE_RATE", "20/m")
ANONYMOUS_PING_RATE = env_rate("ANONYMOUS_PING_RATE", "120/m")
# How long a web process trusts a token it verified (instances.services.tokens): a revocation
# made in another process applies within this many seconds. 0: look every token up each time.
INGEST_TOKEN_CACHE_SECONDS = env_int("INGEST_TOKEN_CACHE_SECONDS", 10, minimum=0)
RATELIMIT_USE_CACHE = "throttle"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    # plotly.js from the installed plotly package (no CDN, no drift), and only that file of it.
    "usage_portal.staticfinders.PlotlyFinder",
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

# Content-Security-Policy (django-csp): scripts and styles come from the portal's own static
# files only, so markup that slipped past escaping still cannot run script or load anything
# from elsewhere. The few inline styles needed (the standalone error page's, plotly.js's) are
# allowed by the hash of their exact text (usage_portal.contentpolicy). The JSON figures are
# <script type="application/json"> data blocks: never run, so no script-src exception.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [
            SELF,
            *contentpolicy.template_styles(BASE_DIR / "templates" / "standalone_error.html"),
            *contentpolicy.plotly_styles(),
        ],
        "img-src": [SELF, "data:"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    }
}
SILENCED_SYSTEM_CHECKS = env_list("SILENCED_SYSTEM_CHECKS")

LOG_FORMAT = os.environ.get("LOG_FORMAT", "").strip().lower() or "plain"
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, got {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # usage_portal.logs: the request id on every record; one JSON object a line when
    # LOG_FORMAT=json (python-json-logger), for a log pipeline that parses fields.
    "filters": {"request_id": {"()": "usage_portal.logs.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"},
        "json": {"()": "usage_portal.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # django-axes logs every sign-in at INFO; its failures and lockouts are warnings.
    "loggers": {"django.db.backends": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
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
            "BACKEND": "usage_portal.caches.RedisCache",
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
    ),
    # The brute-force counters (usage_portal.web.throttle): never turned off with the C360
    # cache, shared through Redis when there is one.
    "throttle": (
        {
            "BACKEND": "usage_portal.caches.RedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "usage-portal") + "-throttle",
            "OPTIONS": {
                "socket_connect_timeout": env_float("CACHE_SOCKET_TIMEOUT", 0.5),
                "socket_timeout": env_float("CACHE_SOCKET_TIMEOUT", 0.5),
            },
        }
        if CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "throttle"}
    ),
}
# django-ratelimit knows only the django-redis spelling of a Redis cache (W001), and calls an
# in-process cache unshared (E003): true of the development set-up, which has one web process.
SILENCED_SYSTEM_CHECKS += ["django_ratelimit.W001"] + (
    [] if CACHE_URL else ["django_ratelimit.E003"]
)

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
    # kombu's Redis transport with the portal's fixes: usage_portal.celery maps redis:// to it.
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
# Time limits: a task that hangs (a lock wait, a socket without a timeout) gives its worker slot
# back instead of holding it until a restart. The longest legitimate task is a rebuild of all
# monthly history (an upgrade's scheme change, set_scoring_scheme): one task over every
# account, ~13 accounts/s measured on PostgreSQL (~6 min for 5,000), hence 25 min. At the soft limit
# the task raises SoftTimeLimitExceeded (not retried; the chunks it committed stay); at the hard
# limit its process is killed and the message acknowledged, not redelivered. Both stay below
# Redis' visibility timeout, so a task still inside its limit is never delivered twice.
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 1500, minimum=1)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 1700, minimum=1)
if CELERY_TASK_SOFT_TIME_LIMIT >= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured(
        "CELERY_TASK_SOFT_TIME_LIMIT must be below CELERY_TASK_TIME_LIMIT (the task's own "
        "handling of the soft limit needs the time in between)"
    )
if REDIS_URL and CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] <= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured(
        "CELERY_TASK_TIME_LIMIT must be below BROKER_VISIBILITY_TIMEOUT: Redis would deliver a "
        "task that is still running to a second worker"
    )
CELERY_TASK_ROUTES = {
    "instances.tasks.purge_raw_payloads": {"queue": "ingest"},
    "accounts.tasks.*": {"queue": "ingest"},  # housekeeping, off the scoring queue
    "instances.tasks.*": {"queue": "scoring"},  # labeling rules: scores follow them
    "instances.labels.*": {"queue": "scoring"},
    # The full recompute's chunks queue apart: a worker consuming both queues takes from each in
    # turn, so a ping's refresh waits for one chunk task, not behind the 200 of a 50,000-account
    # book (the exact name wins over the pattern below).
    "scoring.tasks.recompute_chunk": {"queue": "recompute"},
    "scoring.tasks.*": {"queue": "scoring"},
}
CELERY_TASK_DEFAULT_QUEUE = "scoring"
# A refresh queued after a change waits this long, so a burst of changes to one account is
# refreshed once (scoring.listeners); the bench holds ping -> score p95 within 2 s.
REFRESH_COALESCE_SECONDS = env_float("REFRESH_COALESCE_SECONDS", 1.0)
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
        # Only rows this old: a younger one's task is most likely still on its way.
        "kwargs": {"older_than_seconds": env_int("REFRESH_SWEEP_MIN_AGE_SECONDS", 120, minimum=0)},
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
    "clear-expired-sessions": {  # Django never deletes an expired session by itself
        "task": "accounts.tasks.clear_expired_sessions",
        "schedule": crontab(hour=2, minute=45),
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

# --- Operations: health, metrics, logs (docs/operations.md) ---------------------------------

# A PostgreSQL that does not answer must cost a request (and /readyz) seconds, not the
# operating system's TCP timeout of minutes.
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env_int("DB_CONNECT_TIMEOUT", 5, minimum=1)
    )

# Probes and scrapers reach gunicorn over plain HTTP inside the network (a Kubernetes httpGet
# probe, Prometheus on the same host): a redirect to HTTPS would fail them all.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^-/metrics$"]
# The Prometheus endpoint (/-/metrics) answers 404 until one of these says who may scrape it:
# a bearer token, or the scraper's address (usage_portal.web.throttle.client_ip) in the list.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "").strip()
if METRICS_TOKEN and len(METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("METRICS_TOKEN must be at least 16 characters long")
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS")
for _network in METRICS_ALLOWED_IPS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"METRICS_ALLOWED_IPS: {_network!r} is not an address or a network"
        ) from exc
# gunicorn's workers each count their own requests; with this folder (the Procfile sets it)
# prometheus_client keeps the counts in files there and a scrape adds every worker's up. It
# must exist before the first metric is made, which is after the settings load.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
# Where the Celery worker touches a file at each heartbeat (every 2 s): a liveness probe for
# the worker reads its age. Empty: no file.
WORKER_HEARTBEAT_FILE = os.environ.get("WORKER_HEARTBEAT_FILE", "")

# Sentry: off unless SENTRY_DSN is set; no personal data is sent (usage_portal/sentry.py).
SENTRY_DSN = os.environ.get("SENTRY_DSN", "").strip()
if SENTRY_DSN:
    from usage_portal.sentry import sentry_start
    from usage_portal.version import portal_version

    sentry_start(
        dsn=SENTRY_DSN,
        environment=os.environ.get("SENTRY_ENVIRONMENT", ""),
        release=f"usage-portal@{portal_version()}",
        traces_sample_rate=env_float("SENTRY_TRACES_SAMPLE_RATE", 0.0),
    )
