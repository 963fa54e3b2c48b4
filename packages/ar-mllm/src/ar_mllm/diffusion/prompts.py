"""Calibration and evaluation captions: a list, a local .txt/.tsv/.json file, the embedded default, or COCO.

.txt: one caption a line; .tsv: the `caption` column (else the last one) of a tab-separated file with a header;
.json: a list of strings or of records with a "caption" (or "prompt"/"text") field. "coco2014": the COCO 2014
captions from the Hugging Face hub, refused at once when HF_HUB_OFFLINE is set.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from ar_core.errors import DataError, field_error

COCO = "coco2014"
COCO_REPO = "sentence-transformers/coco-captions"
ALLOWED = ("a list of captions, a .txt/.tsv/.json file of captions, None (the embedded captions) or 'coco2014' "
           "(needs the hub)")
DEFAULT_CAPTIONS = (
    "a red bicycle leaning against a brick wall", "two dogs running on a sandy beach at sunset",
    "a bowl of fresh fruit on a wooden kitchen table", "a city street at night with wet pavement and neon signs",
    "a snowy mountain peak under a clear blue sky", "a cat sleeping on a windowsill in the afternoon sun",
    "a sailboat on a calm lake surrounded by pine trees", "a plate of pasta with tomato sauce and basil",
    "an old steam train crossing a stone bridge", "a child flying a kite in a green field",
    "a lighthouse on a rocky coast during a storm", "a cup of coffee next to an open book",
    "a herd of elephants walking across the savanna", "a modern glass building reflecting clouds",
    "a bunch of colorful balloons tied to a fence", "a vintage car parked in front of a diner",
    "a field of sunflowers under a summer sky", "a man riding a horse along a dirt road",
    "a wooden cabin in a snowy forest", "a bowl of ramen with an egg and green onions",
    "a tabby cat playing with a ball of yarn", "a busy market with stalls of vegetables",
    "an astronaut floating above the earth", "a waterfall in a tropical jungle",
    "a pair of running shoes on a gym floor", "a small boat tied to a wooden dock at dawn",
    "a giraffe eating leaves from a tall tree", "a desk with a laptop, a lamp and a plant",
    "a slice of chocolate cake on a white plate", "a hot air balloon over rolling hills",
    "a fox standing in fresh snow", "a bridge over a river in an autumn park",
    "a group of friends having a picnic on the grass", "a pizza with mushrooms and olives",
    "a colorful parrot sitting on a branch", "a quiet library with tall wooden shelves",
    "a surfer riding a large ocean wave", "a bright yellow taxi in heavy traffic",
    "a vase of tulips on a sunny balcony", "a robot made of shiny metal in a workshop",
)


def _from_file(path: Path) -> list[str]:
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    if suffix == ".txt":
        return [line.strip() for line in text.splitlines() if line.strip()]
    if suffix == ".tsv":
        rows = list(csv.reader(text.splitlines(), delimiter="\t"))
        if not rows:
            return []
        header = [h.strip().lower() for h in rows[0]]
        col = header.index("caption") if "caption" in header else len(header) - 1
        return [r[col].strip() for r in rows[1:] if len(r) > col and r[col].strip()]
    if suffix == ".json":
        data = json.loads(text)
        if not isinstance(data, list):
            raise field_error(DataError, "prompts", str(path), "a JSON list of captions or of records")
        out = []
        for item in data:
            value = item if isinstance(item, str) else next(
                (item[k] for k in ("caption", "prompt", "text") if isinstance(item, dict) and k in item), None)
            if not isinstance(value, str):
                raise field_error(DataError, "prompts", str(path), "a JSON list of strings or of records with a "
                                  "'caption', 'prompt' or 'text' string")
            out.append(value)
        return out
    raise field_error(DataError, "prompts", str(path), "a file ending in .txt, .tsv or .json")


def _coco(n: int) -> list[str]:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        raise field_error(DataError, "prompts", COCO, "a local caption file or list while HF_HUB_OFFLINE is set "
                          "(the COCO captions come from the hub)")
    from datasets import load_dataset

    rows = load_dataset(COCO_REPO, split=f"train[:{n}]")
    return [r["caption"] if "caption" in r else next(iter(r.values())) for r in rows]


def load_prompts(prompts: Any, n: int | None = None) -> list[str]:
    """The first `n` (all when None) captions of `prompts` (see the module docstring); DataError when empty."""
    if prompts is None:
        out = list(DEFAULT_CAPTIONS)
    elif isinstance(prompts, str) and prompts.lower() == COCO:
        out = _coco(n or 128)
    elif isinstance(prompts, (str, Path)):
        path = Path(prompts).expanduser()
        if not path.is_file():
            raise field_error(DataError, "prompts", str(prompts), ALLOWED)
        out = _from_file(path)
    elif isinstance(prompts, (list, tuple)) and all(isinstance(p, str) for p in prompts):
        out = list(prompts)
    else:
        raise field_error(DataError, "prompts", type(prompts).__name__, ALLOWED)
    out = out[:n] if n else out
    if not out:
        raise field_error(DataError, "prompts", str(prompts), "at least one caption")
    return out
