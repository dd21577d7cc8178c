"""Model versions: registering weights files, uploads (validated by loading), activation, loading.

A weights file is written under MEDIA_ROOT/models/<campaign>/ by the network module's atomic
`save_model`, hashed, and only then registered; the row's sha256 is checked again before
every load, so a version always runs the weights it was measured with.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import IO, Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from core.api_errors import Conflict, DomainError
from core.models import Campaign, User
from core.services.audit import audit_record
from modelassist.lazy import classifier_net, network
from modelassist.models import DatasetExport, ModelVersion
from modelassist.selectors import media_path, require_manager

MODELS_DIR = "models"
MAX_UPLOAD_BYTES = 512 * 1024**2  # a 2D U-Net is a few MB; anything near this is not one


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def new_model_path(campaign: Campaign) -> str:
    """A fresh relative path for a weights file of the campaign."""
    return f"{MODELS_DIR}/{campaign.slug}/{uuid.uuid4().hex}.pt"


def model_version_register(
    *,
    campaign: Campaign,
    name: str,
    file_path: str,
    trained_on: DatasetExport | None = None,
    metrics: dict[str, Any] | None = None,
    actor: User | None = None,
    classifier_file_path: str = "",
) -> ModelVersion:
    """Register a weights file already in place (relative to MEDIA_ROOT) as a new, inactive version,
    with the scan-level classifier's file beside it when one was trained."""
    path = media_path(file_path)
    payload_arch = _architecture_of(path)
    classifier = _classifier_facts(classifier_file_path)
    try:
        with transaction.atomic():
            version = ModelVersion.objects.create(
                campaign=campaign,
                name=name,
                architecture=payload_arch,
                file_path=file_path,
                sha256=file_sha256(path),
                trained_on=trained_on,
                metrics=metrics or {},
                created_by=actor,
                **classifier,
            )
            audit_record(
                actor=actor,
                action="model_version_register",
                obj=version,
                campaign=campaign,
                to_state="inactive",
                name=name,
                sha256=version.sha256,
                trained_on=trained_on.version if trained_on else None,
                classifier_sha256=classifier["classifier_sha256"] or None,
            )
    except IntegrityError as exc:
        raise Conflict(
            f"this campaign already has a model version named {name!r}", code="name_taken"
        ) from exc
    return version


def new_classifier_path(campaign: Campaign) -> str:
    return f"{MODELS_DIR}/{campaign.slug}/{uuid.uuid4().hex}.classifier.pt"


def _classifier_facts(relative: str) -> dict[str, str]:
    """The classifier columns of a version: architecture and sha256, read from the file itself."""
    if not relative:
        return {"classifier_file_path": "", "classifier_architecture": "", "classifier_sha256": ""}
    path = media_path(relative)
    model, _ = classifier_net.load_classifier(path)
    return {
        "classifier_file_path": relative,
        "classifier_architecture": str(model.architecture),
        "classifier_sha256": file_sha256(path),
    }


def _architecture_of(path: Path) -> str:
    """Load the file as a model (safe loader) and return its architecture; refuse anything else."""
    import torch

    try:
        model, _ = network.load_model(path, device=torch.device("cpu"))
    except Exception as exc:  # any failure to load means "not a model file we can run"
        raise DomainError(
            f"this file is not a CurateCT model file ({type(exc).__name__}: {str(exc)[:200]}); "
            "upload a file written by the training job or modelassist.network.save_model",
            code="bad_model_file",
        ) from exc
    return str(model.architecture)


def model_version_upload(
    *, actor: User, campaign: Campaign, name: str, upload: IO[bytes], activate: bool = False
) -> ModelVersion:
    """A data manager uploads a weights file: it is stored only if it loads as a model."""
    require_manager(actor, campaign, "upload model weights")
    name = (name or "").strip()
    if not name:
        raise DomainError("give the model version a name", code="name_required")
    if ModelVersion.objects.filter(campaign=campaign, name=name).exists():
        raise Conflict(f"this campaign already has a model version named {name!r}", code="name_taken")
    relative = new_model_path(campaign)
    final = media_path(relative)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            copied = _copy_limited(upload, out)
        if copied == 0:
            raise DomainError("the uploaded file is empty", code="bad_model_file")
        _architecture_of(Path(tmp))  # validate before it gets a real name
        os.replace(tmp, final)
        version = model_version_register(campaign=campaign, name=name, file_path=relative, actor=actor)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        if final.exists() and not ModelVersion.objects.filter(file_path=relative).exists():
            final.unlink()
        raise
    if activate:
        version = model_version_activate(actor=actor, version=version, reason="activated on upload")
    return version


def _copy_limited(src: IO[bytes], dst: IO[bytes]) -> int:
    total = 0
    for chunk in iter(lambda: src.read(1 << 20), b""):
        total += len(chunk)
        if total > MAX_UPLOAD_BYTES:
            raise DomainError(
                f"the file is larger than {MAX_UPLOAD_BYTES // 1024**2} MB; not a pre-segmentation model",
                code="file_too_large",
            )
        dst.write(chunk)
    return total


def model_version_activate(*, actor: User | None, version: ModelVersion, reason: str = "") -> ModelVersion:
    """Make `version` the campaign's active model (actor None: the training job's promotion).

    Rows are locked in pk order; the old active version is switched off before the new one is
    switched on, so the partial unique index never sees two."""
    if actor is not None:
        require_manager(actor, version.campaign, "activate model versions")
    with transaction.atomic():
        versions = list(
            ModelVersion.objects.select_for_update().filter(campaign_id=version.campaign_id).order_by("pk")
        )
        target = next(v for v in versions if v.pk == version.pk)
        current = next((v for v in versions if v.is_active), None)
        if current is not None and current.pk == target.pk:
            return target  # already active: activating twice changes nothing
        if current is not None:
            ModelVersion.objects.filter(pk=current.pk).update(is_active=False)
        now = timezone.now()
        ModelVersion.objects.filter(pk=target.pk).update(is_active=True, activated_at=now)
        target.is_active, target.activated_at = True, now
        audit_record(
            actor=actor,
            actor_label="" if actor else "training job",
            action="model_version_activate",
            obj=target,
            campaign=target.campaign_id,
            from_state=current.label if current else "baseline",
            to_state=target.label,
            reason=reason,
        )
    return target


def model_version_deactivate(*, actor: User, campaign: Campaign, reason: str = "") -> None:
    """Back to the classical baseline: no version of the campaign is active."""
    require_manager(actor, campaign, "deactivate model versions")
    with transaction.atomic():
        current = ModelVersion.objects.select_for_update().filter(campaign=campaign, is_active=True).first()
        if current is None:
            return
        ModelVersion.objects.filter(pk=current.pk).update(is_active=False)
        audit_record(
            actor=actor,
            action="model_version_activate",
            obj=current,
            campaign=campaign,
            from_state=current.label,
            to_state="baseline",
            reason=reason,
        )


# ----------------------------------------------------------------------------- loading

_cache_lock = threading.Lock()
_loaded: OrderedDict[tuple[str, str], network.SliceSegmenter] = OrderedDict()
_CACHE_SIZE = 2  # a worker runs one campaign's model at a time, mostly


def load_version_model(version: ModelVersion) -> network.SliceSegmenter:
    """The version's network on the best device (CUDA when present), checked against its sha256."""
    key = (version.file_path, version.sha256)
    with _cache_lock:
        if key in _loaded:
            _loaded.move_to_end(key)
            return _loaded[key]
    path = media_path(version.file_path)
    if not path.exists():
        raise FileNotFoundError(f"the weights file of {version.label} is missing ({version.file_path})")
    if file_sha256(path) != version.sha256:
        raise ValueError(
            f"the weights file of {version.label} changed on disk (sha256 differs); refusing to run it"
        )
    model, _ = network.load_model(path)
    with _cache_lock:
        _loaded[key] = model
        while len(_loaded) > _CACHE_SIZE:
            _loaded.popitem(last=False)
    return model


_loaded_classifiers: OrderedDict[tuple[str, str], Any] = OrderedDict()


def load_version_classifier(version: ModelVersion) -> Any | None:
    """The version's scan-level classifier (None when it has none), checked against its sha256."""
    if not version.classifier_file_path:
        return None
    key = (version.classifier_file_path, version.classifier_sha256)
    with _cache_lock:
        if key in _loaded_classifiers:
            _loaded_classifiers.move_to_end(key)
            return _loaded_classifiers[key]
    path = media_path(version.classifier_file_path)
    if not path.exists():
        raise FileNotFoundError(
            f"the classifier file of {version.label} is missing ({version.classifier_file_path})"
        )
    if file_sha256(path) != version.classifier_sha256:
        raise ValueError(
            f"the classifier file of {version.label} changed on disk (sha256 differs); refusing to run it"
        )
    model, _ = classifier_net.load_classifier(path)
    with _cache_lock:
        _loaded_classifiers[key] = model
        while len(_loaded_classifiers) > _CACHE_SIZE:
            _loaded_classifiers.popitem(last=False)
    return model
