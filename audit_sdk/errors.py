"""Errors and warnings raised by audit-sdk.

Every error derives from one base and, where it refines a builtin, from that builtin too, so an
existing ``except ValueError`` keeps working::

    AuditSDKError
    ├── InvalidParameterError (ValueError)      a bad option, argument or config value
    ├── InvalidDataError (ValueError)           features/labels with wrong shapes, dtypes, NaN, empty sets
    ├── InvalidModelError (ValueError)          a missing/corrupt model file, or one the data does not fit
    ├── NotFittedError (ValueError, AttributeError)
    ├── PluginError                             a plugin that cannot be loaded or clashes (``.plugin_name``)
    │   └── UnknownComponentError (KeyError)    a name no plugin registered (suggests the nearest)
    ├── AccessError (TypeError)                 an attack needs more access than the target offers
    ├── BackendUnavailableError (ImportError)   an optional backend is not installed (names the extra)
    ├── NotSupportedError (NotImplementedError) a component cannot do this (e.g. a Trainer that cannot export ONNX)
    ├── PrivacyBudgetExceededError              the next step would exceed the privacy budget
    └── PolicyViolationError                    a ``--fail-on`` privacy rule failed

    AuditSDKWarning (UserWarning)
    ├── AccountingAssumptionWarning             training does not match what the accountant assumes
    └── PluginWarning                           a broken third-party plugin was isolated (skipped)

Messages say what is wrong, what was expected, what arrived, and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "AccessError",
    "AccountingAssumptionWarning",
    "AuditSDKError",
    "AuditSDKWarning",
    "BackendUnavailableError",
    "InvalidDataError",
    "InvalidModelError",
    "InvalidParameterError",
    "NotFittedError",
    "NotSupportedError",
    "PluginError",
    "PluginWarning",
    "PolicyViolationError",
    "PrivacyBudgetExceededError",
    "UnknownComponentError",
]


class AuditSDKError(Exception):
    """Base of every error audit-sdk raises on purpose."""


class InvalidParameterError(AuditSDKError, ValueError):
    """A parameter, option or config value is out of range or of the wrong kind."""


class InvalidDataError(AuditSDKError, ValueError):
    """Input data has the wrong shape, dtype or values (NaN/inf, labels out of range, empty)."""


class InvalidModelError(AuditSDKError, ValueError):
    """A model cannot be loaded, or does not accept the data it is given."""


class NotFittedError(AuditSDKError, ValueError, AttributeError):
    """An object that learns was used before ``fit``."""


class PluginError(AuditSDKError):
    """A plugin failed to load, or two plugins clash.

    Attributes:
        plugin_name: the plugin (distribution or module) at fault, when known.
    """

    def __init__(self, message: str, *, plugin_name: str | None = None) -> None:
        super().__init__(message)
        self.plugin_name = plugin_name


class UnknownComponentError(PluginError, KeyError):
    """No registered component has this name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class AccessError(AuditSDKError, TypeError):
    """An attack needs an access level (e.g. white-box) that the target does not offer."""


class BackendUnavailableError(AuditSDKError, ImportError):
    """An optional backend (torch, onnxruntime, ray, ...) is not installed."""


class NotSupportedError(AuditSDKError, NotImplementedError):
    """A component does not offer an optional part of its contract (e.g. a Trainer family that cannot export ONNX)."""


class PrivacyBudgetExceededError(AuditSDKError):
    """The next training step would spend more privacy than the budget allows."""


class PolicyViolationError(AuditSDKError):
    """A privacy policy rule (``--fail-on``) does not hold."""

    def __init__(self, message: str, *, rules: list[str] | None = None) -> None:
        super().__init__(message)
        self.rules = rules or []


class AuditSDKWarning(UserWarning):
    """Base of every warning audit-sdk emits."""


class PluginWarning(AuditSDKWarning):
    """A third-party plugin failed (to import, register, or in a hook) and was isolated."""


class AccountingAssumptionWarning(AuditSDKWarning):
    """Training deviates from what the accountant assumes (e.g. shuffling instead of Poisson sampling)."""
