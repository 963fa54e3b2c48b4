"""How ignore_layers entries and layer_config keys are turned into matchers over layer names."""

from __future__ import annotations

import difflib
import re

from ..errors import LayerConfigError, field_error

# A key holding any of these is a regular expression; any other key is a literal substring.
REGEX_MARKERS = (".*", "^", "$", "|", "(", ")", "[", "]", "?", "+", "\\")  # a backslash: an escape like \.


def parse_ignore(ignore_layers) -> list[str]:
    """ignore_layers as a list of non-empty entries: a comma-separated string or a list/tuple of strings."""
    if ignore_layers is None:
        return []
    if isinstance(ignore_layers, str):
        items = ignore_layers.split(",")
    elif isinstance(ignore_layers, (list, tuple)) and all(isinstance(x, str) for x in ignore_layers):
        items = list(ignore_layers)
    else:
        raise field_error(LayerConfigError, "ignore_layers", ignore_layers,
                          "a comma-separated string or a list of layer-name substrings")
    return [s.strip() for s in items if s.strip()]


def substring_regex(text: str) -> re.Pattern:
    """Match `text` anywhere in a name; text ending in a digit must be followed by '.' or the end of the name.

    This is the reference's "append a '.' to entries ending in a digit" rule ('layers.1' must not hit 'layers.10'),
    widened so that a name ending exactly in the entry ('mlp.fc1' for 'fc1') still matches.
    """
    tail = r"(?=\.|$)" if text[-1:].isdigit() else ""
    return re.compile(re.escape(text) + tail)


def is_regex(key: str) -> bool:
    """True when a layer_config key uses regex syntax (see REGEX_MARKERS) rather than being a plain substring."""
    return any(m in key for m in REGEX_MARKERS)


def key_regex(key: str) -> re.Pattern:
    """Compile a non-exact layer_config key: a plain substring, or a regex whose bare dots are taken literally.

    A '.' not escaped and not followed by a quantifier (* + ? {) means a literal dot, as in layer names, so
    'layers.*.mlp' matches 'model.layers.3.mlp' but not 'model_layers3xmlp'.
    """
    if not is_regex(key):
        return substring_regex(key)
    escaped = re.sub(r"(?<!\\)\.(?![*+?{])", r"\\.", key)
    try:
        return re.compile(escaped)
    except (re.error, RecursionError, OverflowError) as e:
        raise field_error(LayerConfigError, "layer_config key", key, f"a valid regular expression ({e})") from None


def closest_names(pattern: str, names: list[str], n: int = 3) -> list[str]:
    """The `n` layer names most similar to `pattern` (for error messages)."""
    return difflib.get_close_matches(pattern, names, n=n, cutoff=0.0)


def no_match_error(field: str, pattern: str, names: list[str]) -> LayerConfigError:
    """The strict-mode error for a pattern that matches no layer, naming the closest layer names."""
    near = ", ".join(closest_names(pattern, names)) or "(the model has no layers)"
    return LayerConfigError(f"{field} entry {pattern!r} matches no quantizable layer; closest layer names: {near}. "
                            "Fix the name, or pass strict=False to skip unmatched entries.")
