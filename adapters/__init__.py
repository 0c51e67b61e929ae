"""Backends: ONNX Runtime (black-box), torch (training and white-box), scikit-learn.

Each adapter module imports its framework inside the functions that need it, so importing
``audit_sdk.adapters`` costs nothing, and claims the models it can wrap through the
``make_target`` hook.
"""
