"""Chat templates: the JSON schema, validation errors naming the field, user files, and the registry."""

import json

import pytest

from ar_mllm import TEMPLATES, TemplateError, get_template, load_template, register_template
from ar_mllm.templates import template_from_dict

BUILTINS = {"default", "llava", "qwen2_vl", "qwen2_5_vl", "mllama", "gemma3", "idefics3", "smolvlm", "mistral3",
            "phi3_v"}


def test_builtins_cover_the_supported_families():
    assert BUILTINS <= set(TEMPLATES)
    for name in BUILTINS:
        assert TEMPLATES[name].model_type == name


def test_render_formats_each_role_joins_with_separator_and_replaces_tokens():
    t = template_from_dict({"model_type": "x", "format_user": "U:{{content}}", "format_assistant": "A:{{content}}",
                            "format_system": "S:{{content}}", "format_separator": "|", "default_system": "be nice",
                            "replace_tokens": ["<image>", "<img1>", "cat", "dog"]})
    text = t.render([{"role": "human", "content": "<image> a cat"}, {"role": "gpt", "content": "cat!"}])
    assert text == "S:be nice|U:<img1> a dog|A:dog!"
    # a system message in the conversation wins over default_system
    assert t.render([{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}]) == "S:sys|U:hi"
    assert t.replace_tokens == (("<image>", "<img1>"), ("cat", "dog"))


def test_qwen2_vl_template_puts_the_vision_pad_tokens_in():
    text = TEMPLATES["qwen2_vl"].render([{"role": "user", "content": "<image>\nWhat is this?"}])
    assert "<|vision_start|><|image_pad|><|vision_end|>\nWhat is this?" in text
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>")


def test_load_from_user_file_round_trips(tmp_path):
    data = {"model_type": "mine", "format_user": "[U]{{content}}", "replace_tokens": ["a", "b"], "extra_encode": True,
            "processor": "llava", "default_dataset": "skimage"}
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(data))
    t = load_template(path)
    assert t.format_user == "[U]{{content}}" and t.extra_encode and t.processor == "llava"
    assert template_from_dict(t.to_dict()) == t
    assert get_template(str(path)) == t


@pytest.mark.parametrize("data, field", [
    ({"format_user": "{{content}}"}, "model_type"),
    ({"model_type": "x", "format_usr": "{{content}}"}, "format_usr"),
    ({"model_type": "x", "format_user": "no placeholder"}, "format_user"),
    ({"model_type": "x", "format_assistant": 3}, "format_assistant"),
    ({"model_type": "x", "replace_tokens": ["a", "b", "c"]}, "replace_tokens"),
    ({"model_type": "x", "replace_tokens": "a,b"}, "replace_tokens"),
    ({"model_type": "x", "extra_encode": "yes"}, "extra_encode"),
    ({"model_type": "x", "processor": "nope"}, "processor"),
    ({"model_type": ""}, "model_type"),
    ({"model_type": "x", "format_separator": None}, "format_separator"),
])
def test_validation_errors_name_the_field(data, field):
    with pytest.raises(TemplateError, match=field):
        template_from_dict(data)


def test_bad_files_and_unknown_roles(tmp_path):
    with pytest.raises(TemplateError, match="template"):
        load_template(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(TemplateError, match="not valid JSON"):
        load_template(bad)
    with pytest.raises(TemplateError, match="role"):
        TEMPLATES["default"].format_turn("narrator", "x")


def test_registry_refuses_duplicates_and_unknown_types_fall_back_to_default():
    t = register_template({"model_type": "test_mllm_custom", "format_user": "<{{content}}>"})
    try:
        assert get_template("test_mllm_custom") is t
        with pytest.raises(TemplateError, match="model_type"):
            register_template({"model_type": "test_mllm_custom"})
        assert register_template({"model_type": "test_mllm_custom"}, overwrite=True).format_user == "{{content}}"
    finally:
        TEMPLATES.pop("test_mllm_custom")
    assert get_template("some_unknown_vlm") is TEMPLATES["default"]
