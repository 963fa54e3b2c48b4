"""A model folder's tokenizer read with the `tokenizers` package alone (no transformers), for the GGUF writer.

`FolderTokenizer` answers what `ar_export.gguf.tokenizer.write_tokenizer` asks a transformers fast tokenizer:
the backend (tokenizer.json), the vocabulary with added tokens, the special token ids named in
tokenizer_config.json (or special_tokens_map.json), add_bos_token / add_eos_token and the chat template
(tokenizer_config.json or chat_template.jinja).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ar_core.errors import CheckpointError

SPECIALS = ("bos", "eos", "unk", "pad")


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _content(token: Any) -> str | None:
    return token.get("content") if isinstance(token, dict) else token


class FolderTokenizer:
    """The tokenizer files of a Hugging Face model folder, seen as the GGUF writer reads a fast tokenizer."""

    def __init__(self, folder: str | Path):
        from tokenizers import Tokenizer

        folder = Path(folder)
        if not (folder / "tokenizer.json").is_file():
            found = "tokenizer.model only" if (folder / "tokenizer.model").is_file() else "no tokenizer file"
            raise CheckpointError(f"model folder {str(folder)!r} has {found}; GGUF conversion without transformers "
                                  "reads tokenizer.json (save the tokenizer once with transformers to get it)")
        self.backend_tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        config = _json(folder / "tokenizer_config.json")
        named = {**_json(folder / "special_tokens_map.json"), **config}
        for kind in SPECIALS:
            token = _content(named.get(f"{kind}_token"))
            setattr(self, f"{kind}_token_id",
                    None if token is None else self.backend_tokenizer.token_to_id(token))
        self.add_bos_token = bool(config.get("add_bos_token", False))
        self.add_eos_token = bool(config.get("add_eos_token", False))
        template = config.get("chat_template")
        if template is None and (folder / "chat_template.jinja").is_file():
            template = (folder / "chat_template.jinja").read_text()
        self.chat_template = template

    def get_vocab(self) -> dict[str, int]:
        """Token -> id, added tokens included."""
        return self.backend_tokenizer.get_vocab(with_added_tokens=True)
