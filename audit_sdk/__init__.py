"""audit-sdk: measure how much a model leaks about its training data, and train it to leak less.

    import audit_sdk
    data = audit_sdk.load_npz("data.npz")
    report = audit_sdk.run_audit("model.onnx", data, attacks=["mia.loss-threshold"])
    print(report.summary())

Importing this package never imports torch or onnxruntime; adapters import them when used.
Plugin authors test their components with the conformance checks of ``audit_sdk.testing``.
"""

from __future__ import annotations

# first: from a source checkout (the repository root first on sys.path) the mapped sub-packages resolve to its folders
from . import _source_tree  # noqa: F401  (registers its finder on import)
from .data import (
    AuditData,
    Split,
    load_cifar_binary,
    load_digits_data,
    load_image_folder,
    load_mnist_idx,
    load_npz,
    make_audit_data,
    save_npz,
)
from .dp_audit_api import audit_dp
from .errors import (
    AccessError,
    AuditSDKError,
    AuditSDKWarning,
    BackendUnavailableError,
    InvalidDataError,
    InvalidModelError,
    InvalidParameterError,
    NotFittedError,
    PluginError,
    UnknownComponentError,
)
from .executors import Executor, LocalExecutor
from .interfaces import Accountant, Attack, Defense, Mechanism, PrivacyEvent
from .markers import hookimpl, hookspec
from .registry import Registry, get_plugin_manager, get_registry
from .results import AttackResult
from .rng import as_generator, secure_generator
from .run import AuditReport, RunContext, load_target, run_attack, run_audit
from .target import Target
from .training_api import train
from .version import __version__

__all__ = [
    "AccessError",
    "Accountant",
    "Attack",
    "AttackResult",
    "AuditData",
    "AuditReport",
    "AuditSDKError",
    "AuditSDKWarning",
    "BackendUnavailableError",
    "Defense",
    "Executor",
    "InvalidDataError",
    "InvalidModelError",
    "InvalidParameterError",
    "LocalExecutor",
    "Mechanism",
    "NotFittedError",
    "PluginError",
    "PrivacyEvent",
    "Registry",
    "RunContext",
    "Split",
    "Target",
    "UnknownComponentError",
    "__version__",
    "as_generator",
    "audit_dp",
    "get_plugin_manager",
    "get_registry",
    "hookimpl",
    "hookspec",
    "load_cifar_binary",
    "load_digits_data",
    "load_image_folder",
    "load_mnist_idx",
    "load_npz",
    "load_target",
    "make_audit_data",
    "run_attack",
    "run_audit",
    "save_npz",
    "secure_generator",
    "train",
]
