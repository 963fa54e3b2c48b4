"""Error messages at the CLI boundary: the library names its Python keywords (`resume=False`,
`trust_remote_code=True`, ...); the CLI says the flags that do the same, or drops advice no flag can follow."""

from __future__ import annotations

import re

# (keyword phrase as the library writes it, what the CLI says instead), applied in order
CLI_WORDING = (
    (r"trust_remote_code=False \(the default\)", "no --trust_remote_code was given"),
    (r"trust_remote_code=True", "--trust_remote_code"),
    (r"resume=False", "--no-resume"),
    (r"resume=True", "--resume"),
    (r"\(pass overwrite=True, or --overwrite, to replace it\)", "(pass --overwrite to replace it)"),
    (r"overwrite=True", "--overwrite"),
    (r"Fix the name, or pass strict=False to skip unmatched entries\.", "Fix the name or drop the entry."),
)


def cli_message(text: str) -> str:
    """`text` (an ArError's message) with Python keywords replaced by the CLI flags that set them."""
    for pattern, flag in CLI_WORDING:
        text = re.sub(r"(?<![\w-])" + pattern, flag, text)
    return text
