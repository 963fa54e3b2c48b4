"""Chat templates of vision-language models: the JSON schema, loading from a user's file, and the registry.

A template turns a conversation (a list of {"role", "content"} messages) into the text a model was trained on.
JSON fields (all optional except model_type):

    model_type          the model family it serves ("llava", "qwen2_vl", ...); the registry key
    format_user, format_assistant, format_system, format_observation, format_function
                        strings holding one "{{content}}" placeholder, one per role
    format_separator    text between turns (default "\\n")
    default_system      system prompt used when the conversation has none (default "": no system turn)
    replace_tokens      flat list [old1, new1, old2, new2, ...] of substitutions applied to each content,
                        e.g. the generic "<image>" placeholder -> the model's own image token
    extra_encode        True: this template renders the conversation even when the HF processor has its own
                        chat template (the "hf" processor otherwise prefers the processor's)
    processor           name of a registered processor (`ar_mllm.processors.PROCESSORS`, default "hf")
    default_dataset     calibration dataset used when the user gives none (default: ar_algos' text default)
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from ar_core.errors import ArError, field_error

from .processors import PROCESSORS

log = logging.getLogger("ar_mllm.templates")

PLACEHOLDER = "{{content}}"
_ROLE_FIELDS = {"user": "format_user", "assistant": "format_assistant", "system": "format_system",
                "observation": "format_observation", "function": "format_function"}
# Roles of llava-style conversation files map onto the template's roles.
ROLE_ALIASES = {"human": "user", "gpt": "assistant", "model": "assistant", "tool": "observation"}


class TemplateError(ArError):
    """A chat template is malformed (the message names the field, the value and what is allowed)."""


@dataclass(frozen=True)
class Template:
    """A validated chat template (see the module docstring for the meaning of each field)."""

    model_type: str
    format_user: str = PLACEHOLDER
    format_assistant: str = PLACEHOLDER
    format_system: str = PLACEHOLDER
    format_observation: str = PLACEHOLDER
    format_function: str = PLACEHOLDER
    format_separator: str = "\n"
    default_system: str = ""
    replace_tokens: tuple[tuple[str, str], ...] = field(default=())
    extra_encode: bool = False
    processor: str = "hf"
    default_dataset: str | None = None

    def replace(self, text: str) -> str:
        """`text` with every replace_tokens substitution applied in order."""
        for old, new in self.replace_tokens:
            text = text.replace(old, new)
        return text

    def format_turn(self, role: str, content: str) -> str:
        """One message rendered with its role's format (roles: user, assistant, system, observation, function)."""
        key = _ROLE_FIELDS.get(ROLE_ALIASES.get(role, role))
        if key is None:
            raise field_error(TemplateError, "role", role, f"one of {sorted(_ROLE_FIELDS)} or {sorted(ROLE_ALIASES)}")
        return getattr(self, key).replace(PLACEHOLDER, self.replace(content))

    def render(self, messages: list[dict[str, str]], system: str | None = None) -> str:
        """The conversation as one string: a system turn (the messages', `system` or default_system) then the turns."""
        if not isinstance(messages, list) or not all(isinstance(m, dict) and "content" in m for m in messages):
            raise field_error(TemplateError, "messages", messages, "a list of {'role': ..., 'content': ...} dicts")
        turns = [m for m in messages if m.get("role") != "system"]
        given = [m["content"] for m in messages if m.get("role") == "system"]
        prompt = given[0] if given else (system if system is not None else self.default_system)
        parts = [self.format_turn("system", prompt)] if prompt else []
        parts += [self.format_turn(m.get("role", "user"), m["content"]) for m in turns]
        return self.format_separator.join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The template in its JSON form (replace_tokens as the flat list)."""
        out = asdict(self)
        out["replace_tokens"] = [t for pair in self.replace_tokens for t in pair]
        return out


def _check_str(name: str, value: Any, placeholder: bool) -> str:
    if not isinstance(value, str):
        raise field_error(TemplateError, name, value, "a string")
    if placeholder and PLACEHOLDER not in value:
        raise field_error(TemplateError, name, value, f"a string holding the placeholder {PLACEHOLDER!r}")
    return value


def _pairs(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(t, str) for t in value) or len(value) % 2:
        raise field_error(TemplateError, "replace_tokens", value,
                          "a flat list of strings of even length: [old1, new1, old2, new2, ...]")
    return tuple((value[i], value[i + 1]) for i in range(0, len(value), 2))


def template_from_dict(data: dict[str, Any]) -> Template:
    """Validate a template's JSON fields and build it; errors name the field, the value and what is allowed."""
    if not isinstance(data, dict):
        raise field_error(TemplateError, "template", data, "a JSON object of template fields")
    known = {f.name for f in fields(Template)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise field_error(TemplateError, "template field", unknown[0], f"one of {sorted(known)}")
    if "model_type" not in data:
        raise TemplateError("template field 'model_type' is missing: it names the model family, e.g. 'llava'")
    values = dict(data)
    if not isinstance(values["model_type"], str) or not values["model_type"].strip():
        raise field_error(TemplateError, "model_type", values["model_type"], "a non-empty string")
    for name in _ROLE_FIELDS.values():
        if name in values:
            _check_str(name, values[name], placeholder=True)
    for name in ("format_separator", "default_system"):
        if name in values:
            _check_str(name, values[name], placeholder=False)
    if "replace_tokens" in values:
        values["replace_tokens"] = _pairs(values["replace_tokens"] or [])
    if "extra_encode" in values and not isinstance(values["extra_encode"], bool):
        raise field_error(TemplateError, "extra_encode", values["extra_encode"], "true or false")
    if "processor" in values and values["processor"] not in PROCESSORS:
        raise field_error(TemplateError, "processor", values["processor"], f"a registered processor: "
                          f"{', '.join(sorted(PROCESSORS))} (add one with ar_mllm.register_processor)")
    if values.get("default_dataset") is not None:
        _check_str("default_dataset", values["default_dataset"], placeholder=False)
    return Template(**values)


def load_template(source: str | Path | dict[str, Any]) -> Template:
    """A template from a JSON file path or an already-parsed dict."""
    if isinstance(source, dict):
        return template_from_dict(source)
    path = Path(source)
    if not path.is_file():
        raise field_error(TemplateError, "template", str(source), "a path to an existing JSON template file")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TemplateError(f"template file {str(path)!r} is not valid JSON: {exc}") from exc
    return template_from_dict(data)


TEMPLATES: dict[str, Template] = {}


def register_template(template: Template | dict[str, Any] | str | Path, overwrite: bool = False) -> Template:
    """Add a template (object, dict or JSON file) to the registry under its model_type; returns it."""
    t = template if isinstance(template, Template) else load_template(template)
    if t.model_type in TEMPLATES and not overwrite:
        raise field_error(TemplateError, "model_type", t.model_type, "a name not yet registered (or overwrite=True)")
    TEMPLATES[t.model_type] = t
    return t


def get_template(name: str | Path | Template | dict | None) -> Template:
    """The template for a model_type (unknown types fall back to "default"), a JSON file or dict, or a Template."""
    if isinstance(name, Template):
        return name
    if isinstance(name, dict):
        return template_from_dict(name)
    if name is None:
        return TEMPLATES["default"]
    if isinstance(name, Path) or str(name).endswith(".json"):
        return load_template(name)
    if name not in TEMPLATES:
        log.warning("no chat template for model_type %r; using the default template", name)
        return TEMPLATES["default"]
    return TEMPLATES[name]


def _register_builtins() -> None:
    for entry in sorted(resources.files(__package__).joinpath("templates").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            register_template(template_from_dict(json.loads(entry.read_text())))


_register_builtins()
