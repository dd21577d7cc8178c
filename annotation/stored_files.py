"""The label blobs revisions own, for core.storage_check (listed in settings.CURATECT_STORED_FILES).

Blobs are content-addressed (annotation.storage): Revision.label_sha256 is the sha256 of the
file's bytes and also its name, so several revisions may share one file.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings

from annotation import storage
from annotation.models import Revision
from core.storage_check import StoredFile


def stored_files() -> Iterator[StoredFile]:
    root = settings.MEDIA_ROOT
    for pk, sha in Revision.objects.values_list("pk", "label_sha256").order_by("pk").iterator():
        rel = storage._path(sha).relative_to(root).as_posix()
        yield StoredFile(rel, f"revision {pk}", sha)
