"""The segmenter's recipe for 128² phantoms (#14 §4): unet2d-small at its own 128 grid."""

import numpy as np
import torch

from modelassist.network import build_model, predict_volume, prepare_slices, train_model
from tests.modelassist.synthetic import make_chest

CPU = torch.device("cpu")


def test_the_128_grid_architecture_keeps_a_128_slice_at_its_size():
    # given a 128² phantom slice
    hu = np.full((3, 128, 128), -850, dtype=np.int16)
    # when either architecture prepares it
    small = prepare_slices(hu, build_model("unet2d-small"), CPU)
    native = prepare_slices(hu, build_model("unet2d-small-128"), CPU)
    # then the default upscales it to 256² and the 128 variant leaves it as it is (a quarter
    # of the work per slice, the same detail)
    assert tuple(small.shape) == (3, 1, 256, 256)
    assert tuple(native.shape) == (3, 1, 128, 128)


def test_the_128_grid_architecture_is_the_same_network_as_unet2d_small():
    a, b = build_model("unet2d-small").state_dict(), build_model("unet2d-small-128").state_dict()

    assert {k: tuple(v.shape) for k, v in a.items()} == {k: tuple(v.shape) for k, v in b.items()}


def test_every_epoch_runs_when_patience_is_the_epoch_count():
    # given two small chests and a validation case (the benches' fixed-epoch recipe)
    chests = [make_chest((6, 32, 32), (10.8, 10.8, 20.0), seed=s, n_vessels=0) for s in range(3)]
    cases = [(c.hu, c.lesions) for c in chests]
    # when it trains 3 epochs with patience 3 (a 32² chest: the test is about the loop, not the Dice)
    model, history = train_model(
        cases[:2],
        cases[2:],
        epochs=3,
        patience=3,
        slices_per_case=1,
        batch_size=2,
        architecture="unet2d-small-128",
        device=CPU,
    )
    # then all three ran, whatever the validation Dice did, and the model segments the grid
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert predict_volume(model, chests[0].hu).shape == chests[0].hu.shape
