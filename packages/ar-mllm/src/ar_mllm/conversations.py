"""Image-text conversation datasets: llava-style JSON files, in-memory records, and the offline "skimage" set.

A record is llava-style: {"image": "file.jpg", "conversations": [{"from": "human", "value": "<image>\\n..."},
{"from": "gpt", "value": "..."}]} (also "video"/"audio" keys, a list of files per key, or "messages" with
{"role", "content"} items). Media paths are absolute, or relative to the directory given for their kind in
`extra_data_dir` ("dir" for images, or "image=dir1,video=dir2,audio=dir3").
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ar_core.errors import DataError, field_error

MEDIA_KINDS = ("image", "video", "audio")
SKIMAGE = "skimage"
# Hand-written captions of photos shipped in the scikit-image wheel (skimage/data).
_SKIMAGE_CAPTIONS = {
    "astronaut.png": "An astronaut in an orange flight suit poses in front of an American flag, holding a helmet.",
    "coffee.png": "A cup of coffee with latte art on a saucer, seen from above on a wooden table.",
    "chelsea.png": "A tabby cat named Chelsea looks to the side while sitting indoors.",
    "rocket.jpg": "A rocket stands on its launch pad under a clear sky, next to the service tower.",
    "motorcycle_left.png": "A red and black motorcycle is parked in front of a plain background.",
    "hubble_deep_field.jpg": "Thousands of distant galaxies scattered across a dark deep-space image.",
    "camera.png": "A black and white photo of a man with a camera on a tripod in a grassy field.",
    "coins.png": "Old coins of different sizes laid out in rows on a dark background.",
    "horse.png": "The silhouette of a horse standing in profile.",
    "moon.png": "A close view of the surface of the moon with craters and dark plains.",
    "retina.jpg": "A photograph of the back of a human eye showing the retina and its blood vessels.",
    "clock_motion.png": "A wall clock photographed with motion blur.",
}
_QUESTIONS = ("Describe this image.", "What is shown in the picture?", "What do you see here?",
              "Write a short caption for this photo.")


@dataclass
class Conversation:
    """One calibration conversation: messages ({"role", "content"}) and media file paths per kind."""

    messages: list[dict[str, str]]
    media: dict[str, list[str]] = field(default_factory=dict)


def parse_extra_data_dir(spec: str | Path | dict | None) -> dict[str, Path]:
    """"dir" (images), "image=dir1,video=dir2,audio=dir3" or a dict -> {kind: directory}; each must exist."""
    if spec is None:
        return {}
    if isinstance(spec, dict):
        pairs = list(spec.items())
    elif isinstance(spec, (str, Path)) and "=" not in str(spec):
        pairs = [("image", spec)]
    elif isinstance(spec, str):
        pairs = [tuple(p.split("=", 1)) if "=" in p else ("", p) for p in spec.split(",") if p.strip()]
    else:
        raise field_error(DataError, "extra_data_dir", spec, "a directory or 'image=dir1,video=dir2,audio=dir3'")
    out: dict[str, Path] = {}
    for kind, path in pairs:
        kind = str(kind).strip()
        if kind not in MEDIA_KINDS:
            raise field_error(DataError, "extra_data_dir", spec, f"keys among {MEDIA_KINDS}, like 'image=dir'")
        folder = Path(str(path).strip()).expanduser()
        if not folder.is_dir():
            raise field_error(DataError, f"extra_data_dir[{kind}]", str(folder), "an existing directory")
        out[kind] = folder
    return out


def skimage_dir() -> Path | None:
    """The directory of scikit-image's sample photos, or None when scikit-image is not installed."""
    spec = importlib.util.find_spec("skimage")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    return folder if folder.is_dir() else None


def skimage_conversations() -> list[Conversation]:
    """Captioning conversations about scikit-image's sample photos (offline image-text calibration data)."""
    folder = skimage_dir()
    if folder is None:
        raise DataError("dataset='skimage' needs the scikit-image package for its sample photos; run "
                        "`pip install scikit-image`, or give a llava-style JSON file and extra_data_dir")
    return [Conversation([{"role": "user", "content": f"<image>\n{_QUESTIONS[i % len(_QUESTIONS)]}"},
                          {"role": "assistant", "content": caption}], {"image": [str(folder / name)]})
            for i, (name, caption) in enumerate(_SKIMAGE_CAPTIONS.items()) if (folder / name).is_file()]


def _messages(record: dict[str, Any], where: str) -> list[dict[str, str]]:
    if "messages" in record:
        items, role_key, text_key = record["messages"], "role", "content"
    elif "conversations" in record:
        items, role_key, text_key = record["conversations"], "from", "value"
    else:
        raise DataError(f"{where} has neither 'conversations' nor 'messages' (keys: {sorted(record)[:8]})")
    if not isinstance(items, list) or not all(isinstance(m, dict) and isinstance(m.get(text_key), str)
                                              for m in items) or not items:
        raise DataError(f"{where}: each turn must be a dict with a string {text_key!r}")
    return [{"role": str(m.get(role_key, "user")), "content": m[text_key]} for m in items]


def to_conversation(record: Any, where: str = "a conversation record") -> Conversation:
    """A llava-style record (or a Conversation) as a Conversation."""
    if isinstance(record, Conversation):
        return record
    if not isinstance(record, dict):
        raise DataError(f"{where} must be a dict, got {type(record).__name__}")
    media = {}
    for kind in MEDIA_KINDS:
        value = record.get(kind) or record.get(kind + "s")
        if value:
            media[kind] = [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
    return Conversation(_messages(record, where), media)


def load_conversations(dataset: Any) -> list[Conversation]:
    """Conversations from "skimage", a JSON (list) or JSONL file of llava-style records, or a list of records."""
    if isinstance(dataset, str) and dataset == SKIMAGE:
        return skimage_conversations()
    if isinstance(dataset, (str, Path)):
        path = Path(dataset).expanduser()
        if not path.is_file():
            raise field_error(DataError, "dataset", str(dataset), "'skimage' or a llava-style JSON/JSONL file "
                              "(hub datasets like liuhaotian/llava_conv_58k need a local copy)")
        try:
            text = path.read_text()
            records = [json.loads(line) for line in text.splitlines() if line.strip()] \
                if path.suffix == ".jsonl" else json.loads(text)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"conversation file {str(path)!r} cannot be read as JSON: {exc}") from exc
        if not isinstance(records, list):
            raise DataError(f"conversation file {str(path)!r} must hold a JSON list of records")
    elif isinstance(dataset, (list, tuple)):
        records = list(dataset)
    else:
        raise field_error(DataError, "dataset", type(dataset).__name__,
                          "'skimage', a llava-style JSON file or a list of conversation records")
    return [to_conversation(r, f"record {i}") for i, r in enumerate(records)]


def is_conversation_dataset(dataset: Any) -> bool:
    """Whether `dataset` names image-text conversations rather than text (for the calibration switch)."""
    if isinstance(dataset, str) and dataset == SKIMAGE:
        return True
    if isinstance(dataset, (str, Path)) and Path(dataset).suffix in (".json", ".jsonl") and Path(dataset).is_file():
        try:
            with open(dataset) as f:
                head = f.read(4096)
        except OSError:
            return False
        return '"conversations"' in head or '"messages"' in head
    if isinstance(dataset, (list, tuple)) and dataset:
        first = dataset[0]
        return isinstance(first, Conversation) or (isinstance(first, dict) and
                                                   ("conversations" in first or "messages" in first))
    return False


def resolve_media(conv: Conversation, dirs: dict[str, Path]) -> dict[str, list[Path]] | None:
    """Absolute media paths of `conv` (relative ones under dirs[kind]); None when a file is missing."""
    out: dict[str, list[Path]] = {}
    for kind, files in conv.media.items():
        paths = []
        for f in files:
            p = Path(f).expanduser()
            if not p.is_absolute() and kind in dirs:
                p = dirs[kind] / p
            if not p.is_file():
                return None
            paths.append(p)
        out[kind] = paths
    return out
