"""The files model assist owns, for core.storage_check (listed in settings.CURATECT_STORED_FILES).

- A model version's weights file: ModelVersion.sha256 is the sha256 of the file; its
  classifier's file (if any): ModelVersion.classifier_sha256.
- A published export's folder: DatasetExport.content_sha256 is the hash of the curated content
  (campaign, classes, and per case its ids and voxel hashes), which the folder's manifest.json
  holds; so the manifest is checked by recomputing that hash from what it says, and every other
  file by the sha256 the manifest lists for it. A file in the folder the manifest does not list
  is an orphan. An export whose manifest cannot be read owns its whole folder (nothing in it is
  called an orphan, so --delete-orphans never empties a damaged export).
- The lung-mask cache of a scan (quantification): derived and rebuilt when missing, so it is
  only claimed, not required; a stale one (another method tag or volume) is an orphan.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

from django.conf import settings

from core.models import Scan
from core.storage_check import StoredFile, StoredFolder
from modelassist.models import DatasetExport, ModelVersion
from modelassist.services.export import MANIFEST, content_sha256, exports_root
from modelassist.services.quantification import lung_cache_path


def stored_files() -> Iterator[StoredFile | StoredFolder]:
    for pk, rel, sha in (
        ModelVersion.objects.values_list("pk", "file_path", "sha256").order_by("pk").iterator()
    ):
        yield StoredFile(rel, f"model version {pk}", sha)
    classifiers = ModelVersion.objects.exclude(classifier_file_path="").values_list(
        "pk", "classifier_file_path", "classifier_sha256"
    )
    for pk, rel, sha in classifiers.order_by("pk").iterator():
        yield StoredFile(rel, f"model version {pk} classifier", sha)
    exports = DatasetExport.objects.select_related("campaign").only(
        "pk", "status", "path", "version", "content_sha256", "campaign__slug"
    )  # not the summary: it can be large
    for export in exports.order_by("pk").iterator():
        # The status values, not the enum: the job lifecycle's home is moving (core.jobs).
        if export.status == "done" and export.path:
            yield from _export_files(export)
        elif export.status == "running":
            # Its half-written folder is work in progress, not an orphan.
            root = exports_root(export.campaign)
            for tmp in root.glob(f".tmp-{export.pk}-*"):
                yield StoredFolder(_relative(tmp), f"export {export.pk} (running)")
    media = Path(settings.MEDIA_ROOT)
    for scan in Scan.objects.only("pk", "storage_dir", "volume_sha256").iterator():
        yield StoredFile(
            lung_cache_path(scan).relative_to(media).as_posix(),
            f"scan {scan.pk} lung mask cache",
            required=False,
        )


def _export_files(export: DatasetExport) -> Iterator[StoredFile | StoredFolder]:
    owner = f"export {export.pk} (v{export.version})"
    manifest_rel = f"{export.path}/{MANIFEST}"
    yield StoredFile(manifest_rel, owner, export.content_sha256, _manifest_content_sha256)
    try:
        manifest = json.loads((Path(settings.MEDIA_ROOT) / manifest_rel).read_text())
        files = dict(manifest["files"])
    except (OSError, ValueError, KeyError, TypeError):
        yield StoredFolder(export.path, owner)  # the manifest's own entry reports why
        return
    for rel, sha in sorted(files.items()):
        yield StoredFile(f"{export.path}/{rel}", owner, str(sha))


def _manifest_content_sha256(path: Path) -> str:
    """The content hash of what the manifest says (as the export computed it when publishing);
    the hash the manifest states must agree, else both are shown."""
    try:
        manifest = json.loads(path.read_text())
        campaign = SimpleNamespace(slug=manifest["campaign"]["slug"], label_schema=manifest["label_schema"])
        actual = content_sha256(campaign, manifest["cases"])  # type: ignore[arg-type]  # reads slug and schema only
        stated = manifest["content_sha256"]
    except (UnicodeDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"the manifest is not a CurateCT export manifest ({exc!r})") from exc
    return actual if stated == actual else f"{actual} (the manifest states {stated})"


def _relative(path: Path) -> str:
    return path.relative_to(Path(settings.MEDIA_ROOT)).as_posix()
