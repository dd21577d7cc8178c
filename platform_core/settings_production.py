"""Production settings: the base settings with DEBUG off and the deployment hardening on.

DJANGO_SETTINGS_MODULE=platform_core.settings_production. Passes `manage.py check --deploy`.
Served over HTTPS, usually behind a TLS-terminating proxy: set DJANGO_SECURE_PROXY_SSL_HEADER=true
when that proxy sets X-Forwarded-Proto (and strips it from clients), or Django will think every
request is plain HTTP and redirect forever.
"""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured

# settings.py reads DJANGO_DEBUG at import time, so the default must be in the environment
# before the star import.
os.environ.setdefault("DJANGO_DEBUG", "false")
# Checked before the import too: the base settings would otherwise make a key of their own in the
# data folder (the embedded setup's convenience), and production keys come from the environment.
if not os.environ.get("DJANGO_SECRET_KEY"):
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set in production")

from platform_core.settings import *  # noqa: F403
from platform_core.settings import DATABASES, env_bool, env_int

if DEBUG:  # noqa: F405
    raise ImproperlyConfigured("platform_core.settings_production runs with DJANGO_DEBUG=false only")

# The base settings fall back to SECRET_KEY for the pseudonym key. In production that would tie
# every pseudonymised UID to the web secret, so rotating the secret would silently break the
# "same patient, same pseudonym" promise: refuse to start instead.
if not os.environ.get("CURATECT_PSEUDONYM_KEY"):
    raise ImproperlyConfigured(
        "CURATECT_PSEUDONYM_KEY must be set in production (and kept: see .env.example)"
    )

# The base settings derive a sealing key from SECRET_KEY. In production that would tie every
# stored PACS password or token to the web secret (rotating it would make them unreadable), and
# anyone with the secret could unseal them: refuse to start instead.
if not any(k.strip() for k in os.environ.get("CURATECT_SEALING_KEYS", "").split(",")):
    raise ImproperlyConfigured("CURATECT_SEALING_KEYS must be set in production (and kept: see .env.example)")

# HTTPS everywhere. Behind a TLS proxy, trust its X-Forwarded-Proto header only when told to.
if env_bool("DJANGO_SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
# The header alone submits nothing; it only makes a later preload-list submission possible.
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# Off only for a plain-HTTP loopback stack (bench/load.py drives gunicorn without TLS, and a
# client never sends a Secure cookie over http://); never off on a server others reach.
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# The viewer is never framed; clickjacking a segmentation tool would forge annotations.
X_FRAME_OPTIONS = "DENY"
CONTENT_SECURITY_POLICY["DIRECTIVES"]["upgrade-insecure-requests"] = True  # noqa: F405

# Login throttling counts wrong passwords per username and client address. Behind a proxy every
# client has the proxy's address, so name how many proxies stand in front to read the client's
# from X-Forwarded-For (only trustworthy when those proxies overwrite it).
if _proxies := env_int("CURATECT_TRUSTED_PROXY_COUNT", 0):
    AXES_IPWARE_PROXY_COUNT = _proxies
    AXES_IPWARE_META_PRECEDENCE_ORDER = ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR")

# Long-lived PostgreSQL connections survive a database restart only if checked before use.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

# Redis hands an unacknowledged task to another worker after the visibility timeout. With
# acks_late, a training or ingest task running longer than that would run twice at once, so the
# timeout must exceed the longest task's hard time limit.
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):  # noqa: F405
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env_int("CURATECT_CELERY_VISIBILITY_TIMEOUT", 12 * 3600),
    }
