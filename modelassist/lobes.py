"""The hospital's lobe model (DESIGN step 11): lungmask's LTRCLobes network, from a weights file
the administrator provides (setting CURATECT_LOBE_MODEL); nothing is downloaded, ever.

Without the setting the report scores zones (thirds of each lung); with it, the five anatomical
lobes. lungmask writes 1 left upper, 2 left lower, 3 right upper, 4 right middle, 5 right lower
lobe, which are the keys of quantify.LOBE_NAMES.

The network is loaded once per process (per file path, size and modification time, so a
replaced file is read again) and checked before use: a missing file, a file that is not a state
dict, or a state dict of another architecture (e.g. lungmask's two-lung R231) is refused with a
LobeModelError that says which and what to do.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

# lungmask's LTRCLobes: background + five lobes.
LOBE_CLASSES = 6


class LobeModelError(Exception):
    """The configured lobe model cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class LobeModel:
    path: Path
    sha256: str
    inferer: Any  # lungmask.mask.LMInferer

    @property
    def name(self) -> str:
        return self.path.name


def lobe_model_path() -> Path | None:
    """The configured weights file, or None when the report scores zones."""
    raw = str(getattr(settings, "CURATECT_LOBE_MODEL", "") or "").strip()
    return Path(raw).expanduser() if raw else None


def lobe_model() -> LobeModel | None:
    """The loaded lobe model, or None when none is configured."""
    path = lobe_model_path()
    if path is None:
        return None
    try:
        stat = path.stat()
    except OSError as exc:
        raise LobeModelError(
            f"the lobe model file {str(path)!r} (CURATECT_LOBE_MODEL) cannot be read: {exc.strerror}; "
            "put lungmask's LTRCLobes weights there, or leave CURATECT_LOBE_MODEL empty to score zones"
        ) from exc
    return _load(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _load(path: str, size: int, mtime_ns: int) -> LobeModel:
    # Imported here: torch and lungmask are heavy, and a process that never reports pays nothing.
    import torch
    from lungmask.mask import LMInferer
    from lungmask.resunet import UNet

    where = f"the lobe model file {path!r} (CURATECT_LOBE_MODEL)"
    try:
        # weights_only: a state dict is tensors; a pickle that runs code is refused.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise LobeModelError(
            f"{where} is not a PyTorch state dict ({type(exc).__name__}); it must be lungmask's "
            "LTRCLobes weights (unet_ltrclobes-*.pth)"
        ) from exc
    if not isinstance(state, dict) or not state or not all(torch.is_tensor(v) for v in state.values()):
        raise LobeModelError(
            f"{where} holds no state dict of tensors; it must be lungmask's LTRCLobes weights"
        )
    # The same network lungmask's get_model builds, with the lobe model's six classes.
    net = UNet(
        n_classes=LOBE_CLASSES, padding=True, depth=5, up_mode="upsample", batch_norm=True, residual=False
    )
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise LobeModelError(
            f"{where} is not a state dict of lungmask's LTRCLobes network (background + 5 lobes): {first}"
        ) from exc
    # modelpath given: lungmask reads the file and never downloads.
    inferer = LMInferer(modelname="LTRCLobes", modelpath=path, tqdm_disable=True)
    return LobeModel(path=Path(path), sha256=_sha256(path), inferer=inferer)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def lobes_segment(
    model: LobeModel, hu: np.ndarray, spacing: tuple[float, float, float] | list[float], cranial_first: bool
) -> np.ndarray:
    """Lobe map (z, y, x) uint8, lungmask's labels 0-5, for a HU volume (z, y, x).

    The volume goes to lungmask as an image with its spacing and its slice direction, so
    lungmask turns it to LPS (what its network saw in training) and the labels come back in
    the volume's own order. Rows run anterior to posterior and columns right to left, as in
    every axial CT series the project imports; slice 0 is the feet unless `cranial_first`.
    """
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(hu, dtype=np.int16))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0 if cranial_first else 1.0))
    lobes = np.asarray(model.inferer.apply(image), dtype=np.uint8)
    if lobes.shape != hu.shape:
        raise LobeModelError(f"the lobe model returned a {lobes.shape} map for a {hu.shape} volume")
    lobes[lobes > LOBE_CLASSES - 1] = 0
    return lobes


def lobe_model_label(model: LobeModel) -> str:
    return f"per lobe (hospital lobe model {model.name})"
