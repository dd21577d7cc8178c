"""What a site's ClientApp does with the model, with the segmenter's own pieces
(modelassist.network: train_model, predict_volume; annotation.dice): read the site's export,
train locally from the global weights, test on the site's own test split, and turn weights
into the arrays that travel and back.

The same functions train centrally or on one site alone (bench/federated.py): `load_cases`
of one or several exports, then `train_local` with `initial_state=None`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from annotation.dice import pooled_case_dice
from federation.classifier import DEFAULT_LOCAL_EPOCHS as CLASSIFIER_LOCAL_EPOCHS
from modelassist.lazy import network
from modelassist.models import DatasetExport, Split
from modelassist.selectors import media_path
from modelassist.services import export as exports
from modelassist.services import export_files

Case = tuple[np.ndarray, np.ndarray, tuple]  # hu, labels, spacing (the baseline needs it)

# The local training of a round: small by default, a round of three sites ends in minutes on a CPU.
DEFAULT_TRAIN_PARAMS: dict[str, Any] = {
    "lr": 3e-3,
    "batch_size": 16,
    "slices_per_case": 64,
    "crop": 128,
    "seed": 0,
    "max_minutes": 30.0,
    "classifier_epochs": CLASSIFIER_LOCAL_EPOCHS,
}
PARAM_LIMITS: dict[str, tuple[float, float]] = {
    "lr": (1e-6, 1.0),
    "batch_size": (1, 256),
    "slices_per_case": (1, 512),
    "crop": (0, 1024),
    "seed": (0, 2**31 - 1),
    "max_minutes": (0.1, 24 * 60),
    "classifier_epochs": (1, 500),  # the scan classifier's local epochs a round (federation.classifier)
}


def load_cases(export: DatasetExport) -> dict[str, list[Case]]:
    """The export's (hu, labels, spacing) cases by split, read from the export's own folder."""
    root = media_path(export.path)
    out: dict[str, list[Case]] = {s: [] for s in Split.values}
    for case in exports.export_manifest(export)["cases"]:
        hu, affine = export_files.read_nifti(root / case["image"])
        labels, _ = export_files.read_nifti(root / case["label"])
        out[case["split"]].append(
            (
                hu.astype(np.int16, copy=False),
                labels.astype(np.uint8, copy=False),
                export_files.spacing_of_affine(affine),
            )
        )
    return out


def train_local(
    cases: Mapping[str, Sequence[Case]],
    *,
    architecture: str,
    epochs: int,
    params: Mapping[str, Any],
    initial_state: Mapping[str, Any] | None = None,
    proximal_mu: float = 0.0,
    round_number: int = 0,
) -> tuple[Any, list[dict[str, Any]]]:
    """Train the segmenter on the training split (validation split for the best epoch).
    Each round reseeds with the round number, so rounds do not repeat one slice sample. Each
    round runs its own learning-rate cosine: one cosine over the whole run (a round on its part
    of it) was measured on bench/federated.py's sites and did no better (held-out Dice 0.21
    against 0.27 on one split, 0.27 against 0.27 on another)."""
    p = {**DEFAULT_TRAIN_PARAMS, **params}
    return network.train_model(
        [(hu, labels) for hu, labels, _ in cases[Split.TRAIN]],
        [(hu, labels) for hu, labels, _ in cases[Split.VALIDATION]],
        epochs=epochs,
        lr=p["lr"],
        batch_size=int(p["batch_size"]),
        slices_per_case=int(p["slices_per_case"]),
        crop=int(p["crop"]) or None,
        seed=int(p["seed"]) + round_number,
        max_minutes=float(p["max_minutes"]),
        architecture=architecture,
        patience=max(epochs, 1),
        initial_state=initial_state,
        proximal_mu=proximal_mu,
    )


def evaluate_cases(model: Any, test_cases: Sequence[Case]) -> dict[str, Any]:
    """Pooled lesion Dice of the model on the test cases (as retraining measures it)."""
    return pooled_case_dice([(network.predict_volume(model, hu), labels) for hu, labels, _ in test_cases])


def initial_model(architecture: str, seed: int = 0) -> Any:
    """The round-0 global model: the architecture's fresh weights, the same at every seed."""
    import torch

    torch.manual_seed(seed)
    return network.build_model(architecture)


def model_from_state(architecture: str, state: Mapping[str, Any]) -> Any:
    import torch

    model = network.build_model(architecture)
    model.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in state.items()})
    model.eval()
    return model


def arrays_digest(arrays: Sequence[np.ndarray]) -> tuple[int, str]:
    """(bytes, sha256) of parameters as they travel: each array's raw bytes, in order."""
    digest = hashlib.sha256()
    size = 0
    for array in arrays:
        data = np.ascontiguousarray(array).tobytes()
        digest.update(data)
        size += len(data)
    return size, digest.hexdigest()
