"""Any H x W, 1 or 3 channels, bounds other than [0, 1]; registry, import hygiene and the audit pipeline."""

import json
import subprocess
import sys

import numpy as np
import pytest

import audit_sdk
from audit_sdk import RunContext, get_registry

NAMES = ("inversion.representation", "inversion.model", "inversion.decoder", "inversion.gradient")


def _synthetic(shape, n_classes=3, seed=0):
    """Class-dependent blobs in [-1, 2] (bounds deliberately not [0, 1])."""
    gen = np.random.default_rng(seed)
    c, h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    protos = np.stack([np.broadcast_to(np.sin((k + 1) * xx / w * 3) * np.cos(yy / h * (k + 2)), (c, h, w)) for k in range(n_classes)])

    def draw(n):
        y = gen.integers(0, n_classes, n)
        x = np.clip(0.5 + 1.2 * protos[y] + 0.3 * gen.standard_normal((n, c, h, w)), -1, 2).astype(np.float32)
        return x, y.astype(np.int64)

    return audit_sdk.AuditData(draw(20), draw(20), draw(60), n_classes=n_classes)


@pytest.fixture(scope="module", params=[(1, 5, 9), (3, 6, 10)], ids=["1x5x9", "3x6x10"])
def odd_setup(request):
    from audit_sdk.adapters.torch import TorchTarget, TrainConfig, Trainer, make_model

    data = _synthetic(request.param)
    model = make_model("cnn", input_shape=request.param, n_classes=3, seed=0)
    Trainer(TrainConfig(epochs=3, batch_size=16, device="cpu")).fit(model, data.members.x, data.members.y)
    return data, TorchTarget(model, device="cpu")


@pytest.mark.parametrize(
    "name,params",
    [
        ("inversion.representation", {"layer": "1", "iterations": 20, "n_samples": 4}),
        ("inversion.representation", {"iterations": 20, "n_samples": 4, "optimizer": "signed-step"}),
        ("inversion.model", {"iterations": 20}),
        ("inversion.decoder", {"epochs": 3, "n_samples": 4}),
        ("inversion.gradient", {"batch_size": 2, "n_batches": 2, "iterations": 20}),
    ],
)
def test_any_shape_and_channels_stay_in_bounds(odd_setup, name, params, tmp_path, inv_context):
    data, target = odd_setup
    ctx = RunContext(registry=inv_context.registry, out_dir=tmp_path, extras=inv_context.extras)
    attack = get_registry().create("attack", name, {**params, "eval_epochs": 2})
    r = attack.run(target, data, rng=0, context=ctx)
    assert r.reconstructions.shape == r.originals.shape and r.reconstructions.shape[1:] == data.feature_shape
    assert r.reconstructions.min() >= -1.0 and r.reconstructions.max() <= 2.0
    assert r.extra["input_bounds"] == [-1.0, 2.0]
    assert np.isfinite(r.metrics["ssim"])
    from PIL import Image

    with Image.open(r.extra["artifacts"]["grid"]) as im:
        assert im.mode == ("RGB" if data.feature_shape[0] == 3 else "L")
    json.dumps(r.to_dict())


def test_registered_with_reconstruction_results(registry):
    access = {n: registry.get("attack", n).access for n in NAMES}
    assert access == {
        "inversion.representation": "white-box",
        "inversion.model": "white-box",
        "inversion.decoder": "black-box",
        "inversion.gradient": "gradients",
    }
    assert all(registry.get("attack", n).result_kind == "reconstruction" for n in NAMES)


def test_plugin_modules_do_not_import_torch():
    code = (
        "import sys\n"
        "import audit_sdk.plugins.inversion.representation, audit_sdk.plugins.inversion.model\n"
        "import audit_sdk.plugins.inversion.decoder, audit_sdk.plugins.inversion.gradient\n"
        "assert 'torch' not in sys.modules, 'torch imported at module import time'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_white_box_attack_refused_on_onnx_with_a_black_box_suggestion(digits_memorised, digits_memorised_onnx):
    with pytest.raises(audit_sdk.AccessError, match="inversion.decoder"):
        audit_sdk.run_audit(str(digits_memorised_onnx), digits_memorised.data, attacks=["inversion.representation"])


def test_run_audit_writes_report_and_artifacts(digits_memorised, tmp_path):
    ctx = RunContext(registry=get_registry(), out_dir=tmp_path)
    report = audit_sdk.run_audit(
        digits_memorised.model,
        digits_memorised.data,
        attacks=[("inversion.representation", {"layer": "1", "iterations": 30, "n_samples": 4, "evaluate": False})],
        context=ctx,
        rng=0,
    )
    row = report.rows()[0]
    assert row["attack"] == "inversion.representation" and row["ssim"] > 0.5
    report.to_json(tmp_path / "report.json")
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["attacks"][0]["extra"]["artifacts"]["grid"].endswith("grid.png")
    assert (tmp_path / "inversion.representation" / "reconstructions.npy").is_file()


@pytest.mark.parametrize("name", ["inversion.representation", "inversion.gradient", "inversion.decoder", "inversion.model"])
def test_explicit_bounds_clip_reconstructions_not_originals(digits_data, fresh_cnn_target, name):
    short = {"epochs": 2, "hidden": 16} if name == "inversion.decoder" else {"iterations": 5}
    params = {"input_bounds": (0.2, 0.8), "evaluate": False, **short}
    r = get_registry().create("attack", name, params).run(fresh_cnn_target, digits_data, rng=0)
    assert r.reconstructions.min() >= 0.2 and r.reconstructions.max() <= 0.8
    if name != "inversion.model":  # model inversion's originals are class means
        assert r.originals.min() == 0.0 and r.originals.max() == 1.0
