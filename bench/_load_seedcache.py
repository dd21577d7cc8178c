"""The seeded reading room of bench/load.py, kept between runs under var/cache/bench-load/.

Seeding 40 scans of 512×512×200 runs the real import (8,000 slices pseudonymised, checked, stored,
volumes built) and the baseline pre-segmentation of every scan: minutes on a quiet machine, over
30 on a busy one, and it is not what the bench measures. So the seeded state is kept once made:
a pg_dump of the database, the data folder as hard links (nothing is copied; the files are
immutable once written: blobs, volumes and caches are written to a temporary name and renamed),
plan.json, and a manifest of every file's size and mtime. A run restores it into its throwaway
PostgreSQL and work folder; anything it writes is a new file, so the cache stays as made.

The key covers what shapes the seeded state: the cast and scan sizes, every migration, the seed
code, the phantom generator and the import. Anything else changing (a view, a service) changes
what is measured, not what is seeded. A manifest mismatch (a file changed in place or removed)
discards the entry and seeds afresh; CURATECT_LOAD_SEED_CACHE=0 never uses or writes the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "var" / "cache" / "bench-load"
KEY_GLOBS = (
    "*/migrations/*.py",
    "bench/_load_django.py",
    "demo/phantom.py",
    "imaging/ingest/**/*.py",
    "imaging/pseudonymise.py",
)


def enabled() -> bool:
    return os.environ.get("CURATECT_LOAD_SEED_CACHE", "1") != "0"


def cache_key(params: dict) -> str:
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    files = sorted({p for pattern in KEY_GLOBS for p in ROOT.glob(pattern) if ".venv" not in p.parts})
    for path in files:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:20]


def _pg_bin(tool: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{tool}"), key=lambda p: int(p.parts[-3]))
    return str(found[-1]) if found else tool


def _manifest(data: Path) -> dict[str, list[int]]:
    out = {}
    for path in data.rglob("*"):
        if path.is_file() and not path.is_symlink():
            st = path.stat()
            out[str(path.relative_to(data))] = [st.st_size, st.st_mtime_ns]
    return out


def _link(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system: a copy (slower, same result)
        shutil.copy2(src, dst)


def _link_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, copy_function=_link, symlinks=True)


def restore(key: str, work: Path, env: dict[str, str]) -> bool:
    """Restore the entry `key` into work/data, work/plan.json and the database; False on a miss."""
    entry = CACHE / key
    if not enabled() or not (entry / "manifest.json").exists():
        return False
    manifest = json.loads((entry / "manifest.json").read_text())
    if _manifest(entry / "data") != manifest:
        shutil.rmtree(entry, ignore_errors=True)  # changed in place or lost files: seed afresh
        return False
    done = subprocess.run(
        [_pg_bin("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error", "-d",
         env["DATABASE_URL"], str(entry / "db.dump")],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"error: pg_restore of the seed cache failed:\n{done.stderr[-2000:]}")
    shutil.rmtree(work / "data", ignore_errors=True)
    _link_tree(entry / "data", work / "data")
    shutil.copy(entry / "plan.json", work / "plan.json")
    return True


def save(key: str, params: dict, work: Path, env: dict[str, str]) -> None:
    """Keep the freshly seeded state (the database must be idle), replacing older entries of the
    same cast and sizes."""
    if not enabled():
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = CACHE / f".{key}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    done = subprocess.run(
        [_pg_bin("pg_dump"), "-Fc", "-f", str(tmp / "db.dump"), env["DATABASE_URL"]],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    if done.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SystemExit(f"error: pg_dump for the seed cache failed:\n{done.stderr[-2000:]}")
    _link_tree(work / "data", tmp / "data")
    shutil.copy(work / "plan.json", tmp / "plan.json")
    (tmp / "manifest.json").write_text(json.dumps(_manifest(tmp / "data")))
    (tmp / "params.json").write_text(json.dumps(params, sort_keys=True))
    # Older code's entries of these sizes go: each holds ~8 GB of scans at full size.
    for old in CACHE.iterdir():
        stale = old / "params.json"
        if old != tmp and (not stale.exists() or json.loads(stale.read_text()) == params):
            shutil.rmtree(old, ignore_errors=True)
    tmp.rename(CACHE / key)
