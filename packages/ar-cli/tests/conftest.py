"""Fixtures for ar-cli tests: a saved tiny random Llama with its tokenizer, and a short text file."""

from __future__ import annotations

import pytest

from ar_export.testing import calibration_texts, save_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A saved float32 tiny Llama + tokenizer directory (16-bit, no quantization config)."""
    return save_tiny_model(tmp_path_factory.mktemp("cli") / "tiny-llama")


@pytest.fixture(scope="session")
def text_path(tmp_path_factory):
    """A short UTF-8 text file to evaluate on."""
    path = tmp_path_factory.mktemp("cli-text") / "held_out.txt"
    path.write_text("\n\n".join(calibration_texts(4)), encoding="utf-8")
    return path
