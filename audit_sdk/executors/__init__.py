"""Executor backends that need an optional dependency (imported lazily by ``make_executor``).

- ``ray_backend.RayExecutor``: ``pip install "audit-sdk[ray]"``.
"""
