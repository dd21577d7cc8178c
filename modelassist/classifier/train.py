"""Training the scan-level classifier on an export's training split, seeded, with early stopping
on the validation cross-entropy (its best epoch's weights are kept)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from modelassist.classifier.network import ScanClassifier, build_classifier
from modelassist.network import _seed_everything

LR = 1e-3
BATCH_SIZE = 4
# Intensity augmentation of the lung voxels of the [0, 1] input, per training sample: institutions
# differ in HU offset, kernel and noise (demo.phantoms' scanner styles, and real scanners). On 64
# phantom scans of four styles, tested on 12 of a fifth, it was neutral within the noise of so few
# test scans (micro-AUC 0.76 and 0.81 with it, 0.80 and 0.80 without, two cohorts, 50 epochs);
# kept for the real spread of scanners, which the phantoms' five styles understate.
CONTRAST, SHIFT, NOISE_SD = 0.15, 0.05, 0.02


def _class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse class frequency: most curated scans of a COVID-19 campaign are COVID-19, and an
    unweighted loss learns to answer that for every scan. An absent class weighs 0."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / max(1, (counts > 0).sum()), 0.0)
    return torch.as_tensor(weights, dtype=torch.float32)


def augment_intensity(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """x (n, 1, z, y, x) with each sample's lung voxels (those above 0: outside the lungs the
    input is 0) scaled by 1 ± CONTRAST, shifted by ± SHIFT and given Gaussian noise of NOISE_SD,
    kept in [0, 1]."""
    n = x.shape[0]
    shape = (n,) + (1,) * (x.dim() - 1)
    contrast = torch.as_tensor(rng.uniform(1 - CONTRAST, 1 + CONTRAST, n), dtype=x.dtype).view(shape)
    shift = torch.as_tensor(rng.uniform(-SHIFT, SHIFT, n), dtype=x.dtype).view(shape)
    noise = torch.as_tensor(rng.normal(0.0, NOISE_SD, x.shape), dtype=x.dtype)
    lungs = x > 0
    return torch.where(lungs, (x * contrast + shift + noise).clamp(0.0, 1.0), x)


def _val_loss(model: ScanClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    device = next(model.parameters()).device
    model.eval()
    with torch.inference_mode():
        return float(nn.functional.cross_entropy(model(x.to(device)), y.to(device)))


def train_classifier(
    train_x: torch.Tensor,
    train_y: Sequence[int],
    val_x: torch.Tensor,
    val_y: Sequence[int],
    classes: Sequence[str],
    *,
    epochs: int,
    seed: int = 0,
    architecture: str = "topff3d",
    patience: int = 5,
    augment: bool = True,
    keep_best: bool = True,
    max_minutes: float | None = None,
    lr: float = LR,
    batch_size: int = BATCH_SIZE,
    device: torch.device | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    initial_state: Mapping[str, torch.Tensor] | None = None,
) -> tuple[ScanClassifier, list[dict[str, Any]]]:
    """Adam on class-weighted cross-entropy over (n, 1, z, y, x) inputs, with left-right flips
    and (augment) augment_intensity. keep_best: end with the weights of the epoch of lowest
    validation loss (else the last epoch's).
    progress() gets {"epoch", "loss", "val_loss", "seconds"} per epoch. A federated round starts
    from `initial_state` (the global classifier)."""
    if len(train_y) == 0:
        raise ValueError("no training cases for the classifier")
    rng = _seed_everything(seed)
    device = device or torch.device("cpu")
    model = build_classifier(classes, architecture)
    if initial_state is not None:
        model.load_state_dict(initial_state)
    model = model.to(device)
    labels = np.asarray(train_y, dtype=np.int64)
    loss_fn = nn.CrossEntropyLoss(weight=_class_weights(labels, len(classes)).to(device))
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    val_t = torch.as_tensor(np.asarray(val_y, dtype=np.int64))
    started = time.monotonic()
    deadline = started + 60.0 * max_minutes if max_minutes is not None else None
    history: list[dict[str, Any]] = []
    best, best_state, stale = math.inf, None, 0
    for epoch in range(1, epochs + 1):
        model.train()
        losses = []
        order = rng.permutation(len(labels))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            if len(idx) < 2 and len(order) >= 2:
                continue  # batch-norm needs two samples; the next epoch's order differs
            x = train_x[idx].clone()
            flip = torch.as_tensor(rng.random(len(idx)) < 0.5)
            x[flip] = x[flip].flip(-1)
            if augment:
                x = augment_intensity(x, rng)
            optimiser.zero_grad(set_to_none=True)
            loss = loss_fn(model(x.to(device)), torch.as_tensor(labels[idx]).to(device))
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
        val_loss = _val_loss(model, val_x, val_t) if len(val_t) else None
        record = {
            "epoch": epoch,
            "loss": float(np.mean(losses)) if losses else None,
            "val_loss": val_loss,
            "seconds": time.monotonic() - started,
        }
        history.append(record)
        if progress is not None:
            progress(dict(record))
        if val_loss is not None and val_loss < best:
            best, stale = val_loss, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
        if (deadline is not None and time.monotonic() > deadline) or (len(val_t) and stale >= patience):
            break
    if keep_best and best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return model, history
