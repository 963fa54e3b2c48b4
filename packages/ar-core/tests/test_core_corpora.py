"""Offline corpora: wikitext cleaning, gensim's Wikipedia dump, pydoc topics, the Austen reader and the splits."""

from __future__ import annotations

import struct
import zlib

import pytest

from ar_core import corpora
from ar_core.errors import DataError


# ------------------------------------------------------------------------------------------------ wikitext
def test_clean_wikitext_keeps_prose_and_drops_markup():
    raw = (
        "{{Infobox person | name = {{nowrap|X}} }}'''Ada''' was a [[mathematician|math person]] from [[London]]."
        "<ref name=a>cite</ref><ref name=b/> She wrote &amp; published.<!-- hidden -->\n"
        "{| class=wikitable\n| cell\n|}\n"
        "[[File:Ada.jpg|thumb|Portrait of [[Ada Lovelace|Ada]]]]\n"
        "== Early life ==\n"
        "See [http://example.org the site] and [http://example.org/bare].\n"
        "* a list item\n"
        "[[de:Ada Lovelace]][[Category:Mathematicians]]\n"
        "== References ==\n"
        "Back matter that is dropped.\n"
    )
    assert corpora.clean_wikitext(raw) == (
        "Ada was a math person from London. She wrote & published.\n"
        "Early life\n"
        "See the site and ."
    )


def test_clean_wikitext_unbalanced_markup_does_not_crash():
    assert corpora.clean_wikitext("text {{open template") == "text"
    assert corpora.clean_wikitext("a [[link without end") == "a link without end"
    assert corpora.clean_wikitext("stray ]] and }} close") == "stray ]] and }} close"


# ------------------------------------------------------------------------------------------------ wiki
def test_wiki_articles_are_clean_prose():
    articles = corpora.wiki_articles()
    assert len(articles) == 106
    assert list(articles)[:3] == ["Anarchism", "Autism", "Albedo"]
    assert articles["Aristotle"].startswith("Aristotle (")
    assert "Greek philosopher" in articles["Aristotle"]
    text = "\n".join(articles.values())
    assert 2_400_000 < len(text) < 2_700_000
    for markup in ("{{", "[[", "]]", "<ref", "'''", "&amp;"):
        assert markup not in text


def test_wiki_splits_are_disjoint_deterministic_and_complete():
    titles = list(corpora.wiki_articles())
    articles = corpora.wiki_articles()
    train, test = corpora.corpus_documents("wiki", "train"), corpora.corpus_documents("wiki", "test")
    assert test == [articles[t] for t in titles[::4]]
    assert train == [articles[t] for i, t in enumerate(titles) if i % 4]
    assert not set(train) & set(test)
    assert len(train) + len(test) == len(titles)
    assert corpora.corpus_documents("wiki", "test") == test
    assert corpora.corpus_text("wiki", "test") == "\n\n".join(test)
    assert "Anarchism" in corpora.corpus_text("wiki", "test")[:100]


def test_wiki_articles_result_is_a_copy():
    corpora.wiki_articles().clear()
    assert len(corpora.wiki_articles()) == 106


def test_missing_gensim_names_the_install(monkeypatch):
    monkeypatch.setattr(corpora.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r"pip install gensim==4\.4\.0"):
        corpora.wiki_articles()
    with pytest.raises(DataError, match="gensim"):
        corpora.corpus_text("wiki", "train")


# ------------------------------------------------------------------------------------------------ pydoc
def test_pydoc_splits():
    from pydoc_data.topics import topics

    train, test = corpora.corpus_documents("pydoc", "train"), corpora.corpus_documents("pydoc", "test")
    assert len(train) + len(test) == len(topics)
    assert test == [topics[k] for k in sorted(topics)][::4]
    assert not set(train) & set(test)
    assert len(corpora.corpus_text("pydoc", "train")) > 200_000


@pytest.mark.parametrize("name, split", [("wikitext", "train"), ("wiki", "validation"), ("pydoc", "")])
def test_bad_corpus_or_split(name, split):
    with pytest.raises(DataError, match="not allowed"):
        corpora.corpus_text(name, split)


# ------------------------------------------------------------------------------------------------ Austen
def _r_strings(lines, version=3):
    """An R XDR serialization of a character vector (with an NA)."""
    head = b"X\n" + struct.pack(">iii", version, 0x040200, 0x020300)
    if version == 3:
        head += struct.pack(">i", 5) + b"UTF-8"
    body = struct.pack(">ii", 16, len(lines))
    for line in lines:
        if line is None:
            body += struct.pack(">ii", 9, -1)
        else:
            raw = line.encode("utf-8")
            body += struct.pack(">ii", 0x8009, len(raw)) + raw
    return head + body


def _fake_austen(root, books):
    rdb = root / corpora.AUSTEN_RDB
    rdb.parent.mkdir(parents=True)
    blob = b""
    for i, lines in enumerate(books):
        payload = _r_strings(lines, version=2 + i % 2)
        blob += struct.pack(">i", len(payload)) + zlib.compress(payload)
    rdb.write_bytes(blob)


def test_austen_reader_and_split(tmp_path, monkeypatch):
    _fake_austen(tmp_path, [["", "EMMA", None, "Emma Woodhouse, handsome, clever"],
                            ["PRIDE AND PREJUDICE", "It is a truth universally acknowledged"],
                            ["PERSUASION", "Sir Walter Elliot — café"]])
    novels = corpora.austen_novels(tmp_path)
    assert list(novels) == ["Emma", "Pride And Prejudice", "Persuasion"]
    assert novels["Emma"] == "\nEMMA\n\nEmma Woodhouse, handsome, clever"
    assert novels["Persuasion"].endswith("café")
    monkeypatch.setenv("AR_AUSTEN_DIR", str(tmp_path))
    assert corpora.corpus_documents("austen", "test") == [novels["Pride And Prejudice"]]
    assert corpora.corpus_documents("austen", "train") == [novels["Emma"], novels["Persuasion"]]


def test_austen_without_dir_explains_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.delenv("AR_AUSTEN_DIR", raising=False)
    with pytest.raises(DataError, match="apt-get download r-cran-janeaustenr"):
        corpora.corpus_text("austen", "train")
    monkeypatch.setenv("AR_AUSTEN_DIR", str(tmp_path))
    with pytest.raises(DataError, match="AR_AUSTEN_DIR=.*has no .*Rdata.rdb"):
        corpora.corpus_text("austen", "test")


def test_austen_corrupt_file(tmp_path):
    rdb = tmp_path / corpora.AUSTEN_RDB
    rdb.parent.mkdir(parents=True)
    rdb.write_bytes(b"\x00\x00\x00\x10not zlib at all")
    with pytest.raises(DataError, match="corrupt"):
        corpora.austen_novels(tmp_path)
