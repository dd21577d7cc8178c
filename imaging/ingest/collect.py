"""Turn what a data manager gave us (a file, a folder, a zip) into a list of files on disk.

Zip archives are unpacked into a private folder under the data directory (never the system
temp folder: the raw files are identifying, and /tmp is neither swept nor on the data volume's
retention rules). An archive is refused whole, before anything of it is imported, when one
entry would escape its folder (zip slip), when its declared uncompressed size exceeds the
limit, when an entry is larger than declared, or when it cannot be read (CRC errors, damage).
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

UNZIP_PREFIX = "curatect-unzip-"


class ArchiveRejected(ValueError):
    """The whole archive is refused (too large, unsafe entry names, not a readable zip)."""


@dataclass
class Collected:
    files: list[Path] = field(default_factory=list)
    # Files given names for the report (relative to what the user gave), by path.
    names: dict[Path, str] = field(default_factory=dict)
    rejected: list[dict] = field(default_factory=list)
    tempdirs: list[Path] = field(default_factory=list)

    def cleanup(self) -> None:
        for d in self.tempdirs:
            shutil.rmtree(d, ignore_errors=True)


def collect(source: Path, *, max_archive_bytes: int, workdir: Path | None = None) -> Collected:
    """Files of `source`; archives unpack under `workdir`. On ArchiveRejected (or any other
    error) whatever was unpacked is removed before the exception leaves."""
    out = Collected()
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist")
    try:
        if source.is_dir():
            for path in sorted(p for p in source.rglob("*") if p.is_file() and not p.is_symlink()):
                _add(out, path, str(path.relative_to(source)), max_archive_bytes, workdir)
        else:
            _add(out, source, source.name, max_archive_bytes, workdir)
    except BaseException:
        out.cleanup()
        raise
    return out


def _add(out: Collected, path: Path, name: str, max_bytes: int, workdir: Path | None) -> None:
    # Only what is named an archive is unpacked: other zip containers (.npz, .docx) are files.
    if path.suffix.lower() == ".zip" and zipfile.is_zipfile(path):
        _unzip(out, path, name, max_bytes, workdir)
    else:
        out.files.append(path)
        out.names[path] = name


def _unsafe(entry_name: str) -> bool:
    """True for a name that would land outside the target folder on any platform."""
    posix = PurePosixPath(entry_name.replace("\\", "/"))
    windows = PureWindowsPath(entry_name)
    return (
        not posix.parts
        or posix.is_absolute()
        or ".." in posix.parts
        or bool(windows.drive)  # C:evil.dcm, C:\evil.dcm, \\server\share\evil.dcm
        or "\x00" in entry_name
    )


def _unzip(out: Collected, path: Path, name: str, max_bytes: int, workdir: Path | None) -> None:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveRejected(
            f"{name} is not a readable zip archive ({exc}); nothing of it was imported"
        ) from exc
    with archive:
        entries = [e for e in archive.infolist() if not e.is_dir()]
        unsafe = [e.filename for e in archive.infolist() if _unsafe(e.filename)]
        if unsafe:
            raise ArchiveRejected(
                f"{name}: entry {unsafe[0]!r} escapes the archive's folder (../, absolute path or drive "
                f"letter){f' and {len(unsafe) - 1} more' if len(unsafe) > 1 else ''}; the archive is "
                "refused whole and nothing of it was imported — re-create it with relative paths"
            )
        total = sum(e.file_size for e in entries)
        if total > max_bytes:
            raise ArchiveRejected(
                f"{name} unpacks to {total / 1e9:.1f} GB, over the limit of {max_bytes / 1e9:.1f} GB; "
                "split it into smaller archives"
            )
        if workdir is not None:
            workdir.mkdir(parents=True, exist_ok=True)
        target = Path(tempfile.mkdtemp(prefix=UNZIP_PREFIX, dir=workdir))
        out.tempdirs.append(target)
        for entry in entries:
            rel = PurePosixPath(entry.filename.replace("\\", "/"))
            dest = target.joinpath(*rel.parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            _extract(archive, entry, dest, name)
            out.files.append(dest)
            out.names[dest] = f"{name}:{entry.filename}"


def _extract(archive: zipfile.ZipFile, entry: zipfile.ZipInfo, dest: Path, name: str) -> None:
    written = 0
    try:
        with archive.open(entry) as src, open(dest, "wb") as dst:
            # The declared size may lie: stop at it rather than trust the header.
            while chunk := src.read(1 << 20):
                written += len(chunk)
                if written > entry.file_size:
                    raise ArchiveRejected(
                        f"{name}: entry {entry.filename!r} is larger than its header declares; "
                        "the archive is refused whole"
                    )
                dst.write(chunk)
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        zlib.error,
        EOFError,
        NotImplementedError,
        RuntimeError,
    ) as exc:
        # A CRC error surfaces only while reading (BadZipFile "Bad CRC-32"); an encrypted entry
        # raises RuntimeError, an unknown compression NotImplementedError.
        raise ArchiveRejected(
            f"{name}: entry {entry.filename!r} cannot be unpacked ({exc}); the archive is damaged "
            "and was refused whole — nothing of it was imported; create it again and re-upload"
        ) from exc
