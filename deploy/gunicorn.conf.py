"""gunicorn settings of CurateCT's two web pools (docker-compose.yml `web` and `web-dicomweb`,
bench/load.py the same): `gunicorn -c deploy/gunicorn.conf.py platform_core.wsgi:application`.

CURATECT_WEB_POOL names the pool (issue #16 §1: grow and save requests queued behind frame
requests when one process served both):
- `api` (default): the API, pages and static files. One process with threads, because the decoded
  CT volumes (imaging/volume_cache.py) and head label volumes (annotation/storage.py) are cached per
  process: a second process would decode every scan again and split the clicks of one annotator
  between two cold caches. Scale with threads, or with replicas that the router feeds by scan
  (docker-compose.yml runs two: web, web-2; deploy/nginx routes every request about a scan to one).
- `dicomweb`: WADO-RS frames and metadata behind the router's /dicomweb/ (deploy/nginx). Its
  requests read files and copy bytes; any number of processes works, its caches are small.

CURATECT_WEB_BIND (default 0.0.0.0:8000), CURATECT_WEB_THREADS and CURATECT_WEB_WORKERS override.
"""

from __future__ import annotations

import os

_POOLS = {"api": {"threads": 8, "workers": 1}, "dicomweb": {"threads": 8, "workers": 1}}
pool = os.environ.get("CURATECT_WEB_POOL", "api")
if pool not in _POOLS:
    raise SystemExit(f"CURATECT_WEB_POOL must be one of {sorted(_POOLS)}, not {pool!r}")

bind = [os.environ.get("CURATECT_WEB_BIND", "0.0.0.0:8000")]
worker_class = "gthread"
workers = int(os.environ.get("CURATECT_WEB_WORKERS", _POOLS[pool]["workers"]))
threads = int(os.environ.get("CURATECT_WEB_THREADS", _POOLS[pool]["threads"]))
timeout = 120
graceful_timeout = 30
# Longer than the router's 60 s idle upstream connections and any person's pause: with gunicorn's
# 2 s, a save sent on a connection the server was closing failed (a POST is never retried).
keepalive = 75
accesslog = "-"
proc_name = f"curatect-{pool}"
