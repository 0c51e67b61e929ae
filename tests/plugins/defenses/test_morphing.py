"""defense.morphing (Morphed Learning): invertibility, the augmented layer, training, security, overhead."""

import numpy as np
import pytest
import torch

import audit_sdk
from audit_sdk.adapters.torch import TrainConfig, Trainer, evaluate_accuracy, export_onnx, make_model
from audit_sdk.data import load_digits_data
from audit_sdk.errors import InvalidDataError, InvalidModelError, InvalidParameterError, NotFittedError
from audit_sdk.plugins.defenses.morphing import MorphedLearning, count_macs, reverse_engineering_curve

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CFG = TrainConfig(epochs=30, batch_size=64, lr=2e-3, device="cpu", seed=0)


@pytest.fixture(scope="module")
def digits_split():
    d = load_digits_data()
    perm = np.random.default_rng(0).permutation(len(d.y))
    x, y = d.x[perm], d.y[perm]
    return x[:1200], y[:1200], x[1200:], y[1200:]


@pytest.fixture(scope="module")
def trained_cnn(digits_split):
    xtr, ytr, xte, yte = digits_split
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        m = make_model("cnn", input_shape=xtr.shape[1:], n_classes=10, seed=0)
        Trainer(CFG).fit(m, xtr, ytr)
    finally:
        torch.set_num_threads(before)
    return m, evaluate_accuracy(m, xte, yte, device="cpu")


@pytest.mark.parametrize("opts", [{}, {"block_size": 16}, {"block_size": 4, "per_channel": True}, {"matrix": "gaussian", "block_size": 16}])
def test_morphing_is_exactly_invertible(opts):
    rng = np.random.default_rng(0)
    for shape in [(3, 8, 8), (64,)]:
        x = rng.uniform(0, 1, size=(20, *shape))
        mole = MorphedLearning(seed=0, **opts).fit(shape)
        t = mole.morph(x)
        assert t.shape == x.shape and t.dtype == np.float64
        np.testing.assert_allclose(mole.unmorph(t), x, rtol=0, atol=1e-12)
        # the morphed data does not look like the original
        assert np.abs(t - x).mean() > 0.2
    # float32 in, float32 out (no data-size overhead), invertible to float32 precision
    x32 = rng.uniform(0, 1, size=(5, 1, 8, 8)).astype(np.float32)
    mole = MorphedLearning(seed=0, block_size=16).fit((1, 8, 8))
    assert mole.morph(x32).dtype == np.float32
    np.testing.assert_allclose(mole.unmorph(mole.morph(x32)), x32, atol=1e-6)


def test_key_is_secret_by_default_and_reproducible_with_a_seed():
    a, b = MorphedLearning().fit((1, 8, 8)), MorphedLearning().fit((1, 8, 8))
    assert not np.allclose(a.cores_, b.cores_)
    np.testing.assert_array_equal(MorphedLearning(seed=3).fit((64,)).cores_, MorphedLearning(seed=3).fit((64,)).cores_)
    # the key never derives from the training rng handed to transform_data
    x = np.zeros((2, 64))
    m1, m2 = MorphedLearning(seed=5), MorphedLearning(seed=5)
    m1.transform_data(x, np.zeros(2, int), rng=0)
    m2.transform_data(x, np.zeros(2, int), rng=1)
    np.testing.assert_array_equal(m1.cores_, m2.cores_)


def test_augmented_layer_serves_the_same_model_on_morphed_data(digits_split, trained_cnn, tmp_path):
    xtr, ytr, xte, yte = digits_split
    model, acc = trained_cnn
    mole = MorphedLearning(block_size=16, seed=1)
    mole.transform_data(xtr, ytr)
    tte = mole.morph(xte)
    aug = mole.augment(model)
    with torch.no_grad():
        diff = (aug(torch.from_numpy(tte)) - model(torch.from_numpy(xte))).abs().max().item()
    assert diff < 1e-4
    assert evaluate_accuracy(aug, tte, yte, device="cpu") == pytest.approx(acc)
    # the augmented layer is one dense map: the key is not a separate factor in the served model
    assert not any(isinstance(m, torch.nn.Conv2d) for m in list(aug)[:1])
    # exported to ONNX it is audited like any model, on morphed data
    onnx = audit_sdk.load_target(str(export_onnx(aug, tte[:2], tmp_path / "aug.onnx")))
    assert (onnx.predict_labels(tte) == model(torch.from_numpy(xte)).argmax(1).numpy()).mean() > 0.999


def test_training_on_morphed_data_matches_the_original_accuracy(digits_split, trained_cnn):
    xtr, ytr, xte, yte = digits_split
    _, acc0 = trained_cnn
    mole = MorphedLearning(block_size=16, seed=1)
    mole.fit(xtr.shape[1:])
    m = make_model("cnn", input_shape=xtr.shape[1:], n_classes=10, seed=0)
    res = Trainer(CFG, defenses=[mole]).fit(m, xtr, ytr, x_val=mole.morph(xte), y_val=yte)
    rep = res.defenses["defense.morphing"]
    acc = evaluate_accuracy(m, mole.morph(xte), yte, device="cpu")
    assert abs(acc - acc0) <= 0.01, (acc0, acc)  # measured: 0.990 original, 0.988 morphed
    assert rep["accuracy"] == pytest.approx(acc)
    assert rep["data_size_overhead"] == 0.0 and rep["key_bytes"] == 16 * 16 * 8


def test_frozen_augmented_layer_equals_the_original_with_a_frozen_first_layer(digits_split):
    xtr, ytr, xte, yte = digits_split
    cfg = TrainConfig(epochs=5, batch_size=64, lr=2e-3, device="cpu", seed=0, optimizer="sgd")
    mole = MorphedLearning(block_size=16, seed=1, aug_layer="frozen")
    m = make_model("mlp", input_shape=xtr.shape[1:], n_classes=10, seed=0)
    Trainer(cfg, defenses=[mole]).fit(m, xtr, ytr)
    ref = make_model("mlp", input_shape=xtr.shape[1:], n_classes=10, seed=0)
    ref[1].requires_grad_(False)
    Trainer(cfg).fit(ref, xtr, ytr)
    with torch.no_grad():
        a = m(torch.from_numpy(mole.morph(xte)))
        b = ref(torch.from_numpy(xte))
    # same function, same updates: the morphing costs nothing (up to float rounding)
    assert (a - b).abs().max().item() < 1e-3
    assert (a.argmax(1) == b.argmax(1)).float().mean().item() > 0.995


@pytest.mark.parametrize("knows_blocks", [True, False])
def test_reverse_engineering_error_falls_with_more_pairs(digits_split, knows_blocks):
    xtr, _, xte, _ = digits_split
    mole = MorphedLearning(block_size=16, seed=1).fit(xtr.shape[1:])
    ns = [1, 2, 4, 16, 300] if not knows_blocks else [1, 2, 3, 8]
    rows = reverse_engineering_curve(mole, xtr, xte[:200], ns, knows_blocks=knows_blocks, rng=0)
    mse = [r["mse"] for r in rows]
    ssim = [r["ssim"] for r in rows]
    assert all(a > b for a, b in zip(mse, mse[1:])), mse
    assert all(a < b for a, b in zip(ssim, ssim[1:])), ssim
    assert mse[0] > 0.03 and ssim[0] < 0.7  # one pair reveals little
    assert mse[-1] < 1e-4 and ssim[-1] > 0.999  # enough pairs recover the inverse


def test_overhead_counts_the_dense_augmented_layer(trained_cnn):
    model, _ = trained_cnn
    mole = MorphedLearning(block_size=16, seed=1).fit((1, 8, 8))
    o = mole.overhead(model)
    # first conv: 16 maps x 8 x 8 outputs x (1 x 3 x 3) = 9216 MACs; augmented: 64 inputs x 1024 outputs
    assert o["macs_augmented"] - o["macs_original"] == 64 * 1024 - 9216
    assert o["macs_original"] == count_macs(model, (1, 8, 8))
    assert o["compute_overhead"] == pytest.approx(o["macs_augmented"] / o["macs_original"] - 1)


def test_bad_inputs_are_refused_with_a_fix():
    with pytest.raises(InvalidParameterError, match="must divide the 64"):
        MorphedLearning(block_size=5).fit((1, 8, 8))
    with pytest.raises(NotFittedError, match="fit"):
        MorphedLearning().morph(np.zeros((1, 64)))
    mole = MorphedLearning(seed=0).fit((64,))
    with pytest.raises(InvalidDataError, match="shape"):
        mole.morph(np.zeros((1, 65)))
    with pytest.raises(InvalidModelError, match="not linear"):
        mole.augment(torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(64, 3)))
    with pytest.raises(InvalidModelError, match="Sequential"):
        mole.augment(torch.nn.Linear(64, 3))
    with pytest.raises(InvalidParameterError, match="n_pairs"):
        reverse_engineering_curve(mole, np.zeros((3, 64)), np.zeros((2, 64)), [5])


def test_wrapped_target_serves_the_morphing_pipeline_on_original_records(digits_split, trained_cnn, tmp_path):
    xtr, ytr, xte, yte = digits_split
    model, acc = trained_cnn
    mole = MorphedLearning(block_size=16, seed=1).fit(xtr.shape[1:])
    assert mole.points == ("input", "output")
    aug = mole.augment(model)
    onnx = audit_sdk.load_target(str(export_onnx(aug, mole.morph(xte[:2]), tmp_path / "aug.onnx")))
    served = mole.wrap_target(onnx)
    assert "white-box" not in served.capabilities and served.describe()["defense"] == "defense.morphing"
    raw = audit_sdk.load_target(model)
    # original records in, the original model's answers out
    np.testing.assert_allclose(served.predict_proba(xte), raw.predict_proba(xte), atol=1e-4)
    assert (served.predict_labels(xte) == yte).mean() == pytest.approx(acc)
    with pytest.raises(NotFittedError):
        MorphedLearning().wrap_target(onnx)
