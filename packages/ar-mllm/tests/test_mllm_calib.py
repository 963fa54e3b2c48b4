"""Multimodal calibration: conversation files, media directories, padding of different sizes, the text/image switch."""

import json

import pytest
import torch
from PIL import Image

from ar_core.errors import DataError
from ar_mllm.calib import image_text_dataset, image_text_samples, needs_image_data, pad_samples
from ar_mllm.conversations import (is_conversation_dataset, load_conversations, parse_extra_data_dir,
                                   skimage_conversations)
from ar_mllm.processors import get_processor
from ar_mllm.tiny import IMAGE_TOKEN_ID, tiny_llava_processor, tiny_tokenizer


@pytest.fixture(scope="module")
def llava():
    tok = tiny_tokenizer()
    return get_processor("llava", processor=tiny_llava_processor(tok), template="llava")


def _write_set(tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    Image.new("RGB", (64, 40), (255, 0, 0)).save(images / "red.png")
    Image.new("RGB", (30, 90), (0, 0, 255)).save(images / "blue.png")
    records = [
        {"id": "1", "image": "red.png", "conversations": [
            {"from": "human", "value": "<image>\nwhat color is this?"}, {"from": "gpt", "value": "red."}]},
        {"id": "2", "image": "blue.png", "conversations": [
            {"from": "human", "value": "<image>\nwhat is it?"},
            {"from": "gpt", "value": "it is a very long and thin blue picture of the sea, far away from home."}]},
        {"id": "3", "image": "missing.png", "conversations": [
            {"from": "human", "value": "<image>\nhi"}, {"from": "gpt", "value": "no."}]},
    ]
    path = tmp_path / "conv.json"
    path.write_text(json.dumps(records))
    return path, images


def test_extra_data_dir_forms(tmp_path):
    (tmp_path / "v").mkdir()
    assert parse_extra_data_dir(str(tmp_path)) == {"image": tmp_path}
    assert parse_extra_data_dir(f"image={tmp_path},video={tmp_path / 'v'}") == {"image": tmp_path,
                                                                                "video": tmp_path / "v"}
    assert parse_extra_data_dir(None) == {}
    with pytest.raises(DataError, match="extra_data_dir"):
        parse_extra_data_dir(f"pictures={tmp_path}")
    with pytest.raises(DataError, match=r"extra_data_dir\[audio\]"):
        parse_extra_data_dir(f"audio={tmp_path / 'nope'}")


def test_llava_json_file_relative_images_missing_ones_skipped_and_sizes_padded(tmp_path, llava):
    path, images = _write_set(tmp_path)
    assert is_conversation_dataset(str(path)) and not is_conversation_dataset("wiki")
    convs = load_conversations(path)
    assert convs[0].messages[1] == {"role": "gpt", "content": "red."} and convs[2].media == {"image": ["missing.png"]}
    samples = image_text_samples(llava, path, extra_data_dir=str(images), nsamples=8, seqlen=512, seed=0)
    assert len(samples) == 2  # missing.png skipped
    lengths = [int(s["attention_mask"].sum()) for s in samples]
    assert len(set(lengths)) == 2  # different text lengths ...
    width = samples[0]["input_ids"].shape[1]
    assert all(s["input_ids"].shape == (1, width) for s in samples) and width == max(lengths) + 1  # ... one width
    for s in samples:
        n = int(s["attention_mask"].sum())
        assert s["attention_mask"][0, :n].all() and not s["attention_mask"][0, n:].any()
        assert (s["input_ids"][0, n:] == 0).all()  # <pad>
        assert int((s["input_ids"] == IMAGE_TOKEN_ID).sum()) == 16
        assert s["pixel_values"].shape == (1, 3, 32, 32)
    with pytest.raises(DataError, match="no usable"):
        image_text_samples(llava, path, extra_data_dir=None, nsamples=8)  # no image found without the directory
    with pytest.raises(DataError, match="no usable"):
        image_text_samples(llava, path, extra_data_dir=str(images), seqlen=10)  # all too long


def test_skimage_set_has_photos_of_different_sizes(llava):
    convs = skimage_conversations()
    assert len(convs) >= 10
    sizes = {Image.open(c.media["image"][0]).size for c in convs}
    assert len(sizes) >= 5
    samples = image_text_samples(llava, "skimage", nsamples=4, seed=1)
    assert len(samples) == 4 and len({s["input_ids"].shape for s in samples}) == 1


def test_pad_samples_pads_token_axis_inputs_only():
    a = {"input_ids": torch.tensor([[5, 6, 7]]), "attention_mask": torch.ones(1, 3, dtype=torch.long),
         "cross_attention_mask": torch.ones(1, 3, 1, 2), "pixel_values": torch.randn(1, 3, 4, 4)}
    b = {"input_ids": torch.tensor([[5, 6, 7, 8, 9]]), "attention_mask": torch.ones(1, 5, dtype=torch.long),
         "cross_attention_mask": torch.ones(1, 5, 1, 2), "pixel_values": torch.randn(1, 3, 4, 4)}
    pa, pb = pad_samples([a, b], pad_id=1)
    assert pa["input_ids"].tolist() == [[5, 6, 7, 1, 1, 1]] and pb["input_ids"].tolist() == [[5, 6, 7, 8, 9, 1]]
    assert pa["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0]]
    assert pa["cross_attention_mask"].shape == (1, 6, 1, 2) and pa["cross_attention_mask"][0, 3:].sum() == 0
    assert pa["pixel_values"] is a["pixel_values"]
    same = pad_samples([a, a], pad_id=1)
    assert same[0]["input_ids"].shape == (1, 3)  # equal lengths are left alone


def test_switch_to_image_text_data():
    assert not needs_image_data("llava", None, False)
    assert not needs_image_data("qwen2_vl", "wiki", False)
    assert needs_image_data("mllama", None, False)
    assert needs_image_data("llava", None, True)
    assert needs_image_data("llava", "skimage", False)
    assert needs_image_data("llava", [{"image": "a.png", "conversations": []}], False)
    assert image_text_dataset(None) == "skimage" and image_text_dataset("wiki") == "skimage"
    assert image_text_dataset("skimage") == "skimage"


def test_video_and_audio_media_resolve_under_their_own_directories(tmp_path):
    from ar_mllm.conversations import resolve_media, to_conversation

    (tmp_path / "v").mkdir()
    (tmp_path / "a").mkdir()
    (tmp_path / "v" / "clip.mp4").write_bytes(b"\0")
    (tmp_path / "a" / "x.wav").write_bytes(b"\0")
    absolute = tmp_path / "pic.png"
    Image.new("RGB", (4, 4)).save(absolute)
    conv = to_conversation({"video": "clip.mp4", "audios": ["x.wav"], "image": str(absolute),
                            "messages": [{"role": "user", "content": "<image> what happens?"}]})
    dirs = parse_extra_data_dir(f"video={tmp_path / 'v'},audio={tmp_path / 'a'}")
    assert resolve_media(conv, dirs) == {"image": [absolute], "video": [tmp_path / "v" / "clip.mp4"],
                                         "audio": [tmp_path / "a" / "x.wav"]}
    assert resolve_media(conv, {"video": tmp_path / "v"}) is None  # x.wav is not found without its directory
    with pytest.raises(DataError, match="conversations"):
        to_conversation({"image": "a.png"})
