"""Shared fixtures. Area-specific fixtures live in each tests/<area>/conftest.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Third-party plugins off in tests unless a test turns them on itself.
os.environ.setdefault("AUDIT_SDK_DISABLE_PLUGINS", "1")
# The signing key of cached pickles (audit_sdk.signing) in a folder of the test session, never the
# user's own ~/.config; subprocesses and worker processes inherit it.
if "AUDIT_SDK_KEY_FILE" not in os.environ:
    import tempfile

    os.environ["AUDIT_SDK_KEY_FILE"] = str(Path(tempfile.mkdtemp(prefix="audit-sdk-test-key-")) / "cache.key")


def pytest_configure(config: pytest.Config) -> None:
    try:
        import torch

        # One thread: these models are tiny (threading costs more than it gives), and several
        # test processes (executors, subprocess CLIs) share the 2 CI cores.
        torch.set_num_threads(1)
    except ImportError:
        pass


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip)


@pytest.fixture
def pm():
    """A fresh plugin manager with third-party plugins off."""
    from audit_sdk import get_plugin_manager

    return get_plugin_manager(third_party=False)


@pytest.fixture
def registry(pm):
    from audit_sdk import get_registry

    return get_registry(pm)


@pytest.fixture(scope="session")
def digits_memorised():
    """A CNN trained on 250 digits until it memorises them, with its AuditData.

    10% of all labels are flipped before the split (members and non-members alike), so the model
    must memorise its mislabelled members: train accuracy ~1.0, test accuracy ~0.75. Members are
    its training set, non-members unseen digits, population 1000 further digits.
    """
    from audit_sdk.adapters.torch.recipes import digits_setup

    return digits_setup(n_members=250, n_non_members=250, n_population=1000, epochs=80, label_noise=0.1, seed=0)


@pytest.fixture(scope="session")
def digits_memorised_onnx(digits_memorised, tmp_path_factory) -> Path:
    """The memorising digits CNN exported to ONNX."""
    from audit_sdk.adapters.torch import export_onnx

    return export_onnx(digits_memorised.model, digits_memorised.data.members.x[:2], tmp_path_factory.mktemp("onnx") / "memorised.onnx")


@pytest.fixture(scope="session")
def digits_unseen():
    """Same split, but a model trained on the population only: it has seen neither members nor non-members."""
    from audit_sdk.adapters.torch import TrainConfig, Trainer, make_model
    from audit_sdk.adapters.torch.recipes import digits_setup

    setup = digits_setup(n_members=250, n_non_members=250, n_population=1000, train=False, label_noise=0.1, seed=0)
    model = make_model("cnn", input_shape=setup.data.feature_shape, n_classes=10, seed=1)
    pop = setup.data.population
    Trainer(TrainConfig(epochs=30, batch_size=64, lr=2e-3, device="cpu", seed=1)).fit(model, pop.x, pop.y)
    setup.model = model
    return setup


@pytest.fixture(scope="session")
def digits_unseen_onnx(digits_unseen, tmp_path_factory) -> Path:
    from audit_sdk.adapters.torch import export_onnx

    return export_onnx(digits_unseen.model, digits_unseen.data.members.x[:2], tmp_path_factory.mktemp("onnx") / "unseen.onnx")


BROKEN_PLUGIN = '''
"""A third-party plugin that breaks in the hook named by $BROKEN_HOOK (read at call time)."""
import os

from pydantic import BaseModel, ConfigDict

from audit_sdk import Attack, AttackResult, hookimpl

if os.environ.get("BROKEN_HOOK") == "import":
    raise RuntimeError("boom at import")


def _broken(hook):
    if os.environ.get("BROKEN_HOOK") == hook:
        raise RuntimeError(f"boom in {hook}")


class RaisingAttack(Attack):
    name = "mia.test-raises"
    summary = "Raises when run (a broken third-party attack)."
    access = "black-box"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def run(self, target, data, *, rng=None, context=None):
        raise RuntimeError("boom in run")


@hookimpl
def register_attacks():
    _broken("register_attacks")
    hook = os.environ.get("BROKEN_HOOK")
    if hook == "register_class":
        return RaisingAttack  # a class, not a list
    if hook == "register_invalid":
        return [type("Bad", (RaisingAttack,), {"name": "Not Kebab"})]
    if hook == "register_duplicate":
        return [type("Dup", (RaisingAttack,), {"name": "mia.loss-threshold"})]
    return [RaisingAttack]


@hookimpl
def register_accountants():
    _broken("register_accountants")
    return []


@hookimpl(tryfirst=True)
def make_target(model, options):
    _broken("make_target")
    if os.environ.get("BROKEN_HOOK") == "make_target_value":
        return "not a target"


@hookimpl
def on_attack_finished(attack, result):
    _broken("on_attack_finished")


@hookimpl
def on_train_step(step, epoch, metrics, context):
    _broken("on_train_step")


@hookimpl
def report_sections(report):
    _broken("report_sections")
    if os.environ.get("BROKEN_HOOK") == "report_sections_value":
        return "not a list"
    return []
'''

#: Hooks the broken plugin can fail in (``BROKEN_HOOK``).
BROKEN_HOOKS = (
    "import",
    "register_attacks",
    "register_accountants",
    "register_class",
    "register_invalid",
    "register_duplicate",
    "make_target",
    "make_target_value",
    "on_attack_finished",
    "on_train_step",
    "report_sections",
    "report_sections_value",
)


@pytest.fixture(scope="session")
def broken_plugin_site(tmp_path_factory) -> Path:
    """A folder that, on sys.path / PYTHONPATH, installs distribution audit-sdk-broken (entry point `broken`)."""
    site = tmp_path_factory.mktemp("broken-site")
    info = site / "audit_sdk_broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: audit-sdk-broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[audit_sdk]\nbroken = audit_sdk_broken_plugin\n")
    (site / "audit_sdk_broken_plugin.py").write_text(BROKEN_PLUGIN)
    return site


@pytest.fixture
def broken_plugin(broken_plugin_site, monkeypatch):
    """Install the broken plugin in this process; call the returned function with the hook to break."""
    import importlib
    import sys

    monkeypatch.syspath_prepend(str(broken_plugin_site))
    importlib.invalidate_caches()
    monkeypatch.delenv("AUDIT_SDK_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("AUDIT_SDK_STRICT_PLUGINS", raising=False)

    def use(hook: str) -> None:
        monkeypatch.setenv("BROKEN_HOOK", hook)
        sys.modules.pop("audit_sdk_broken_plugin", None)

    yield use
    sys.modules.pop("audit_sdk_broken_plugin", None)


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    """A small MLP on digits features (64 inputs, 10 classes), trained on rows 0..299, as ONNX."""
    import numpy as np
    import torch
    from sklearn.datasets import load_digits

    from audit_sdk.adapters.torch import export_onnx

    d = load_digits()
    x = (d.data / 16).astype(np.float32)
    g = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1, generator=g)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    xt, yt = torch.from_numpy(x[:300]), torch.from_numpy(d.target[:300])
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    return export_onnx(model, x[:2], tmp_path_factory.mktemp("tiny") / "tiny.onnx")


@pytest.fixture(scope="session")
def tiny_digits():
    """Digits as flat float32 features in [0, 1] and labels: members 0..299, non-members 300..599, population 600..999."""
    import numpy as np
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data / 16).astype(np.float32), d.target.astype(np.int64)
