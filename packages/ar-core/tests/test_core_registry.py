"""Plugin registries: registration, unknown names, known-but-not-installed plugins, entry points."""

from __future__ import annotations

import pytest

from ar_core.errors import PluginError
from ar_core.registry import FORMATS, Registry


def test_register_and_get_case_insensitively():
    reg = Registry("widget", "ar.test-widgets")
    reg.register("Foo", 1)

    @reg.register("bar")
    class Bar:
        pass

    assert reg.get("FOO") == 1 and reg.get("bar") is Bar
    assert reg.names() == ["bar", "foo"]
    reg.unregister("FOO")
    assert reg.names() == ["bar"]


def test_unknown_name_lists_what_is_available():
    reg = Registry("widget", "ar.test-widgets")
    reg.register("foo", 1)
    with pytest.raises(PluginError, match=r"unknown widget 'nope'; available: foo"):
        reg.get("nope")


def test_known_but_missing_plugin_names_the_install():
    reg = Registry("format", "ar.test-formats", {"gguf": "pip install 'ar-export[gguf]'"})
    with pytest.raises(PluginError, match=r"pip install 'ar-export\[gguf\]'"):
        reg.get("gguf")
    assert reg.known_names() == ["gguf"] and not reg.is_available("gguf")


def test_entry_point_that_fails_to_import_names_the_install(monkeypatch):
    class BrokenEntryPoint:
        name = "gguf"

        def load(self):
            raise ImportError("No module named 'gguf'")

    reg = Registry("format", "ar.test-formats", {"gguf": "pip install 'ar-export[gguf]'"})
    monkeypatch.setattr(reg, "_entry_points", {"gguf": BrokenEntryPoint()})
    with pytest.raises(PluginError, match=r"cannot load .*pip install 'ar-export\[gguf\]'"):
        reg.get("gguf")


def test_the_format_registry_knows_every_format():
    assert {"auto_round", "auto_gptq", "auto_awq", "llm_compressor", "gguf", "mlx", "fp8", "fake"} <= \
        set(FORMATS.known_names())
