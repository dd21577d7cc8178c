"""The scan-level classifier network: the 3D CNN of Topff et al. (PLoS ONE 2023).

Four blocks of 3×3×3 convolution + LeakyReLU + 2× max-pool + batch-norm (16, 16, 32, 64
filters), adaptive average pooling, a fully connected layer of 128 + LeakyReLU + dropout 0.3,
and a fully connected layer of one score per class (softmax gives the probabilities).

Input: the scan's HU volume cropped to the lung mask's bounding box, voxels outside the lungs
set to the bottom of the window, windowed to [-1000, 200] HU and scaled to [0, 1], resampled to
a fixed (z, y, x) grid. Arrays are (z, y, x). No Django here.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from modelassist.network import _plain, save_payload

KIND = "scan-classifier"  # a model file of this kind is a classifier, not a segmenter

ARCHITECTURES: dict[str, dict[str, Any]] = {
    "topff3d": {"filters": (16, 16, 32, 64), "hidden": 128, "dropout": 0.3, "grid": (32, 64, 64)},
    # For tests and quick CPU demos on small phantoms: 1/8 of the voxels.
    "topff3d-tiny": {"filters": (16, 16, 32, 64), "hidden": 128, "dropout": 0.3, "grid": (16, 32, 32)},
}
DEFAULT_ARCHITECTURE = "topff3d"
HU_WINDOW = (-1000.0, 200.0)


class ScanClassifier(nn.Module):
    """Topff's 3D CNN plus the class names and grid it was trained with."""

    def __init__(self, architecture: str, config: Mapping[str, Any], classes: Sequence[str]) -> None:
        super().__init__()
        self.architecture = architecture
        self.config = copy.deepcopy(dict(config))
        self.classes = [str(c) for c in classes]
        blocks: list[nn.Module] = []
        channels = 1
        for filters in self.config["filters"]:
            blocks += [
                nn.Conv3d(channels, int(filters), kernel_size=3, padding=1),
                nn.LeakyReLU(),
                nn.MaxPool3d(2),
                nn.BatchNorm3d(int(filters)),
            ]
            channels = int(filters)
        self.features = nn.Sequential(*blocks, nn.AdaptiveAvgPool3d(1), nn.Flatten())
        self.head = nn.Sequential(
            nn.Linear(channels, int(self.config["hidden"])),
            nn.LeakyReLU(),
            nn.Dropout(float(self.config["dropout"])),
            nn.Linear(int(self.config["hidden"]), len(self.classes)),
        )

    @property
    def grid(self) -> tuple[int, int, int]:
        z, y, x = (int(n) for n in self.config["grid"])
        return z, y, x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (logits); softmax of them are the probabilities."""
        return self.head(self.features(x))


def build_classifier(
    classes: Sequence[str], architecture: str = DEFAULT_ARCHITECTURE, config: Mapping[str, Any] | None = None
) -> ScanClassifier:
    if config is None:
        if architecture not in ARCHITECTURES:
            raise ValueError(f"unknown classifier {architecture!r}; known: {sorted(ARCHITECTURES)}")
        config = ARCHITECTURES[architecture]
    if len(classes) < 2:
        raise ValueError("a classifier needs at least two classes")
    return ScanClassifier(architecture, config, classes)


def prepare_input(hu: np.ndarray, lungs: np.ndarray, grid: Sequence[int]) -> torch.Tensor:
    """(1, z, y, x) float in [0, 1] on `grid`: the lungs' bounding box, outside the lungs at 0.
    Without a lung mask (the segmentation found none) the whole volume is used."""
    lo, hi = HU_WINDOW
    mask = np.asarray(lungs) > 0
    x = (np.clip(np.asarray(hu, dtype=np.float32), lo, hi) - lo) / (hi - lo)
    if mask.any():
        x = np.where(mask, x, 0.0).astype(np.float32)
        box = tuple(slice(int(idx.min()), int(idx.max()) + 1) for idx in np.nonzero(mask))
        x = x[box]
    t = torch.from_numpy(np.ascontiguousarray(x))[None, None]
    t = F.interpolate(t, size=tuple(int(n) for n in grid), mode="trilinear", align_corners=False)
    return t[0]


def predict_probabilities(model: ScanClassifier, inputs: torch.Tensor, batch: int = 8) -> np.ndarray:
    """(n, classes) probabilities for (n, 1, z, y, x) inputs."""
    device = next(model.parameters()).device
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, inputs.shape[0], batch):
            logits = model(inputs[start : start + batch].to(device))
            out.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(model.classes)))


def save_classifier(model: ScanClassifier, path: str | os.PathLike[str], meta: Mapping[str, Any]) -> None:
    """Atomic write (temp file + rename), as the segmenter's save_model."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "kind": KIND,
        "architecture": model.architecture,
        "config": _plain(model.config),
        "classes": list(model.classes),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": _plain(dict(meta)),
    }
    save_payload(payload, path)


def load_classifier(
    path: str | os.PathLike[str], device: torch.device | None = None
) -> tuple[ScanClassifier, dict[str, Any]]:
    """Load a classifier file (safe: weights_only=True) in eval mode."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if payload.get("kind") != KIND:
        raise ValueError("this file is not a CurateCT scan classifier")
    model = build_classifier(payload["classes"], payload["architecture"], payload.get("config"))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model.to(device or torch.device("cpu")), dict(payload.get("meta") or {})
