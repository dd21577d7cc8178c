from collections.abc import Sequence

import numpy as np
import pytest
import torch

from modelassist.network import (
    ARCHITECTURES,
    _SliceSet,
    build_model,
    load_model,
    pick_device,
    predict_volume,
    save_model,
    train_model,
)
from tests.modelassist.synthetic import make_chest

CPU = torch.device("cpu")


def tiny_cases(count: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Small chest phantoms, only the slices through the lungs."""
    cases = []
    for i in range(count):
        chest = make_chest((20, 64, 64), (5.4, 5.4, 10.0), seed=seed + i, n_vessels=0)
        cases.append((chest.hu[4:18], chest.lesions[4:18]))
    return cases


def test_architectures_record_what_rebuilds_the_network():
    config = ARCHITECTURES["unet2d-small"]

    assert config["net"]["channels"] == (16, 32, 64, 128)
    assert config["net"]["out_channels"] == 4
    assert config["input_size"] == 256
    assert config["hu_window"] == (-1000.0, 200.0)


def test_pick_device_is_cuda_or_cpu():
    assert pick_device().type in {"cuda", "cpu"}


def test_predict_returns_labels_of_the_volume_shape():
    torch.manual_seed(0)
    model = build_model("unet2d-tiny").to(CPU)
    hu = np.random.default_rng(0).integers(-1000, 100, size=(5, 60, 52)).astype(np.int16)

    labels = predict_volume(model, hu, batch_slices=2)

    assert labels.shape == hu.shape
    assert labels.dtype == np.uint8
    assert labels.max() < 4


def test_predict_of_a_full_size_slice_with_the_default_architecture():
    torch.manual_seed(0)
    model = build_model().to(CPU)
    hu = np.full((2, 512, 512), -850, dtype=np.int16)

    labels = predict_volume(model, hu)

    assert labels.shape == (2, 512, 512) and labels.dtype == np.uint8


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(1)
    model = build_model("unet2d-tiny").to(CPU)
    meta = {"export": "v3", "val_dice": np.float32(0.75), "epochs": np.int64(4), "split": (70, 15, 15)}
    path = tmp_path / "models" / "model.pt"

    save_model(model, path, meta)
    loaded, loaded_meta = load_model(path, device=CPU)

    assert loaded.architecture == "unet2d-tiny"
    assert loaded_meta == {
        "export": "v3",
        "val_dice": pytest.approx(0.75),
        "epochs": 4,
        "split": [70, 15, 15],
    }
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])
    hu = np.random.default_rng(1).integers(-1000, 100, size=(3, 40, 40)).astype(np.int16)
    assert np.array_equal(predict_volume(model, hu), predict_volume(loaded, hu))
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    # The file holds only plain containers and tensors: it loads with weights_only=True.
    assert set(torch.load(path, weights_only=True)) == {"architecture", "config", "state_dict", "meta"}


def test_meta_that_cannot_be_stored_is_refused(tmp_path):
    model = build_model("unet2d-tiny")

    with pytest.raises(TypeError):
        save_model(model, tmp_path / "m.pt", {"bad": object()})


# Four epochs of the tiny network: enough for the loss to fall on tiny_cases.
SHORT_RUN = {
    "epochs": 4,
    "lr": 3e-3,
    "batch_size": 8,
    "slices_per_case": 8,
    "seed": 0,
    "device": CPU,
    "architecture": "unet2d-tiny",
}


def test_a_short_training_run_lowers_the_loss_and_reports_progress():
    train, val = tiny_cases(4), tiny_cases(1, seed=10)
    seen = []

    model, history = train_model(train, val, progress=seen.append, **SHORT_RUN)

    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert seen == history
    assert history[-1]["loss"] < history[0]["loss"]
    assert all(0.0 <= h["val_dice"] <= 1.0 for h in history)
    assert predict_volume(model, val[0][0]).shape == val[0][0].shape


def test_crop_training_batches_are_crop_sized_windows():
    data = _SliceSet(tiny_cases(2), build_model("unet2d-tiny"), crop=32)
    rng = np.random.default_rng(0)
    picks = data.sample(rng, per_case=6, lesion_share=0.5)

    x, y = data.batch(picks, rng)

    assert data.images[0].shape[-2:] == (64, 64)  # the prepared slices are larger than the crop
    assert x.shape == (12, 1, 32, 32) and x.dtype == torch.float32
    assert y.shape == (12, 1, 32, 32) and y.dtype == torch.long
    assert {aim for _, _, aim in picks} == {True, False}


def test_crops_aimed_at_a_lesion_show_it_and_whole_slices_stay_whole():
    cases = tiny_cases(2)
    model = build_model("unet2d-tiny")
    cropped = _SliceSet(cases, model, crop=32)
    rng = np.random.default_rng(1)
    aimed = cropped.sample(rng, per_case=10, lesion_share=1.0)
    assert len(aimed) == 20 and all(aim for _, _, aim in aimed)
    assert all(cases[c][1][z].any() for c, z, _ in aimed)

    _, y = cropped.batch(aimed, rng)
    # Placed anywhere, a 32 window of these 64 slices misses their small lesions about
    # one time in ten: over 200 windows, some must miss.
    _, y_anywhere = cropped.batch([(c, z, False) for c, z, _ in aimed] * 10, rng)

    assert all((y[i] > 0).any() for i in range(len(aimed)))
    assert not all((y_anywhere[i] > 0).any() for i in range(len(y_anywhere)))

    whole = _SliceSet(cases, model, crop=None)
    x, y = whole.batch(aimed, rng)
    assert x.shape == (20, 1, 64, 64) and y.shape == (20, 1, 64, 64)
    for i, (c, z, _) in enumerate(aimed):  # every lesion pixel of the slice, flipped or not
        assert int((y[i] > 0).sum()) == int((cases[c][1][z] > 0).sum())


def test_a_crop_larger_than_the_slice_gives_the_whole_slice():
    hu, labels = tiny_cases(1)[0]
    model = build_model("unet2d-tiny")
    data = _SliceSet([(hu, labels)], model, crop=100)
    rng = np.random.default_rng(2)
    picks = [(0, 4, True), (0, 0, False)]

    x, y = data.batch(picks, rng)

    assert x.shape == (2, 1, 64, 64) and y.shape == (2, 1, 64, 64)
    for i, (_, z, _) in enumerate(picks):
        whole = data.images[0][z]
        assert torch.equal(x[i], whole) or torch.equal(x[i], whole.flip(-1))
    # Larger than one side only: the crop is cut to that side.
    narrow = _SliceSet([(hu[:, :, :40], labels[:, :, :40])], model, crop=48)
    x, y = narrow.batch(picks, rng)
    assert narrow.images[0].shape[-2:] == (64, 40)
    assert x.shape == (2, 1, 48, 40) and y.shape == (2, 1, 48, 40)


def test_a_short_training_run_on_crops_lowers_the_loss(monkeypatch):
    train, val = tiny_cases(4), tiny_cases(1, seed=10)
    sizes: set[tuple[int, ...]] = set()
    make_batch = _SliceSet.batch

    def recording_batch(
        self: _SliceSet, picks: Sequence[tuple[int, int, bool]], rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = make_batch(self, picks, rng)
        sizes.add(tuple(x.shape[-2:]))
        return x, y

    monkeypatch.setattr(_SliceSet, "batch", recording_batch)

    model, history = train_model(train, val, crop=32, **SHORT_RUN)

    assert sizes == {(32, 32)}
    assert len(history) == 4
    assert history[-1]["loss"] < history[0]["loss"]
    assert all(0.0 <= h["val_dice"] <= 1.0 for h in history)
    # Trained on crops, it still segments whole slices.
    assert predict_volume(model, val[0][0]).shape == val[0][0].shape


def test_training_is_repeatable_with_the_same_seed():
    train = tiny_cases(2)
    kwargs = {
        "epochs": 1,
        "slices_per_case": 4,
        "batch_size": 4,
        "device": CPU,
        "architecture": "unet2d-tiny",
    }

    _, first = train_model(train, [], seed=3, **kwargs)
    _, second = train_model(train, [], seed=3, **kwargs)

    assert first[0]["loss"] == second[0]["loss"]
    assert first[0]["val_dice"] is None


def test_training_stops_at_the_time_limit():
    _, history = train_model(
        tiny_cases(1),
        [],
        epochs=50,
        slices_per_case=2,
        device=CPU,
        architecture="unet2d-tiny",
        max_minutes=0.0,
    )

    assert len(history) == 1
