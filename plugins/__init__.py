"""Built-in plugins of audit-sdk, installed as ``audit_sdk.plugins``.

Each module registers its classes with one hookimpl and is declared in pyproject.toml under
``[project.entry-points.audit_sdk]``, the same door a third-party package uses.
"""
