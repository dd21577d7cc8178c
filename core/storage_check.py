"""Is the stored data intact? Every file a row points to exists and matches the row's sha256, and
every file under MEDIA_ROOT belongs to a row.

Core knows no app above it, so it does not know which rows own files: each app lists its own in a
`stored_files()` generator named by dotted path in settings.CURATECT_STORED_FILES (as the scan
access hooks are). A generator yields StoredFile entries (a path and how to check it) and may
claim a whole folder it cannot list file by file (an export whose manifest is unreadable), so
that nothing a row owns is ever called an orphan.

Only MEDIA_ROOT holds the platform's stored data (scans, label blobs, exports, model weights).
The rest of DATA_DIR is runtime or work space that is safe to lose or is rebuilt: the broker's
folders, caches, uploads and unpacked archives, the PACS spool, test data, static files; the
database and the embedded secret key are backed up by `manage.py backup`, not checked here.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.utils.module_loading import import_string

Digest = Callable[[Path], str]
# Names starting with "." are the platform's temporary names (staging folders of an import, a
# half-written export, an upload): an import may keep one for hours, so such an orphan gets a
# day before --delete-orphans may take it.
TEMPORARY_GRACE_S = 24 * 3600.0


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class StoredFile:
    """A file a row owns. `sha256` empty: the row holds no hash of it (existence only).
    `digest` says how the row's hash was made (default: of the whole file). `required` False:
    a derived cache the owner may lack; its absence is no problem."""

    path: str  # relative to MEDIA_ROOT, with "/"
    owner: str  # the row, for a person: "scan 12", "revision 5"
    sha256: str = ""
    digest: Digest = file_sha256
    required: bool = True


@dataclass(frozen=True)
class StoredFolder:
    """A folder a row owns whole (used when its files cannot be listed one by one)."""

    path: str
    owner: str


@dataclass(frozen=True)
class Problem:
    kind: str  # missing | mismatch | unreadable | orphan
    path: str
    owner: str = ""
    detail: str = ""
    recent: bool = False  # an orphan younger than the grace period: maybe a write in progress

    def line(self) -> str:
        owner = f" ({self.owner})" if self.owner else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.kind.upper()} {self.path}{owner}{detail}"


@dataclass
class StorageReport:
    root: Path
    checked: int = 0  # files of rows found and checked
    hashed: int = 0  # of them, compared against a stored sha256
    problems: list[Problem] = field(default_factory=list)

    def of_kind(self, *kinds: str) -> list[Problem]:
        return [p for p in self.problems if p.kind in kinds]

    @property
    def damaged(self) -> list[Problem]:
        """What makes the check fail: a row's file missing, different or unreadable."""
        return self.of_kind("missing", "mismatch", "unreadable")

    @property
    def orphans(self) -> list[Problem]:
        return self.of_kind("orphan")

    def summary(self) -> str:
        counts = {k: len(self.of_kind(k)) for k in ("missing", "mismatch", "unreadable", "orphan")}
        recent = sum(p.recent for p in self.orphans)
        return (
            f"{self.checked} stored files checked ({self.hashed} against their sha256) under {self.root}: "
            f"{counts['missing']} missing, {counts['mismatch']} mismatched, {counts['unreadable']} unreadable, "
            f"{counts['orphan']} orphans" + (f" ({recent} recent, kept)" if recent else "")
        )


def stored_entries() -> Iterator[StoredFile | StoredFolder]:
    """Everything the installed apps' rows say is stored (settings.CURATECT_STORED_FILES)."""
    for dotted in getattr(settings, "CURATECT_STORED_FILES", []):
        yield from import_string(dotted)()


def storage_check(
    *, grace_s: float = 3600.0, entries: Iterable[StoredFile | StoredFolder] | None = None
) -> StorageReport:
    """Check every stored file against its row and list the files no row owns.

    The disk is listed before the rows are read: a file written and committed in between is
    then owned, and one whose row is not committed yet is an orphan younger than `grace_s`
    (reported as recent, never deleted).
    """
    root = Path(settings.MEDIA_ROOT)
    on_disk = _files_under(root)
    report = StorageReport(root=root)
    wanted: dict[str, list[StoredFile]] = {}
    folders: list[StoredFolder] = []
    for entry in stored_entries() if entries is None else entries:
        if isinstance(entry, StoredFolder):
            folders.append(entry)
        else:
            wanted.setdefault(_normal(entry.path), []).append(entry)
    for rel, claims in sorted(wanted.items()):
        _check_one(root, rel, claims, report)
    owned = set(wanted) | {rel for rel in on_disk if _under_any(rel, folders)}
    now = time.time()
    for rel in sorted(on_disk - owned):
        temporary = any(part.startswith(".") for part in PurePosixPath(rel).parts)
        limit = max(grace_s, TEMPORARY_GRACE_S) if temporary else grace_s
        recent = now - _mtime(root / rel, now) < limit
        report.problems.append(Problem("orphan", rel, detail="no row owns it", recent=recent))
    return report


def storage_orphans_delete(report: StorageReport) -> list[str]:
    """Delete the orphans the report lists, except recent ones; then the folders they leave empty.
    Only files the report named are touched (never a folder with anything else in it)."""
    root = report.root
    deleted = []
    for problem in report.orphans:
        if problem.recent:
            continue
        path = root / problem.path
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        deleted.append(problem.path)
        _prune_empty_parents(path.parent, root)
    return deleted


def _check_one(root: Path, rel: str, claims: list[StoredFile], report: StorageReport) -> None:
    owner = ", ".join(dict.fromkeys(c.owner for c in claims))
    path = root / rel
    if not path.is_file():
        if any(c.required for c in claims):
            report.problems.append(
                Problem("missing", rel, owner, "a row points to it, the file is not there")
            )
        return
    report.checked += 1
    done: dict[Digest, str] = {}  # two revisions sharing a blob are hashed once
    for claim in claims:
        if not claim.sha256:
            continue
        try:
            actual = done.get(claim.digest) or claim.digest(path)
        except (OSError, ValueError) as exc:
            report.problems.append(Problem("unreadable", rel, claim.owner, str(exc)))
            return
        done[claim.digest] = actual
        if actual != claim.sha256:
            report.problems.append(
                Problem("mismatch", rel, claim.owner, f"sha256 is {actual}, the row says {claim.sha256}")
            )
            return
    if done:
        report.hashed += 1


def _files_under(root: Path) -> set[str]:
    if not root.is_dir():
        return set()
    found = set()
    for folder, _dirs, files in os.walk(root):
        for name in files:
            found.add((Path(folder) / name).relative_to(root).as_posix())
    return found


def _normal(rel: str) -> str:
    return PurePosixPath(rel.replace(os.sep, "/")).as_posix()


def _under_any(rel: str, folders: list[StoredFolder]) -> bool:
    return any(rel.startswith(_normal(f.path).rstrip("/") + "/") for f in folders)


def _mtime(path: Path, default: float) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return default


def _prune_empty_parents(folder: Path, root: Path) -> None:
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()  # only succeeds when empty
        except OSError:
            return
        folder = folder.parent
