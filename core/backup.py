"""Backup and restore of one CurateCT site: the database, the stored files, the embedded key.

A backup folder holds
- database.sqlite3 (SQLite's online backup API: a consistent copy while the platform runs) or
  database.pgdump (pg_dump -Fc, one consistent snapshot);
- media/: a copy of MEDIA_ROOT (scans, label blobs, exports, model weights), temporary names
  (starting with ".") left out;
- secret_key: the embedded setup's key, when the site uses one (pseudonyms, date shifts and
  sealed PACS secrets depend on it); a production key from the environment is the operator's
  to keep;
- manifest.json: what the backup is and the sha256 of every other file in it.

The database is copied first, then the files. Stored files are written before the rows that
point to them are committed and are never rewritten, so every row of the copy finds its file;
a file written after the database copy comes along as an orphan (verify_storage lists it).

A restore checks every file of the backup against its manifest before it touches anything, and
goes only into an empty database (no tables) and an empty MEDIA_ROOT.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

from core.storage_check import file_sha256

FORMAT = "curatect-backup/1"
MANIFEST = "manifest.json"
MEDIA = "media"
SECRET_KEY_FILE = "secret_key"
DATABASE_FILES = {"sqlite": "database.sqlite3", "postgresql": "database.pgdump"}


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says what to change."""


def backup_create(target: Path) -> dict[str, Any]:
    """Write a backup of this site into `target` (absent or an empty folder). Returns the manifest."""
    target = Path(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BackupError(f"{target} is not an empty folder: give a new or empty folder for the backup")
    vendor = connection.vendor
    if vendor not in DATABASE_FILES:
        raise BackupError(f"backing up a {vendor} database is not supported (SQLite and PostgreSQL are)")
    target.mkdir(parents=True, exist_ok=True)
    try:
        files: dict[str, str] = {}
        db_file = target / DATABASE_FILES[vendor]
        if vendor == "sqlite":
            _sqlite_backup(db_file)
        else:
            _pg_dump(db_file)
        files[db_file.name] = file_sha256(db_file)
        files.update(_copy_media(Path(settings.MEDIA_ROOT), target / MEDIA))
        key_file = Path(settings.DATA_DIR) / SECRET_KEY_FILE
        if key_file.is_file() and key_file.read_text().strip() == settings.SECRET_KEY:
            shutil.copyfile(key_file, target / SECRET_KEY_FILE)
            os.chmod(target / SECRET_KEY_FILE, 0o600)
            files[SECRET_KEY_FILE] = file_sha256(target / SECRET_KEY_FILE)
        manifest = {
            "format": FORMAT,
            "created_at": dt.datetime.now(dt.UTC).isoformat(),
            "database": {"vendor": vendor, "file": db_file.name},
            "media_root": str(settings.MEDIA_ROOT),
            "files": dict(sorted(files.items())),
        }
        (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)  # a half-written backup is no backup
        raise
    return manifest


def backup_restore(source: Path) -> dict[str, Any]:
    """Restore the backup in `source` into this site's (empty) database and MEDIA_ROOT."""
    manifest = backup_verify(Path(source))
    vendor = manifest["database"]["vendor"]
    if vendor != connection.vendor:
        raise BackupError(f"the backup holds a {vendor} database; this site uses {connection.vendor}")
    media_root = Path(settings.MEDIA_ROOT)
    if media_root.exists() and any(p.is_file() for p in media_root.rglob("*")):
        raise BackupError(f"MEDIA_ROOT {media_root} is not empty: restore into an empty data folder")
    tables = connection.introspection.table_names()
    if tables:
        raise BackupError(
            f"the database already has {len(tables)} tables: restore into a new, empty database"
        )
    db_file = Path(source) / manifest["database"]["file"]
    if vendor == "sqlite":
        _sqlite_restore(db_file)
    else:
        _pg_restore(db_file)
    if (Path(source) / MEDIA).is_dir():
        shutil.copytree(Path(source) / MEDIA, media_root, dirs_exist_ok=True)
    if SECRET_KEY_FILE in manifest["files"]:
        _put_secret_key(Path(source) / SECRET_KEY_FILE)
    return manifest


def backup_verify(source: Path) -> dict[str, Any]:
    """The backup's manifest, once every file it lists is there with its sha256."""
    try:
        manifest = json.loads((source / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"{source} holds no readable {MANIFEST}: not a CurateCT backup ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{source / MANIFEST} is not a {FORMAT} manifest")
    for rel, sha in manifest["files"].items():
        path = source / rel
        if not path.is_file():
            raise BackupError(f"the backup is incomplete: {rel} is missing")
        if file_sha256(path) != sha:
            raise BackupError(f"the backup is damaged: {rel} does not match its sha256 in the manifest")
    return manifest


# ----------------------------------------------------------------------------- database


def _sqlite_backup(dest: Path) -> None:
    connection.ensure_connection()
    out = sqlite3.connect(dest)
    try:
        connection.connection.backup(out)
    finally:
        out.close()


def _sqlite_restore(db_file: Path) -> None:
    name = Path(connection.settings_dict["NAME"])
    connection.close()  # the introspection above opened it; SQLite's backup writes the file itself
    name.parent.mkdir(parents=True, exist_ok=True)
    src, dst = sqlite3.connect(db_file), sqlite3.connect(name)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def _pg_env() -> tuple[list[str], dict[str, str]]:
    s = connection.settings_dict
    args = ["--dbname", s["NAME"]]
    if s.get("HOST"):
        args += ["--host", str(s["HOST"])]
    if s.get("PORT"):
        args += ["--port", str(s["PORT"])]
    if s.get("USER"):
        args += ["--username", str(s["USER"])]
    env = {**os.environ}
    if s.get("PASSWORD"):
        env["PGPASSWORD"] = str(s["PASSWORD"])  # never on the command line, where ps shows it
    return args, env


def _run_pg(tool: str, args: list[str], env: dict[str, str]) -> None:
    try:
        done = subprocess.run([tool, *args], env=env, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise BackupError(
            f"{tool} not found: install the PostgreSQL client tools (Debian: postgresql-client)"
        ) from exc
    if done.returncode != 0:
        raise BackupError(f"{tool} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")


def _pg_dump(dest: Path) -> None:
    args, env = _pg_env()
    _run_pg("pg_dump", ["--format=custom", "--no-owner", "--file", str(dest), *args], env)


def _pg_restore(db_file: Path) -> None:
    args, env = _pg_env()
    connection.close()
    _run_pg("pg_restore", ["--no-owner", "--no-privileges", "--exit-on-error", *args, str(db_file)], env)


# ----------------------------------------------------------------------------- files


def _copy_media(root: Path, dest: Path) -> dict[str, str]:
    """Copy MEDIA_ROOT, hashing while copying; temporary names (".") are work in progress."""
    files: dict[str, str] = {}
    if not root.is_dir():
        return files
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(n for n in names if not n.startswith(".")):
            src = Path(folder) / name
            rel = src.relative_to(root)
            out = dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, out)
            files[f"{MEDIA}/{rel.as_posix()}"] = file_sha256(out)
    return files


def _put_secret_key(src: Path) -> None:
    data_dir = Path(settings.DATA_DIR)
    data_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=".secret_key.")
    with os.fdopen(fd, "w") as out:
        out.write(src.read_text())
    os.chmod(tmp, 0o600)
    os.replace(tmp, data_dir / SECRET_KEY_FILE)
