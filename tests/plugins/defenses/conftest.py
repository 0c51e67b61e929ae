"""Fixtures of the defense tests (suppress, morphing, output defenses)."""

import pytest


@pytest.fixture
def one_torch_thread():
    """Small models train faster on one thread, and much faster when the cores are shared."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
