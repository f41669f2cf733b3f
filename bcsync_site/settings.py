"""bcsync settings: everything comes from the environment (django-environ), with embedded defaults
that need no server: a SQLite file under var/ and django-q2's ORM broker on it."""

import base64
import os
import secrets
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("BCSYNC_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")


def _local_secret_key() -> str:
    # A key generated once per checkout; several hosts must share SECRET_KEY from the environment.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = env.str("SECRET_KEY", default="") or _local_secret_key()
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_q",
    "health_check",
    "import_export",
    "contacts",
    "exchange_sync",
    "health",
    "harness",  # dev-only: the soak_sync and bench_sync commands
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves collectstatic's files itself, so the admin has its CSS under gunicorn with DEBUG off.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "bcsync_site.urls"
WSGI_APPLICATION = "bcsync_site.wsgi.application"

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
            ],
        },
    },
]

# An empty value (as .env.example ships it) means the default, as for SECRET_KEY.
# Lower case: not a setting, so its password never shows among them.
database_url = env.str("DATABASE_URL", default="") or f"sqlite:///{VAR_DIR / 'bcsync.sqlite3'}"
DATABASES = {"default": env.db_url_config(database_url)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # One writer at a time: take the write lock at BEGIN and wait for it, instead of failing with
    # "database is locked" when a read transaction upgrades (Django's default is DEFERRED).
    # WAL lets readers go on while one process writes; bcsync_site.sqlite3 turns it on once per file.
    DATABASES["default"]["ENGINE"] = "bcsync_site.sqlite3"
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA synchronous=NORMAL;",
    }
    # A file, not :memory:, so tests see the same locking as the app and other processes can open it;
    # one per test process, so concurrent test runs never share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test_bcsync_{os.getpid()}.sqlite3")}
else:
    # One persistent connection per process (every qcluster worker, pusher, monitor and the web
    # workers), re-checked before reuse: connections per host = processes, see README.
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
FORMAT_MODULE_PATH = ["bcsync_site.formats"]
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.str("STATIC_ROOT", default="") or str(VAR_DIR / "static")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed, compressed copies: browsers may cache them for ever. Needs collectstatic's manifest
    # whenever DEBUG is off; with DEBUG on (make run) pages name the source files.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    # django-q2's ORM broker keeps each cluster's heartbeat in this cache; in the database, so the
    # health endpoint of every web process (and qinfo) sees the workers of every host.
    "django_q": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "django_q_cache"},
}

LOGIN_URL = "admin:login"

SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_TLS_PROXY", default=False) else None
)
# Load balancers probe over plain HTTP, without the proxy's X-Forwarded-Proto; a redirect would
# read as a failure.
SECURE_REDIRECT_EXEMPT = [r"^health/$"]

# Microsoft 365. With M365_EMULATOR_URL set, sign-in and Graph traffic go to the local emulator;
# the code still names Microsoft's own URLs.
M365_TENANT_ID = env.str("M365_TENANT_ID", default="")
M365_CLIENT_ID = env.str("M365_CLIENT_ID", default="")
M365_CLIENT_SECRET = env.str("M365_CLIENT_SECRET", default="")
M365_EMULATOR_URL = env.str("M365_EMULATOR_URL", default="")
# Outlook's request limit per app and mailbox (every request inside a $batch counts); runs pace
# themselves to 90 % of it, shared by every host through the database (exchange_sync.graph.budget);
# 0 turns pacing off.
GRAPH_MAILBOX_BUDGET = env.int("GRAPH_MAILBOX_BUDGET", default=10_000)
GRAPH_MAILBOX_WINDOW_S = env.float("GRAPH_MAILBOX_WINDOW_S", default=600.0)
# App mode with a certificate instead of the secret: a PEM file holding the private key and the certificate.
M365_CLIENT_CERTIFICATE = env.str("M365_CLIENT_CERTIFICATE", default="")
# "app": the application permission reaches every mailbox (or those RBAC for Applications allows);
# "delegated": each user connects their own mailbox and the app holds their refresh token.
M365_AUTH_MODE = env.str("M365_AUTH_MODE", default="") or "app"
if M365_AUTH_MODE not in ("app", "delegated"):
    raise ImproperlyConfigured(f"M365_AUTH_MODE must be app or delegated, not {M365_AUTH_MODE!r}.")
# The delegated sign-in's callback as registered in the app registration; unset = this site's own
# address as the browser reached it, with the callback's path.
M365_REDIRECT_URI = env.str("M365_REDIRECT_URI", default="")
# Fernet keys (comma-separated, newest first) that encrypt the stored token caches in delegated mode.
# Not SECRET_KEY: rotating one must not make the other's data unreadable.
TOKEN_ENCRYPTION_KEYS = env.list("TOKEN_ENCRYPTION_KEYS", default=[])


def _local_token_encryption_key() -> str:
    # make run only (DEBUG): a key generated once per checkout, as for SECRET_KEY. A deployment
    # must give its keys from the environment, kept apart from the database and its backups.
    path = VAR_DIR / "token_encryption_key"
    if not path.exists():
        path.write_text(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
        path.chmod(0o600)
    return path.read_text().strip()


if M365_AUTH_MODE == "delegated" and not TOKEN_ENCRYPTION_KEYS and DEBUG:
    TOKEN_ENCRYPTION_KEYS = [_local_token_encryption_key()]
if M365_AUTH_MODE == "delegated" and not TOKEN_ENCRYPTION_KEYS:
    raise ImproperlyConfigured(
        "M365_AUTH_MODE=delegated needs TOKEN_ENCRYPTION_KEYS: one or more Fernet keys, newest first, "
        "from python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'."
    )

# Contact sync
BACKGROUND_SYNC_POLICY = env.str("BACKGROUND_SYNC_POLICY", default="allow")  # "allow" or "legacy"
SYNC_CLAIM_STALE_SECONDS = env.int("SYNC_CLAIM_STALE_SECONDS", default=600)
# Activity Log entries and Sync Runs older than this are removed daily (services.retention).
SYNC_LOG_RETENTION_DAYS = env.int("SYNC_LOG_RETENTION_DAYS", default=90)

# Alert emails (exchange_sync.services.alerts). EMAIL_URL is a django-environ email URL, e.g.
# smtp+tls://user:password@smtp.example.com:587; the embedded default prints them on the console.
vars().update(env.email_url_config(env.str("EMAIL_URL", default="") or "consolemail://"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="bcsync <bcsync@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Where people open the admin; the links in alert emails start with it.
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000")
# Live updates: the address Microsoft 365 POSTs change notifications to (https; plain http only for
# 127.0.0.1/localhost, which the local emulator accepts). Empty: live updates off, polling only.
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="")
# A live run that ends while changes still arrive waits until none came for SETTLE seconds (at most
# SETTLE_MAX) before its one trailing run, so a burst of edits costs each user two runs.
LIVE_SYNC_SETTLE_SECONDS = env.float("LIVE_SYNC_SETTLE_SECONDS", default=5.0)
LIVE_SYNC_SETTLE_MAX_SECONDS = env.float("LIVE_SYNC_SETTLE_MAX_SECONDS", default=60.0)

# Contacts import and export: importing creates contacts, so it needs "Can add contact" (administrators;
# the Salesperson group has view and change only); exporting needs "Can view contact".
IMPORT_EXPORT_IMPORT_PERMISSION_CODE = "add"
IMPORT_EXPORT_EXPORT_PERMISSION_CODE = "view"

Q_TIMEOUT = env.int("Q_TIMEOUT", default=3600)
# A sync run stops between batches after this long and goes on in a new task (a slice of the same
# run), so that Q_TIMEOUT never kills it; the margin covers reading and planning, which are not cut.
SYNC_SLICE_SECONDS = env.int("SYNC_SLICE_SECONDS", default=max(30, Q_TIMEOUT - max(120, Q_TIMEOUT // 5)))
Q_CLUSTER = {
    "name": "bcsync",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": Q_TIMEOUT,
    # An unacknowledged task (its worker died) is delivered again after this.
    "retry": env.int("Q_RETRY", default=Q_TIMEOUT + 120),
    "max_attempts": 1,
    "catch_up": False,
    "queue_limit": 4,
    "bulk": 1,
    "save_limit": 500,
    "poll": 0.5,
    "sync": env.bool("Q_SYNC", default=False),
    "label": "Django Q",
    "cache": "django_q",
    # `Q_CLUSTER_NAME=interactive manage.py qcluster` serves the runs people ask for (Sync buttons,
    # admin actions, commands); the default cluster serves the passes and runs every Schedule.
    "ALT_CLUSTERS": {
        "interactive": {"workers": env.int("Q_INTERACTIVE_WORKERS", default=1), "scheduler": False},
    },
}
# Where a person's run is queued; empty: the default cluster (a single cluster serves everything).
Q_INTERACTIVE_CLUSTER = env.str("Q_INTERACTIVE_CLUSTER", default="interactive")
if env.str("Q_REDIS_URL", default=""):
    Q_CLUSTER["redis"] = env.str("Q_REDIS_URL")
else:
    Q_CLUSTER["orm"] = "default"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # At DEBUG, Django logs every missing template variable with the whole template context,
        # which holds the page's CSRF token and the user's messages (tests/test_secrets.py).
        "django.template": {"level": "INFO"},
    },
}
