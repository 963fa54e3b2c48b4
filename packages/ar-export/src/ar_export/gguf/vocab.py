"""A model folder's tokenizer read without transformers, for the GGUF writer.

`FolderTokenizer` reads tokenizer.json with the `tokenizers` package and answers what
`ar_export.gguf.tokenizer.write_tokenizer` asks a transformers fast tokenizer: the backend, the vocabulary with added
tokens, the special token ids named in tokenizer_config.json (or special_tokens_map.json), add_bos_token /
add_eos_token and the chat template (tokenizer_config.json or chat_template.jinja). `SentencePieceFolder` covers a
folder with only tokenizer.model: gguf-py's SentencePiece vocabulary (pieces, scores, types; needs `sentencepiece`)
and its SpecialVocab (special ids, add_bos / add_eos, chat template), as llama.cpp's converter writes them.
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


class SentencePieceFolder:
    """A folder's tokenizer.model (+ added_tokens.json, tokenizer_config.json) written as llama.cpp's "llama"
    vocabulary; `write_vocab` is what `write_tokenizer` calls for it."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def write_vocab(self, w, vocab_size: int) -> None:
        """Write tokens, scores, token types (padded to vocab_size with unused pieces) and the special vocab."""
        import gguf
        from gguf.vocab import SentencePieceVocab

        try:
            vocab = SentencePieceVocab(self.folder)
        except RuntimeError as exc:  # sentencepiece is not installed
            raise CheckpointError(f"model folder {str(self.folder)!r} has tokenizer.model but no tokenizer.json: "
                                  f"{exc} (pip install sentencepiece)") from None
        tokens, scores, types = (list(x) for x in zip(*vocab.all_tokens()))
        for i in range(len(tokens), vocab_size):
            tokens.append(f"[PAD{i}]".encode())
            scores.append(-1000.0)
            types.append(gguf.TokenType.UNUSED)
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_list(tokens)
        w.add_token_scores(scores)
        w.add_token_types([int(t) for t in types])
        gguf.SpecialVocab(self.folder, load_merges=False, n_vocab=len(tokens)).add_to_gguf(w, quiet=True)


def folder_tokenizer(folder: str | Path) -> FolderTokenizer | SentencePieceFolder:
    """The reader of a folder's tokenizer: tokenizer.json when present, else tokenizer.model; CheckpointError when
    there is neither."""
    folder = Path(folder)
    if (folder / "tokenizer.json").is_file():
        return FolderTokenizer(folder)
    if (folder / "tokenizer.model").is_file():
        return SentencePieceFolder(folder)
    raise CheckpointError(f"model folder {str(folder)!r} has no tokenizer.json or tokenizer.model")
