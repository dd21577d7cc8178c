"""A test helper: which elements of a dataset still hold identifying text."""

from __future__ import annotations

from collections.abc import Iterable

from pydicom import Dataset
from pydicom.datadict import keyword_for_tag
from pydicom.multival import MultiValue

from imaging.pseudonymise import _as_text

_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})


def _text_of(value: object) -> Iterable[str]:
    if value is None:
        return
    if isinstance(value, bytes | bytearray):
        # Private and UN values arrive as bytes; latin-1 maps every byte to a character.
        yield bytes(value).decode("latin-1")
    elif isinstance(value, MultiValue | list | tuple):
        for v in value:
            yield from _text_of(v)
    elif isinstance(value, str | int | float) or hasattr(value, "original_string"):
        yield _as_text(value)
    else:
        yield str(value)


def _path_name(tag: int) -> str:
    return keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _find_phi(ds: Dataset, needles: list[str], prefix: str, hits: list[str]) -> None:
    for tag in list(ds.keys()):
        if tag in _PIXEL_TAGS:
            continue  # image bytes: any short string occurs in them by chance
        elem = ds[tag]
        path = prefix + _path_name(tag)
        if elem.VR == "SQ":
            for index, item in enumerate(elem.value):
                _find_phi(item, needles, f"{path}[{index}].", hits)
            continue
        for text in _text_of(elem.value):
            upper = text.upper()
            if any(needle in upper for needle in needles):
                hits.append(path)
                break


def assert_no_phi(ds: Dataset, forbidden: list[str]) -> list[str]:
    """Paths of elements (file meta, nested items and private tags included) whose value
    contains any forbidden string, case-insensitively; empty when the dataset is clean.
    """
    needles = [f.upper() for f in forbidden if f]
    hits: list[str] = []
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        _find_phi(meta, needles, "file_meta.", hits)
    _find_phi(ds, needles, "", hits)
    return hits
