"""Settings read from the environment; the defaults give the embedded setup.

Embedded default: SQLite, a Celery worker on a filesystem broker, local file storage.
Production: DATABASE_URL (PostgreSQL), CELERY_BROKER_URL (Redis), DJANGO_SECRET_KEY,
DJANGO_ALLOWED_HOSTS; see platform_core/settings_production.py.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import secrets
import sys
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, not {raw!r}") from exc


# Off unless asked for: the debug page shows settings and every URL to whoever hits an error.
DEBUG = env_bool("DJANGO_DEBUG", False)

# Loopback names for the embedded setup; a server others reach needs its name here.
ALLOWED_HOSTS = [
    h.strip()
    for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver").split(",")
    if h.strip()
]
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]

# Where the embedded setup keeps its database, broker folders, DICOM files and volume caches.
DATA_DIR = Path(os.environ.get("CURATECT_DATA_DIR", BASE_DIR / "var")).resolve()
MEDIA_ROOT = Path(os.environ.get("CURATECT_MEDIA_ROOT", DATA_DIR / "media")).resolve()
MEDIA_URL = "/media/"
DATA_DIR.mkdir(parents=True, exist_ok=True)

# The key the source code carried before keys were generated; only a data folder that was
# created with it keeps it (its pseudonyms and sealed PACS secrets depend on it).
_LEGACY_EMBEDDED_KEY = "embedded-development-key-not-for-production-use-0123456789abcdef"


def embedded_secret_key(data_dir: Path) -> str:
    """The embedded setup's secret key: made once per data folder, readable by its owner only.

    Production never gets here (settings_production demands DJANGO_SECRET_KEY). Web server,
    worker and listener start together, so the file is written under a temporary name and
    hard-linked into place: a link never overwrites, so every process ends up with one key.
    """
    path = data_dir / "secret_key"
    if not path.exists():
        legacy = (data_dir / "curatect.sqlite3").exists()
        key = _LEGACY_EMBEDDED_KEY if legacy else secrets.token_urlsafe(50)
        tmp = data_dir / f".secret_key.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(key + "\n")
        try:
            os.link(tmp, path)
            if legacy:
                print(
                    f"CurateCT: {data_dir} holds data made with the old built-in key; it is kept in "
                    f"{path}. Start a fresh data folder to get a random one.",
                    file=sys.stderr,
                )
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    key = path.read_text().strip()
    if not key:
        raise ImproperlyConfigured(f"{path} is empty: delete it to have a new key made")
    return key


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "") or embedded_secret_key(DATA_DIR)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "axes",
    "csp",
    "django_celery_results",
    "django_celery_beat",
    "core",
    "core.tokens",
    "imaging",
    "pacs",
    "annotation",
    "qc",
    "modelassist",
    "federation",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "platform_core.request_limits.RequestSizeLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # After WhiteNoise: static files need no policy, pages and API answers do.
    "csp.middleware.CSPMiddleware",
    "platform_core.security.NoStoreApiMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a lockout flagged during the request into the answer.
    "axes.middleware.AxesMiddleware",
]

# Per process, for small values that never go stale (the QC dashboard's Dice of two content-
# addressed label files): the default's 300 entries would be too few for a campaign's revisions.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "OPTIONS": {"MAX_ENTRIES": 200_000},
    }
}

ROOT_URLCONF = "platform_core.urls"
WSGI_APPLICATION = "platform_core.wsgi.application"
AUTH_USER_MODEL = "platform_core.User"
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

# Login throttling (django-axes), on the login form, the admin and DICOMweb Basic auth: ten wrong
# passwords lock that username from that address for a while. The pair, not the address alone:
# a ward's workstations often share one address behind a proxy.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("CURATECT_LOGIN_FAILURE_LIMIT", 10)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_COOLOFF_TIME = timedelta(minutes=env_int("CURATECT_LOGIN_LOCKOUT_MINUTES", 15))
# A locked-out person who keeps trying still gets in when the message said they would.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "platform_core.security.lockout_response"
AXES_VERBOSE = False  # no banner on every manage.py command; lockouts are still logged

# Sessions last a working shift; the CSRF cookie lives only as long as the browser session
# (never written to disk for a year on a shared workstation) and is rotated at login.
SESSION_COOKIE_AGE = env_int("CURATECT_SESSION_HOURS", 12) * 3600
CSRF_COOKIE_AGE = None
SESSION_COOKIE_HTTPONLY = True
CSRF_FAILURE_VIEW = "platform_core.security.csrf_failure"
# API tokens (platform_core/tokens) expire after at most this many days.
CURATECT_API_TOKEN_MAX_DAYS = env_int("CURATECT_API_TOKEN_MAX_DAYS", 365)

# Content-Security-Policy (django-csp): scripts only from this server, the Vite entry tags carry
# the request's nonce, and no inline script, handler or eval runs. Cornerstone compiles its
# WebAssembly codecs (JPEG-LS, JPEG 2000 from a PACS) inside its decode workers, which are static
# files without this policy, so the pages need no 'wasm-unsafe-eval' (a browser test decodes a
# JPEG-LS series under the policy). Workers are also made from blob: URLs.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF],
        "img-src": [SELF, "data:", "blob:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "worker-src": [SELF, "blob:"],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASE_URL = os.environ.get("DATABASE_URL", f"sqlite:///{DATA_DIR / 'curatect.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Django's defaults give "database is locked" at once with a web process and a worker
    # writing together; WAL + IMMEDIATE transactions + a wait fixed it (NOTES-backend).
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    # A file (not memory) so live servers and Celery workers in tests share it; one per
    # process so parallel test runs never delete each other's database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / f"test-{os.getpid()}.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(os.environ.get("CURATECT_STATIC_ROOT", DATA_DIR / "staticfiles"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on every request otherwise
STATICFILES_DIRS: list[Path] = []
# The Vite build writes here; Django pages load the bundle through its manifest.
FRONTEND_DIST = BASE_DIR / "frontend" / "dist"
if FRONTEND_DIST.exists():
    STATICFILES_DIRS.append(FRONTEND_DIST)
WHITENOISE_USE_FINDERS = True
# Vite names every built file by its content hash, so browsers may keep them for good.
WHITENOISE_IMMUTABLE_FILE_TEST = r"^/static/assets/.+-[0-9A-Za-z_-]{8}\.(?:js|css|wasm)$"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "core.tokens.auth.ApiTokenAuthentication",
        "core.tokens.auth.BearerApiTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "core.api_errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "CurateCT API",
    "DESCRIPTION": "Curated, quality-controlled chest CT lesion segmentation.",
    "VERSION": "0.1.0",
    # Several objects have a "status"; each gets its own named enum in the schema.
    "ENUM_NAME_OVERRIDES": {
        "BatchStatusEnum": "core.models.Batch.Status",
        # Imports, dataset exports and training runs share this lifecycle (modelassist JobStatus).
        "JobStatusEnum": "imaging.models.ImportJob.Status",
        "SendStatusEnum": "pacs.models.PacsSend.Status",
        "ApiTokenStatusEnum": ["active", "expired", "revoked"],
        "AnnotationStateEnum": "annotation.models.AnnotationState",
        "BatchReviewStateEnum": "qc.models.BatchReviewState",
        "ReviewVerdictEnum": "qc.models.Verdict",
        "BoardVerdictEnum": "qc.serializers.BOARD_VERDICTS",
        "FindingKindEnum": "qc.models.FindingKind",
        "PresegStatusEnum": "modelassist.models.PresegStatus",
        "PresegProgressStatusEnum": "modelassist.serializers.PRESEG_PROGRESS_STATUSES",
        "RegionKindEnum": "modelassist.serializers.REGION_KINDS",
        "TrainingTriggerEnum": "modelassist.models.TrainingTrigger",
        # Names the schema had before the QC and model-assist bodies joined it, kept stable.
        "TriggerEnum": "pacs.models.PacsSend.Trigger",
        "VerdictEnum": ["pass", "fail"],
        "FindingsSourceEnum": "qc.serializers.FINDINGS_SOURCES",
        "HolderRoleEnum": "qc.serializers.HOLDER_ROLES",
    },
}

# Celery. The embedded broker is a folder of files (no server); production uses Redis.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "atomicfs://localhost//")
CELERY_BROKER_FOLDER = DATA_DIR / "broker"
if CELERY_BROKER_URL.startswith(("atomicfs", "filesystem")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_FOLDER / "queue"),
        "data_folder_out": str(CELERY_BROKER_FOLDER / "queue"),
        "control_folder": str(CELERY_BROKER_FOLDER / "control"),
        "processed_folder": str(CELERY_BROKER_FOLDER / "processed"),
        "store_processed": False,
        "polling_interval": 0.1,
    }
    # kombu creates only the control folder; producers fail without the queue folder.
    for _key in ("data_folder_in", "control_folder", "processed_folder"):
        Path(CELERY_BROKER_TRANSPORT_OPTIONS[_key]).mkdir(parents=True, exist_ok=True)
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", "django-db")
CELERY_RESULT_EXTENDED = True
CELERY_TASK_TRACK_STARTED = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_STORE_EAGER_RESULT = True
CELERY_QUEUES_ALL = ("ingest", "assist", "train")
CELERY_TASK_DEFAULT_QUEUE = "ingest"
CELERY_TASK_ROUTES = {
    "imaging.*": {"queue": "ingest"},
    "pacs.*": {"queue": "ingest"},
    "annotation.*": {"queue": "assist"},
    "qc.*": {"queue": "assist"},
    "modelassist.tasks.preseg*": {"queue": "assist"},
    "modelassist.tasks.train*": {"queue": "train"},
    "modelassist.tasks.retrain*": {"queue": "train"},
    "modelassist.tasks.export*": {"queue": "train"},
    "federation.*": {"queue": "train"},
}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    # Query each institution's PACS for new CT studies matching its filter.
    "pacs-pull": {"task": "pacs.tasks.pull_periodic", "schedule": 300.0},
    # Send curated labels of newly approved batches back where the institution asked for it.
    "pacs-send-approved": {"task": "modelassist.pacs_send.send_approved_sweep", "schedule": 120.0},
    # End the jobs running past their kind's limit (a crashed listener's or STOW's import) without
    # waiting for a worker to start (core.jobs.services.jobs_sweep_stale).
    "jobs-sweep-stale": {"task": "core.tasks.jobs_sweep_stale", "schedule": 600.0},
}
# Campaign (slug) that scans arriving from a PACS (C-STORE, STOW-RS, pulls) without one join,
# when the receiving institution owns it or shares in it. Empty: they wait unassigned.
CURATECT_INTAKE_CAMPAIGN = os.environ.get("CURATECT_INTAKE_CAMPAIGN", "")
# The AE title CurateCT sends from (C-STORE of SEGs back to a PACS).
CURATECT_AE_TITLE = os.environ.get("CURATECT_AE_TITLE", "CURATECT")

# Ingest limits: archives larger than this are refused before unpacking.
INGEST_MAX_ARCHIVE_BYTES = env_int("CURATECT_INGEST_MAX_ARCHIVE_BYTES", 4 * 1024**3)
INGEST_MAX_UPLOAD_BYTES = env_int("CURATECT_INGEST_MAX_UPLOAD_BYTES", 2 * 1024**3)
# Processes that read and pseudonymise files in parallel during an import.
INGEST_WORKERS = env_int("CURATECT_INGEST_WORKERS", os.cpu_count() or 1)
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 8 * 1024 * 1024
# A retraining run decides promotion only on at least this many test cases of its export.
CURATECT_MIN_TEST_CASES = env_int("CURATECT_MIN_TEST_CASES", 5)
# lungmask LTRCLobes weights file the hospital supplies (never downloaded); empty: zones, 0-30.
CURATECT_LOBE_MODEL = os.environ.get("CURATECT_LOBE_MODEL", "").strip()
# Bytes of decoded volumes kept warm per process for region growing and pre-segmentation.
VOLUME_CACHE_BYTES = env_int("CURATECT_VOLUME_CACHE_BYTES", 1024**3)
# Bytes of head label volumes kept decoded per process, so a box save edits the warm head
# instead of decoding it (annotation/storage.py). Both caches should hold one scan per annotator
# at work at once (a 512×512×200 scan: 105 MB of HU, 52 MB of labels), or every click and save
# of a busy reading room misses (bench/load.py measured it).
LABEL_CACHE_BYTES = env_int("CURATECT_LABEL_CACHE_BYTES", 512 * 1024**2)
# Key for the keyed hashes that remap UIDs and pick per-patient date shifts. Changing it
# breaks the "same patient, same pseudonym" promise, so production must set and keep it.
PSEUDONYM_KEY = os.environ.get("CURATECT_PSEUDONYM_KEY", SECRET_KEY)
# Fernet keys that seal stored secrets (a PACS's password or token; platform_core/sealing.py),
# comma-separated: the first seals, all unseal, so a key is rotated by putting a new one first.
# Unset, development derives one from SECRET_KEY; production must set it (settings_production).
_derived_sealing_key = hmac.digest(SECRET_KEY.encode(), b"curatect-sealing-key-v1", "sha256")
CURATECT_SEALING_KEYS = [
    k.strip() for k in os.environ.get("CURATECT_SEALING_KEYS", "").split(",") if k.strip()
] or [base64.urlsafe_b64encode(_derived_sealing_key).decode("ascii")]
for _n, _key in enumerate(CURATECT_SEALING_KEYS, 1):
    try:
        _ok = len(base64.urlsafe_b64decode(_key.encode("ascii"))) == 32
    except (binascii.Error, UnicodeError, ValueError):
        _ok = False
    if not _ok:  # the message names the position, never the key
        raise ImproperlyConfigured(
            f"CURATECT_SEALING_KEYS must be comma-separated Fernet keys (32 url-safe base64-encoded "
            f"bytes); key {_n} of {len(CURATECT_SEALING_KEYS)} is not one"
        )

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("CURATECT_LOG_LEVEL", "INFO")},
}

# Higher layers grant reviewers read access to the scans they review (see selectors).
# STOW-RS is served by the one DICOMweb server (imaging) but stores through the PACS app.
CURATECT_STOW_HANDLER = "pacs.stow.store_instances"
CURATECT_SCAN_ACCESS_HOOKS = ["qc.selectors.scans_under_review_by"]
# Each app's generator of the files its rows own under MEDIA_ROOT (manage.py verify_storage).
CURATECT_STORED_FILES = [
    "imaging.stored_files.stored_files",
    "annotation.stored_files.stored_files",
    "modelassist.stored_files.stored_files",
]
