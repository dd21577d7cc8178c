"""Turn what a data manager gave us (a file, a folder, a zip) into a list of files on disk.

Zip archives are unpacked into a private temporary folder with two guards: entries whose
path would escape that folder are refused (zip slip), and an archive whose declared
uncompressed size exceeds the limit is refused before anything is written.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath


class ArchiveRejected(ValueError):
    """The whole archive is refused (too large, not a readable zip)."""


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
    out = Collected()
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist")
    if source.is_dir():
        for path in sorted(p for p in source.rglob("*") if p.is_file() and not p.is_symlink()):
            _add(out, path, str(path.relative_to(source)), max_archive_bytes, workdir)
    else:
        _add(out, source, source.name, max_archive_bytes, workdir)
    return out


def _add(out: Collected, path: Path, name: str, max_bytes: int, workdir: Path | None) -> None:
    # Only what is named an archive is unpacked: other zip containers (.npz, .docx) are files.
    if path.suffix.lower() == ".zip" and zipfile.is_zipfile(path):
        _unzip(out, path, name, max_bytes, workdir)
    else:
        out.files.append(path)
        out.names[path] = name


def _unzip(out: Collected, path: Path, name: str, max_bytes: int, workdir: Path | None) -> None:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        out.rejected.append({"file": name, "reason": f"not a readable zip archive: {exc}"})
        return
    with archive:
        entries = [e for e in archive.infolist() if not e.is_dir()]
        total = sum(e.file_size for e in entries)
        if total > max_bytes:
            raise ArchiveRejected(
                f"{name} unpacks to {total / 1e9:.1f} GB, over the limit of {max_bytes / 1e9:.1f} GB; "
                "split it into smaller archives"
            )
        target = Path(tempfile.mkdtemp(prefix="curatect-unzip-", dir=workdir))
        out.tempdirs.append(target)
        for entry in entries:
            entry_name = f"{name}:{entry.filename}"
            rel = PurePosixPath(entry.filename.replace("\\", "/"))
            if rel.is_absolute() or ".." in rel.parts or not rel.parts:
                out.rejected.append(
                    {"file": entry_name, "reason": "zip entry escapes the target folder; refused"}
                )
                continue
            dest = target.joinpath(*rel.parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            with archive.open(entry) as src, open(dest, "wb") as dst:
                # The declared size may lie: stop at it rather than trust the header.
                while chunk := src.read(1 << 20):
                    written += len(chunk)
                    if written > entry.file_size:
                        break
                    dst.write(chunk)
            if written > entry.file_size:
                dest.unlink()
                out.rejected.append({"file": entry_name, "reason": "zip entry larger than declared; refused"})
                continue
            out.files.append(dest)
            out.names[dest] = entry_name
