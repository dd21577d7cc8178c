"""Download of a published export as one zip, produced while it is sent (never whole in
memory): a StreamingHttpResponse iterates export_zip_stream."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator

from modelassist.models import DatasetExport
from modelassist.selectors import media_path


class _Sink:
    """A write-only, non-seekable file for ZipFile: what is written is handed out in chunks."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._offset = 0

    def write(self, data: bytes) -> int:
        self._buffer += data
        self._offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self._offset

    def flush(self) -> None:
        pass

    def close(self) -> None:  # zipfile never closes a file it was given; typeshed asks for it
        pass

    def take(self) -> bytes:
        out = bytes(self._buffer)
        self._buffer.clear()
        return out


def export_archive_name(export: DatasetExport) -> str:
    return f"{export.campaign.slug}-v{export.version}"


def export_archive_bytes(export: DatasetExport) -> int:
    """The download's size: the zip is produced the same way each time (same files, names,
    times and compression), so counting one pass gives what every download sends."""
    return sum(len(chunk) for chunk in export_zip_stream(export))


def export_zip_stream(export: DatasetExport) -> Iterator[bytes]:
    """The published folder as one zip, produced while it is sent (never whole in memory).
    .nii.gz files are stored as they are (already compressed); the rest is deflated."""
    root = media_path(export.path)
    prefix = export_archive_name(export)
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", allowZip64=True) as archive:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo.from_file(path, f"{prefix}/{path.relative_to(root)}")
            info.compress_type = zipfile.ZIP_STORED if path.name.endswith(".gz") else zipfile.ZIP_DEFLATED
            with open(path, "rb") as src, archive.open(info, "w") as dst:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    dst.write(chunk)
                    if data := sink.take():
                        yield data
        if data := sink.take():
            yield data
    yield sink.take()
