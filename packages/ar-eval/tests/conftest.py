"""Fixtures for ar-eval tests: a tiny random Llama saved with its tokenizer, and a short held-out text."""

from __future__ import annotations

import pytest
import torch

from ar_export.testing import calibration_texts, save_tiny_model


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A saved float32 tiny Llama + tokenizer directory."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama", max_position_embeddings=256)


@pytest.fixture(scope="session")
def text_file(tmp_path_factory):
    """A short UTF-8 text file (Python docs) to score."""
    path = tmp_path_factory.mktemp("text") / "held_out.txt"
    path.write_text("\n\n".join(calibration_texts(4)), encoding="utf-8")
    return path


@pytest.fixture()
def ids():
    """A fixed stream of 70 token ids below the tiny vocabulary size."""
    return torch.randint(0, 384, (70,), generator=torch.Generator().manual_seed(1))
