"""The PyTorch pre-segmentation model: a compact slice-wise 2D U-Net (MONAI).

Slice-wise 2D keeps training and inference cheap enough for CPU workers (DESIGN step 9:
retraining every few days as curated data comes in, Jin et al. 2020). Each axial slice is
windowed to [-1000, 200] HU, scaled to [0, 1], resized so its longer side is the
architecture's input size (a 512 matrix becomes 256: about 1.4 mm pixels for a usual chest
field of view), segmented, and the class scores are resized back to the full grid.

Labels: 0 background, 1 ground-glass opacity, 2 consolidation, 3 other opacity. Arrays are
(z, y, x). No Django here.
"""

from __future__ import annotations

import copy
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from torch import nn

from annotation.dice import pooled_case_dice
from core.cpus import usable_cpus

NUM_CLASSES = 4

# The small 2D U-Net, shared by the architectures that differ only in their input matrix.
_UNET2D_SMALL_NET: dict[str, Any] = {
    "spatial_dims": 2,
    "in_channels": 1,
    "out_channels": NUM_CLASSES,
    "channels": (16, 32, 64, 128),
    "strides": (2, 2, 2),
    "num_res_units": 1,
}

# Architecture name -> everything needed to rebuild the network; a model file stores the
# name and this dict, so a model version stays loadable if the table changes later.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "unet2d-small": {
        "net": _UNET2D_SMALL_NET,
        "input_size": 256,
        "hu_window": (-1000.0, 200.0),
    },
    # unet2d-small at a 128 matrix, for 128² phantoms on CPU (the learning-loop benches): the
    # default would upscale their slices to 256², four times the inference work for no detail.
    "unet2d-small-128": {
        "net": _UNET2D_SMALL_NET,
        "input_size": 128,
        "hu_window": (-1000.0, 200.0),
    },
    # For tests and quick CPU demos on small phantoms: about 1/30 of the work per slice.
    "unet2d-tiny": {
        "net": {
            "spatial_dims": 2,
            "in_channels": 1,
            "out_channels": NUM_CLASSES,
            "channels": (8, 16, 32),
            "strides": (2, 2),
            "num_res_units": 1,
        },
        "input_size": 64,
        "hu_window": (-1000.0, 200.0),
    },
}
DEFAULT_ARCHITECTURE = "unet2d-small"


class SliceSegmenter(nn.Module):
    """A 2D segmentation network plus the preprocessing it was trained with."""

    def __init__(self, architecture: str, config: Mapping[str, Any]) -> None:
        super().__init__()
        self.architecture = architecture
        self.config = copy.deepcopy(dict(config))
        self.net = UNet(**self.config["net"])

    @property
    def input_size(self) -> int:
        return int(self.config["input_size"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_model(
    architecture: str = DEFAULT_ARCHITECTURE, config: Mapping[str, Any] | None = None
) -> SliceSegmenter:
    if config is None:
        if architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {architecture!r}; known: {sorted(ARCHITECTURES)}")
        config = ARCHITECTURES[architecture]
    return SliceSegmenter(architecture, config)


def pick_device() -> torch.device:
    """CUDA when available; else the CPU, using every core this process may use."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    torch.set_num_threads(usable_cpus())
    return torch.device("cpu")


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


# ---------------------------------------------------------------------------- saving


def _plain(value: Any) -> Any:
    """JSON-shaped copy of `meta`: only what torch.load(weights_only=True) accepts."""

    def default(obj: Any) -> Any:
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        if isinstance(obj, Path):
            return str(obj)
        raise TypeError(f"meta value of type {type(obj).__name__} cannot be stored")

    return json.loads(json.dumps(value, default=default))


def save_payload(payload: Mapping[str, Any], path: Path) -> None:
    """torch.save to a temporary name beside `path`, then rename: a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(dict(payload), tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_model(model: SliceSegmenter, path: str | os.PathLike[str], meta: Mapping[str, Any]) -> None:
    """Write {"architecture", "config", "state_dict", "meta"} atomically (temp file + rename),
    so a worker killed mid-write never leaves a half model version behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "architecture": model.architecture,
        "config": _plain(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": _plain(dict(meta)),
    }
    save_payload(payload, path)


def load_model(
    path: str | os.PathLike[str], device: torch.device | None = None
) -> tuple[SliceSegmenter, dict[str, Any]]:
    """Load a model file (safe: weights_only=True) in eval mode, on `device` or pick_device()."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    model = build_model(payload["architecture"], payload.get("config"))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model.to(device or pick_device()), dict(payload.get("meta") or {})


# ---------------------------------------------------------------------------- inference


def scaled_shape(shape: Sequence[int], input_size: int) -> tuple[int, int]:
    """In-plane size at the network's scale: the longer side becomes input_size."""
    rows, cols = int(shape[-2]), int(shape[-1])
    factor = input_size / max(rows, cols)
    return max(1, round(rows * factor)), max(1, round(cols * factor))


def prepare_slices(
    hu: np.ndarray | torch.Tensor, model: SliceSegmenter, device: torch.device
) -> torch.Tensor:
    """(z, y, x) HU -> (z, 1, h, w) float in [0, 1] at the network's scale."""
    lo, hi = (float(v) for v in model.config["hu_window"])
    # A float copy: the volume may be a read-only memory map of the volume cache.
    x = torch.from_numpy(np.array(hu, dtype=np.float32)).to(device)
    x = ((x.clamp(lo, hi) - lo) / (hi - lo)).unsqueeze(1)
    size = scaled_shape(x.shape, model.input_size)
    if size != tuple(x.shape[-2:]):
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    return x


def _roi_size(shape: Sequence[int], input_size: int) -> tuple[int, int]:
    # Windows are at most input_size and a multiple of 8 (three stride-2 levels), so any
    # slice, square or not, goes through the U-Net; sliding_window_inference pads the rest.
    return tuple(min(input_size, 8 * math.ceil(int(n) / 8)) for n in shape[-2:])  # type: ignore[return-value]


def _segment_batch(model: SliceSegmenter, x: torch.Tensor, full_size: tuple[int, int]) -> torch.Tensor:
    logits = sliding_window_inference(
        x,
        roi_size=_roi_size(x.shape, model.input_size),
        sw_batch_size=x.shape[0],
        predictor=model,
        overlap=0.25,
    )
    if tuple(logits.shape[-2:]) != full_size:
        # Scores, not labels, are resized: bilinear scores give smooth full-resolution edges.
        logits = F.interpolate(logits, size=full_size, mode="bilinear", align_corners=False)
    return _argmax_channels(logits)


def _argmax_channels(logits: torch.Tensor) -> torch.Tensor:
    """argmax over dim 1 as uint8; on CPU torch's argmax across channels is ~20x slower
    than these few element-wise passes. Ties go to the lower class, as with argmax."""
    best = logits[:, 0]
    labels = torch.zeros(best.shape, dtype=torch.uint8, device=logits.device)
    for c in range(1, logits.shape[1]):
        score = logits[:, c]
        labels.masked_fill_(score > best, c)
        best = torch.maximum(best, score)
    return labels


def predict_volume(model: SliceSegmenter, hu: np.ndarray, batch_slices: int = 16) -> np.ndarray:
    """Labels (z, y, x) uint8 for a HU volume, segmented slice by slice in batches."""
    device = _model_device(model)
    model.eval()
    out = np.empty(hu.shape, dtype=np.uint8)
    full_size = (int(hu.shape[1]), int(hu.shape[2]))
    with torch.inference_mode():
        for start in range(0, hu.shape[0], batch_slices):
            stop = min(start + batch_slices, hu.shape[0])
            x = prepare_slices(hu[start:stop], model, device)
            out[start:stop] = _segment_batch(model, x, full_size).cpu().numpy()
    return out


# ---------------------------------------------------------------------------- evaluation


def evaluate(
    model: SliceSegmenter, cases: Sequence[tuple[np.ndarray, np.ndarray]], batch_slices: int = 16
) -> dict[str, Any]:
    """Pooled Dice (annotation.dice.pooled_case_dice) of the model on (hu, labels) cases at full
    resolution."""
    return pooled_case_dice([(predict_volume(model, hu, batch_slices), labels) for hu, labels in cases])


# ---------------------------------------------------------------------------- training


class _SliceSet:
    """Training slices of all cases at the network's scale, kept in memory."""

    def __init__(
        self, cases: Sequence[tuple[np.ndarray, np.ndarray]], model: SliceSegmenter, crop: int | None
    ) -> None:
        self.crop = crop
        self.images: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        self.lesion_slices: list[np.ndarray] = []
        cpu = torch.device("cpu")
        for hu, labels in cases:
            image = prepare_slices(hu, model, cpu)
            target = torch.as_tensor(np.asarray(labels, dtype=np.uint8)).unsqueeze(1)
            target = F.interpolate(target.float(), size=image.shape[-2:], mode="nearest").to(torch.uint8)
            self.images.append(image)
            self.labels.append(target)
            self.lesion_slices.append(
                np.flatnonzero(np.asarray(labels).reshape(labels.shape[0], -1).any(axis=1))
            )

    def sample(
        self, rng: np.random.Generator, per_case: int, lesion_share: float
    ) -> list[tuple[int, int, bool]]:
        """(case, slice, aim at a lesion) for one epoch; about lesion_share of them show a
        lesion, since most slices of a chest CT show none and the model would learn to
        predict nothing."""
        picks: list[tuple[int, int, bool]] = []
        for case, lesion_slices in enumerate(self.lesion_slices):
            n_lesion = round(per_case * lesion_share) if lesion_slices.size else 0
            chosen = rng.choice(lesion_slices, n_lesion) if n_lesion else np.empty(0, dtype=int)
            others = rng.integers(0, self.images[case].shape[0], per_case - n_lesion)
            picks += [(case, int(z), True) for z in chosen] + [(case, int(z), False) for z in others]
        order = rng.permutation(len(picks))
        return [picks[i] for i in order]

    def _window(self, label: torch.Tensor, aim: bool, rng: np.random.Generator) -> tuple[slice, slice]:
        """Where to crop a slice: around a random lesion pixel when aiming at one, else anywhere."""
        h, w = label.shape[-2:]
        size = self.crop
        if size is None or (size >= h and size >= w):
            return slice(0, h), slice(0, w)
        ch, cw = min(size, h), min(size, w)
        if aim:
            ys, xs = np.nonzero(label[0].numpy())
            if ys.size:
                i = int(rng.integers(ys.size))
                # Jitter so the lesion is not always in the middle of the window.
                y0 = int(ys[i]) - ch // 2 + int(rng.integers(-ch // 4, ch // 4 + 1))
                x0 = int(xs[i]) - cw // 2 + int(rng.integers(-cw // 4, cw // 4 + 1))
                y0, x0 = int(np.clip(y0, 0, h - ch)), int(np.clip(x0, 0, w - cw))
                return slice(y0, y0 + ch), slice(x0, x0 + cw)
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        return slice(y0, y0 + ch), slice(x0, x0 + cw)

    def batch(
        self, picks: Sequence[tuple[int, int, bool]], rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = [], []
        for c, z, aim in picks:
            label = self.labels[c][z]
            ys, xs = self._window(label, aim, rng)
            images.append(self.images[c][z][:, ys, xs])
            labels.append(label[:, ys, xs])
        size = tuple(max(int(im.shape[i]) for im in images) for i in (-2, -1))
        x = torch.stack([_pad_to(im, size) for im in images])
        y = torch.stack([_pad_to(lab, size) for lab in labels]).long()
        # Left-right flips: lesions occur in both lungs, and a flip is free extra data.
        flip = torch.as_tensor(rng.random(len(picks)) < 0.5)
        x[flip] = x[flip].flip(-1)
        y[flip] = y[flip].flip(-1)
        return x, y


def _pad_to(t: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Pad (c, h, w) at the bottom/right to size, rounded up to a multiple of 8 for the U-Net."""
    h, w = (8 * math.ceil(n / 8) for n in size)
    return F.pad(t, (0, w - t.shape[-1], 0, h - t.shape[-2]))


def _seed_everything(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)  # seeds CUDA too
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    return np.random.default_rng(seed)


def _train_epoch(
    model: SliceSegmenter,
    data: _SliceSet,
    optimiser: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    loss_fn: nn.Module,
    rng: np.random.Generator,
    settings: dict[str, Any],
    deadline: float | None,
) -> tuple[float, bool]:
    """One pass over a fresh slice sample; returns (mean loss, whether the deadline hit)."""
    model.train()
    device = _model_device(model)
    picks = data.sample(rng, settings["slices_per_case"], settings["lesion_share"])
    losses: list[float] = []
    for start in range(0, len(picks), settings["batch_size"]):
        if deadline is not None and time.monotonic() > deadline:
            return (float(np.mean(losses)) if losses else math.nan), True
        x, y = data.batch(picks[start : start + settings["batch_size"]], rng)
        optimiser.zero_grad(set_to_none=True)
        loss = loss_fn(model(x.to(device)), y.to(device))
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(float(loss.detach()))
    return float(np.mean(losses)), False


class _ProximalLoss(nn.Module):
    """FedProx's local objective: the loss plus mu/2 times the squared distance of the weights
    from where the round started."""

    def __init__(self, loss: nn.Module, model: nn.Module, mu: float) -> None:
        super().__init__()
        self.loss, self.model, self.mu = loss, [model], mu  # a list: not a submodule of the loss
        self.anchor = [p.detach().clone() for p in model.parameters()]

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        params = self.model[0].parameters()
        distance = sum(((p - a) ** 2).sum() for p, a in zip(params, self.anchor, strict=True))
        return self.loss(logits, target) + 0.5 * self.mu * distance


def train_model(
    train_cases: Sequence[tuple[np.ndarray, np.ndarray]],
    val_cases: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 8,
    slices_per_case: int = 16,
    seed: int = 0,
    progress: Callable[[dict[str, Any]], None] | None = None,
    device: torch.device | None = None,
    max_minutes: float | None = None,
    architecture: str = DEFAULT_ARCHITECTURE,
    patience: int = 5,
    lesion_share: float = 0.7,
    crop: int | None = None,
    initial_state: Mapping[str, torch.Tensor] | None = None,
    proximal_mu: float = 0.0,
) -> tuple[SliceSegmenter, list[dict[str, Any]]]:
    """Train on (hu, labels) cases; early stopping on the validation mean lesion Dice.

    Each epoch samples `slices_per_case` axial slices per case (about `lesion_share` of them
    with a lesion), minimises Dice + cross-entropy with Adam, then scores the validation
    cases. With `crop`, each sample is a crop × crop window of its slice, around a lesion for
    the lesion share: a 128 window costs a quarter of a 256² slice, so a CPU run sees four
    times the lesions in the same minutes. On 40 phantoms, 10 epochs of 64 crops per case
    (about the CPU cost of 10 epochs of 16 whole slices) gave test Dice 0.74-0.80 against
    0.47 for the whole slices; the Dice was measured on a GPU, the costs on a CPU.
    The learning rate follows a cosine from `lr` down to 5 % over the planned steps. Training
    stops after `patience` epochs without a better validation Dice, or at `max_minutes`; the
    best epoch's weights are returned. Without validation cases the last weights are returned.
    progress() gets {"epoch", "loss", "val_dice", "seconds"} per epoch.
    A federated round starts from `initial_state` (the global model); with `proximal_mu` the
    loss adds FedProx's mu/2 * ||w - w_global||^2, which keeps a site near the global model.
    """
    if not train_cases:
        raise ValueError("no training cases")
    rng = _seed_everything(seed)
    device = device or pick_device()
    model = build_model(architecture)
    if initial_state is not None:
        model.load_state_dict(initial_state)
    model = model.to(device)
    data = _SliceSet(train_cases, model, crop)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * math.ceil(slices_per_case * len(train_cases) / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps, eta_min=0.05 * lr)
    # batch=True: Dice over the whole batch, so slices without a lesion do not give the
    # lesion classes a meaningless per-slice Dice.
    loss_fn: nn.Module = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
    if proximal_mu > 0:
        loss_fn = _ProximalLoss(loss_fn, model, proximal_mu)
    settings = {"slices_per_case": slices_per_case, "batch_size": batch_size, "lesion_share": lesion_share}
    started = time.monotonic()
    deadline = started + 60.0 * max_minutes if max_minutes is not None else None

    history: list[dict[str, Any]] = []
    best_dice, best_state, stale = -1.0, None, 0
    for epoch in range(1, epochs + 1):
        loss, out_of_time = _train_epoch(model, data, optimiser, schedule, loss_fn, rng, settings, deadline)
        val_dice = evaluate(model, val_cases)["mean"] if val_cases else None
        record = {"epoch": epoch, "loss": loss, "val_dice": val_dice, "seconds": time.monotonic() - started}
        history.append(record)
        if progress is not None:
            progress(dict(record))
        if val_dice is not None and val_dice > best_dice:
            best_dice, stale = val_dice, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
        if out_of_time or (val_cases and stale >= patience):
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return model, history
