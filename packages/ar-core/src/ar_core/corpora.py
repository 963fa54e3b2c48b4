"""Offline text corpora that ship inside installed packages, read with the standard library only.

Three corpora, each with a fixed, deterministic and disjoint split: "train" is calibration text, "test" is
held-out evaluation text. Never evaluate on "train".

* ``wiki``: English Wikipedia articles from the test data of the installed ``gensim`` package (read directly from
  its bz2 file; gensim is never imported). Articles are taken in file order; every 4th one (indexes 0, 4, 8, ...,
  starting with "Anarchism") is "test", the other three quarters are "train".
* ``pydoc``: CPython's ``pydoc_data.topics`` help topics, sorted by topic name; every 4th topic is "test".
* ``austen``: Jane Austen's novels from the Debian package ``r-cran-janeaustenr``, extracted by the user to the
  directory named by ``$AR_AUSTEN_DIR``. "Pride And Prejudice" is "test"; the other novels are "train".
"""

from __future__ import annotations

import bz2
import functools
import html
import importlib.util
import os
import re
import struct
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

from .errors import DataError, field_error

CORPORA = ("wiki", "pydoc", "austen")
SPLITS = ("train", "test")
WIKI_FILE = "test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
AUSTEN_RDB = "usr/lib/R/site-library/janeaustenr/data/Rdata.rdb"
AUSTEN_TEST = ("Pride And Prejudice",)
_AUSTEN_HOWTO = ("apt-get download r-cran-janeaustenr && dpkg -x r-cran-janeaustenr_1.0.0-1_all.deb DIR, "
                 "then export AR_AUSTEN_DIR=DIR (never apt-get install it: that pulls in R)")
_TEST_EVERY = 4


def gensim_wiki_file() -> Path:
    """Path of the Wikipedia dump that ships in the installed gensim package (located without importing gensim)."""
    spec = importlib.util.find_spec("gensim")
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        path = Path(root) / WIKI_FILE
        if path.is_file():
            return path
    where = f"not found under {roots[0]}" if roots else "gensim is not installed"
    raise DataError(f"the 'wiki' corpus needs gensim's test data file {WIKI_FILE} ({where}); "
                    "run `pip install gensim==4.4.0`")


# ----------------------------------------------------------------------------------------------- wikitext cleaning
def _drop_balanced(text: str, opener: str, closer: str) -> str:
    """Remove every (possibly nested) opener...closer span; an unclosed opener drops the rest of the text."""
    kept, depth, start = [], 0, 0
    for m in re.finditer(re.escape(opener) + "|" + re.escape(closer), text):
        if m.group() == opener:
            if depth == 0:
                kept.append(text[start:m.start()])
            depth += 1
        elif depth:
            depth -= 1
            if depth == 0:
                start = m.end()
    if depth == 0:
        kept.append(text[start:])
    return "".join(kept)


_HIDDEN_LINK = re.compile(r"^\s*(?:file|image|category|media)\s*:", re.I)
_LANGUAGE_LINK = re.compile(r"^[a-z]{2,3}(?:-[a-z]+)*:[^|]*$")


def _link_label(inner: str) -> str:
    """Visible text of a [[target|label]] link; files, categories and interlanguage links show nothing."""
    if _HIDDEN_LINK.match(inner) or _LANGUAGE_LINK.match(inner):
        return ""
    return inner.rsplit("|", 1)[-1]


def _render_links(text: str) -> str:
    """Replace internal links (nesting allowed, e.g. links inside image captions) by their visible text."""
    stack = [[]]
    for piece in re.split(r"(\[\[|\]\])", text):
        if piece == "[[":
            stack.append([])
        elif piece == "]]" and len(stack) > 1:
            inner = "".join(stack.pop())
            stack[-1].append(_link_label(inner))
        else:
            stack[-1].append(piece)
    while len(stack) > 1:  # unclosed links: keep their text
        inner = "".join(stack.pop())
        stack[-1].append(inner)
    return "".join(stack[0])


_MARKUP_LINE = ("*", "#", "|", "!", ":", ";", "{", "}")
_BACK_MATTER = re.compile(r"^==+\s*(?:See also|References|Notes|Footnotes|Citations|Sources|Bibliography|"
                          r"Further reading|External links)\s*==+\s*$", re.M | re.I)


def clean_wikitext(raw: str) -> str:
    """Turn MediaWiki markup into plain prose: templates, tables, references, files and list lines removed."""
    text = html.unescape(raw)
    back_matter = _BACK_MATTER.search(text)  # link lists and citations, not prose
    if back_matter:
        text = text[: back_matter.start()]
    text = re.sub(r"<!--.*?(?:-->|$)", "", text, flags=re.S)
    text = re.sub(r"<ref\b[^>]*/>", "", text, flags=re.I)
    text = re.sub(r"<ref\b[^>]*>.*?</ref\s*>", "", text, flags=re.S | re.I)
    text = _drop_balanced(text, "{{", "}}")
    text = _drop_balanced(text, "{|", "|}")
    text = _render_links(text)
    text = re.sub(r"\[(?:https?:)?//[^\s\]]+\s+([^\]]*)\]", r"\1", text)
    text = re.sub(r"\[(?:https?:)?//[^\s\]]*\]", "", text)
    text = re.sub(r"</?[a-zA-Z][^>]*>", "", text)
    text = re.sub(r"'{2,}", "", text)
    text = re.sub(r"^(=+)\s*(.*?)\s*\1\s*$", r"\2", text, flags=re.M)
    lines = (line.strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line and not line.startswith(_MARKUP_LINE))


@functools.lru_cache(maxsize=2)
def _wiki_articles(path: Path) -> tuple[tuple[str, str], ...]:
    articles = []
    with bz2.open(path, "rb") as stream:
        for _, elem in ET.iterparse(stream, events=("end",)):
            if not elem.tag.endswith("}page"):
                continue
            ns = elem.tag[: -len("page")]
            raw = elem.findtext(f"{ns}revision/{ns}text") or ""
            if elem.findtext(f"{ns}ns") == "0" and not raw.lstrip().lower().startswith("#redirect"):
                body = clean_wikitext(raw)
                if body:
                    articles.append((elem.findtext(f"{ns}title") or "", body))
            elem.clear()
    return tuple(articles)


def wiki_articles() -> dict[str, str]:
    """Every main-namespace, non-redirect article of gensim's Wikipedia test dump: {title: clean text}, file order."""
    try:
        return dict(_wiki_articles(gensim_wiki_file()))
    except (OSError, EOFError, ET.ParseError) as exc:
        raise DataError(f"cannot read gensim's Wikipedia dump ({exc}); reinstall with "
                        "`pip install --force-reinstall gensim==4.4.0`") from exc


# ------------------------------------------------------------------------------------------------ Jane Austen
def _read_r_strings(buf: bytes) -> list[str]:
    """Decode one R XDR-serialized character vector (the format of R's lazy-load databases)."""
    if buf[:2] != b"X\n":
        raise DataError("not an R XDR serialization (expected it to start with 'X\\n')")
    version = struct.unpack_from(">i", buf, 2)[0]
    pos = 14  # magic, then version, writer version, minimal reader version
    if version == 3:
        pos += 4 + struct.unpack_from(">i", buf, pos)[0]  # native encoding name
    flags, length = struct.unpack_from(">ii", buf, pos)
    if flags & 0xFF != 16:
        raise DataError(f"R object of type {flags & 0xFF} found where a character vector (16) was expected")
    pos += 8
    strings = []
    for _ in range(length):
        size = struct.unpack_from(">i", buf, pos + 4)[0]
        pos += 8
        if size < 0:  # NA_character_
            strings.append("")
            continue
        strings.append(buf[pos:pos + size].decode("utf-8", "replace"))
        pos += size
    return strings


def austen_novels(root: str | os.PathLike | None = None) -> dict[str, str]:
    """Jane Austen's novels {title: text} from an extracted r-cran-janeaustenr .deb (default: $AR_AUSTEN_DIR)."""
    root = root if root is not None else os.environ.get("AR_AUSTEN_DIR")
    if not root:
        raise DataError(f"the 'austen' corpus needs AR_AUSTEN_DIR to point to an extracted Debian package: "
                        f"{_AUSTEN_HOWTO}")
    rdb = Path(root) / AUSTEN_RDB
    if not rdb.is_file():
        raise DataError(f"AR_AUSTEN_DIR={str(root)!r} has no {AUSTEN_RDB}; get it with: {_AUSTEN_HOWTO}")
    data, pos, novels = rdb.read_bytes(), 0, {}
    try:
        while pos < len(data):  # records: 4-byte uncompressed length, then one zlib stream
            inflater = zlib.decompressobj()
            lines = _read_r_strings(inflater.decompress(data[pos + 4:]))
            pos = len(data) - len(inflater.unused_data)
            title = next((line.strip().title() for line in lines if line.strip()), f"Book {len(novels) + 1}")
            novels[title] = "\n".join(lines)
    except (zlib.error, struct.error) as exc:
        raise DataError(f"{rdb} is corrupt ({exc}); extract the .deb again: {_AUSTEN_HOWTO}") from exc
    return novels


# ------------------------------------------------------------------------------------------------ public API
def _pydoc_topics() -> dict[str, str]:
    from pydoc_data.topics import topics

    return {name: topics[name] for name in sorted(topics)}


def _split_every(docs: dict[str, str], split: str) -> list[str]:
    texts = list(docs.values())
    held_out = texts[::_TEST_EVERY]
    return held_out if split == "test" else [t for i, t in enumerate(texts) if i % _TEST_EVERY]


def corpus_documents(name: str, split: str) -> list[str]:
    """The documents (articles, topics, novels) of corpus `name` in split "train" (calibration) or "test" (eval)."""
    if name not in CORPORA:
        raise field_error(DataError, "corpus", name, f"one of {', '.join(CORPORA)}")
    if split not in SPLITS:
        raise field_error(DataError, "split", split, "'train' (calibration text) or 'test' (held-out evaluation)")
    if name == "wiki":
        return _split_every(wiki_articles(), split)
    if name == "pydoc":
        return _split_every(_pydoc_topics(), split)
    novels = austen_novels()
    return [text for title, text in novels.items() if (title in AUSTEN_TEST) == (split == "test")]


def corpus_text(name: str, split: str) -> str:
    """Corpus `name`, split "train" (calibration) or "test" (evaluation), as one string (blank-line separated)."""
    return "\n\n".join(corpus_documents(name, split))
