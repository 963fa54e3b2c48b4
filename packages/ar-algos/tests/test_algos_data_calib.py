"""get_calibration_data: every dataset form, filtering, concatenation, chat templates, mixing, offline behaviour."""

from __future__ import annotations

import json
import logging
import sys
import tomllib
import types
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from ar_algos.data import allocate, calib, default_dataset, get_calibration_data, sources
from ar_core import corpora
from ar_core.errors import DataError
from ar_core.registry import DATASETS

PAD, BOS, EOS = 0, 1, 2
OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def byte_tokenizer(add_bos: bool = False) -> PreTrainedTokenizerFast:
    """One token per UTF-8 byte (ids 3..258) plus <pad>=0, <s>=1, </s>=2 and a tiny chat template."""
    vocab = {t: i for i, t in enumerate(["<pad>", "<s>", "</s>"] + sorted(pre_tokenizers.ByteLevel.alphabet()))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    if add_bos:
        core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", BOS)])
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tok.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
    return tok


@pytest.fixture(scope="module")
def tok():
    return byte_tokenizer()


def texts_of(tok, samples):
    return [tok.decode(s["input_ids"][0]) for s in samples]


# ------------------------------------------------------------------------------------------------ user data
def test_list_of_strings_drops_short_and_truncates(tok):
    data = ["vwxyz", "abcdefghijklmnop", "01234567", "qrstuvw"]
    out = get_calibration_data(tok, data, nsamples=10, seqlen=8, seed=0)
    assert sorted(texts_of(tok, out)) == ["01234567", "abcdefgh"]
    for s in out:
        assert s["input_ids"].shape == s["attention_mask"].shape == (1, 8)
        assert s["input_ids"].dtype == s["attention_mask"].dtype == torch.long
        assert s["attention_mask"].eq(1).all()


def test_list_of_strings_is_taken_in_order_whatever_the_seed(tok):
    data = ["zyxwvuts", "abcdefgh", "01234567", "qrstuvwx", "ABCDEFGH"]
    for seed in (0, 1, 42):
        assert texts_of(tok, get_calibration_data(tok, data, nsamples=4, seqlen=8, seed=seed)) == data[:4]


def test_padding_like_samples_are_dropped(tok):
    out = get_calibration_data(tok, ["ab" + "z" * 14, "abcdefghijklmnop"], nsamples=4, seqlen=16)
    assert texts_of(tok, out) == ["abcdefghijklmnop"]


def test_token_tensors_dicts_and_masks(tok):
    ids = torch.arange(3, 13)
    padded = torch.tensor([5, 6, 7, 8, 9, PAD, PAD, PAD])
    data = [ids, ids[:4], {"input_ids": padded.tolist()}, {"input_ids": ids[None], "attention_mask": torch.ones(1, 10)},
            padded[None]]
    out = get_calibration_data(tok, data, nsamples=8, seqlen=8)
    assert len(out) == 4  # ids[:4] is too short
    assert out[0]["input_ids"].tolist() == [list(range(3, 11))]
    assert out[1]["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 0, 0, 0]]
    assert out[2]["attention_mask"].tolist() == [[1] * 8]
    assert out[3]["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 0, 0, 0]]


def test_dataloader_batches(tok):
    ids = torch.arange(3, 3 + 4 * 6).reshape(4, 6)
    mask = torch.ones_like(ids)
    mask[1, -2:] = 0
    loader = torch.utils.data.DataLoader([{"input_ids": r, "attention_mask": m} for r, m in zip(ids, mask)],
                                         batch_size=3)
    out = get_calibration_data(tok, loader, nsamples=3, seqlen=6)
    assert [o["input_ids"][0].tolist() for o in out] == ids[:3].tolist()
    assert out[1]["attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0]]
    plain = get_calibration_data(tok, torch.utils.data.DataLoader(ids, batch_size=2), nsamples=9, seqlen=4)
    assert [o["input_ids"][0].tolist() for o in plain] == ids[:, :4].tolist()


@pytest.mark.parametrize("bad, message", [
    (123, "dataset=int is not allowed"), ([], "dataset=list is not allowed"),
    ([torch.rand(8)], "integer token ids"), ([{"ids": [1]}], "no 'input_ids'"),
])
def test_bad_user_data(tok, bad, message):
    with pytest.raises(DataError, match=message):
        get_calibration_data(tok, bad, nsamples=2, seqlen=4)


@pytest.mark.parametrize("kwargs, field", [({"nsamples": 0}, "nsamples"), ({"seqlen": 1}, "seqlen"),
                                           ({"seed": -1}, "seed"), ({"nsamples": 2.0}, "nsamples")])
def test_bad_arguments(tok, kwargs, field):
    with pytest.raises(DataError, match=f"{field}="):
        get_calibration_data(tok, ["a" * 10], **kwargs)


def test_text_needs_a_tokenizer_but_token_ids_do_not():
    with pytest.raises(DataError, match="tokenizer=None is not allowed"):
        get_calibration_data(None, "wiki", nsamples=1, seqlen=8)
    out = get_calibration_data(None, [torch.arange(3, 11)], nsamples=1, seqlen=8)
    assert out[0]["input_ids"].tolist() == [list(range(3, 11))] and out[0]["attention_mask"].all()


def test_nothing_long_enough(tok):
    with pytest.raises(DataError, match="concat=true"):
        get_calibration_data(tok, ["short"], nsamples=2, seqlen=64)


# ------------------------------------------------------------------------------------------------ local files
def test_local_files(tok, tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(["j12345678", {"text": "k12345678"}, {"only": "l12345678"}]))
    (tmp_path / "b.jsonl").write_text('"m12345678"\n\n{"text": "n12345678"}\n')
    (tmp_path / "c.json").write_text(json.dumps({"x": "o12345678", "y": "p12"}))
    got = {t for t in texts_of(tok, get_calibration_data(
        tok, f"{tmp_path}/a.json,{tmp_path}/b.jsonl,{tmp_path}/c.json", nsamples=20, seqlen=6))}
    assert got == {c + "12345" for c in "jklmno"}
    single = get_calibration_data(tok, tmp_path / "a.json", nsamples=20, seqlen=6)
    assert len(single) == 3


def test_txt_file_is_concatenated_by_default(tok, tmp_path):
    (tmp_path / "t.txt").write_text("abc\n\ndefg\n\n\nhi")
    out = get_calibration_data(tok, str(tmp_path / "t.txt"), nsamples=10, seqlen=3, seed=0)
    stream = [i for s in out for i in s["input_ids"][0].tolist()]
    assert len(out) == 4 and stream.count(EOS) == 3  # 3 blocks, each followed by EOS: 12 tokens -> 4 chunks
    assert sorted(tok.decode(stream, skip_special_tokens=True)) == sorted("abcdefghi")
    whole = get_calibration_data(tok, f"{tmp_path}/t.txt:concat=false", nsamples=10, seqlen=3)
    assert sorted(texts_of(tok, whole)) == ["abc", "def"]


@pytest.mark.parametrize("content, name, message", [
    ("{not json", "bad.json", "cannot read"), ("[1, 2]", "num.json", "items must be strings"),
    ('[{"a": 1, "b": 2}]', "keys.json", "no 'text'"), ('"just a string"', "str.json", "must hold a JSON list"),
    ("x", "data.csv", "suffix '.csv'"),
])
def test_bad_local_files(tok, tmp_path, content, name, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=message):
        get_calibration_data(tok, str(tmp_path / name), nsamples=2, seqlen=4)


def test_missing_paths_and_unknown_names(tok, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        get_calibration_data(tok, "./nope.jsonl", nsamples=2, seqlen=4)
    with pytest.raises(DataError, match="is a directory"):
        get_calibration_data(tok, str(tmp_path), nsamples=2, seqlen=4)
    with pytest.raises(DataError, match="unknown calibration dataset 'wikitext2'; known names: .*wiki"):
        get_calibration_data(tok, "wikitext2", nsamples=2, seqlen=4)
    with pytest.raises(DataError, match="held out for evaluation"):
        get_calibration_data(tok, "wiki:split=test", nsamples=2, seqlen=4)


# ------------------------------------------------------------------------------------------------ concat, chat
def test_concat_bos_and_eos_layout(tmp_path):
    tok = byte_tokenizer(add_bos=True)
    (tmp_path / "d.json").write_text(json.dumps(["abcd", "efgh", "ijkl"]))
    out = get_calibration_data(tok, f"{tmp_path}/d.json:concat", nsamples=10, seqlen=6, seed=3)
    assert len(out) == 3  # 3 * (4 + EOS) = 15 tokens -> three chunks of BOS + 5
    for s in out:
        assert s["input_ids"][0, 0].item() == BOS and (s["input_ids"][0, 1:] != BOS).all()
    body = [i for s in out for i in s["input_ids"][0, 1:].tolist()]
    docs = tok.decode(body).split("</s>")
    assert sorted(docs[:3]) == ["abcd", "efgh", "ijkl"] and docs[3] == ""


def test_chat_template_and_system_prompt_stay_with_their_dataset(tok, tmp_path):
    (tmp_path / "q.json").write_text(json.dumps(["question one", "question two"]))
    (tmp_path / "c.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "hey"},
                                                               {"role": "assistant", "content": "hello there"}]}))
    spec = f'{tmp_path}/q.json:system_prompt="Be kind, ok":num=2,{tmp_path}/q.json:num=2,{tmp_path}/c.jsonl'
    got = sorted(texts_of(tok, get_calibration_data(tok, spec, nsamples=5, seqlen=12)))
    # the system prompt renders only in the first dataset; a conversation uses the template by default
    assert got == ["<system>Be k", "<system>Be k", "<user>hey<as", "question one", "question two"]
    plain = get_calibration_data(tok, f"{tmp_path}/c.jsonl:apply_chat_template=false", nsamples=1, seqlen=12)
    assert texts_of(tok, plain) == ["hey\nhello th"]


def test_chat_without_template(tmp_path):
    tok = byte_tokenizer()
    tok.chat_template = None
    with pytest.raises(DataError, match="no chat template"):
        get_calibration_data(tok, "pydoc:apply_chat_template", nsamples=2, seqlen=8)
    (tmp_path / "c.json").write_text(json.dumps([[{"role": "user", "content": "hi"}, {"role": "bot", "content": "yo"}]]))
    assert texts_of(tok, get_calibration_data(tok, str(tmp_path / "c.json"), nsamples=1, seqlen=5)) == ["hi\nyo"]


# ------------------------------------------------------------------------------------------------ mixing
def test_allocate_shares_and_caps():
    assert allocate([100, 100], [None, None], 10) == [5, 5]
    assert allocate([100, 100, 100], [None, None, None], 10) == [3, 3, 4]
    assert allocate([2, 100], [None, None], 10) == [2, 8]  # the small one's unused share moves on
    assert allocate([50, 100], [4, None], 10) == [4, 6]
    assert allocate([3, 100], [4, None], 10) == [3, 6]
    assert allocate([100, 100], [8, 8], 10) == [8, 8]  # the mix is cut to nsamples afterwards


def test_num_per_dataset_and_seeded_mixing(tok):
    """Datasets given by name are shuffled and mixed with the seed; lists of strings are not."""
    a = [f"a{i:02d}" + "-xyz-xyz" for i in range(30)]
    b = [f"b{i:02d}" + "-xyz-xyz" for i in range(30)]

    def run(seed):
        texts = []
        for lst in (a, b):
            texts += [t[:3] for t in texts_of(tok, get_calibration_data(tok, lst, nsamples=30, seqlen=8, seed=seed))]
        return texts

    assert run(1) == run(2) == [t[:3] for t in a + b]  # lists of strings keep their order (the reference's)
    out = get_calibration_data(tok, "pydoc:num=3,wiki:num=5", nsamples=8, seqlen=16, seed=7)
    again = get_calibration_data(tok, "pydoc:num=3,wiki:num=5", nsamples=8, seqlen=16, seed=7)
    assert len(out) == 8 and all(torch.equal(x["input_ids"], y["input_ids"]) for x, y in zip(out, again))
    train = corpora.corpus_text("pydoc", "train").encode()
    in_pydoc = [t for t in texts_of(tok, out) if "</s>" not in t and t.encode() in train]
    assert len(in_pydoc) >= 2  # 3 pydoc samples (one may straddle a document boundary)


def test_wiki_calibration_uses_only_the_train_split(tok):
    out = get_calibration_data(tok, "wiki", nsamples=6, seqlen=512, seed=0)
    assert len(out) == 6
    train, test = corpora.corpus_text("wiki", "train"), corpora.corpus_text("wiki", "test")
    pieces = [p[4:-4] for t in texts_of(tok, out) for p in t.split("</s>") if len(p) > 200]
    assert pieces and all(p in train and p not in test for p in pieces)


# ------------------------------------------------------------------------------------------------ hub
def test_hub_offline_error_names_local_alternatives(tok, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match=r"hub is unreachable.*'wiki'.*'pydoc'.*local .*file"):
        get_calibration_data(tok, "NeelNanda/pile-10k", nsamples=2, seqlen=8)


def test_default_dataset_and_log_line(tok, monkeypatch, caplog):
    for var in OFFLINE_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(calib, "hub_reachable", lambda: True)  # this machine may have no network
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "true")
    assert default_dataset() == "wiki"
    with caplog.at_level(logging.INFO, logger="ar_algos.data"):
        assert len(get_calibration_data(tok, None, nsamples=2, seqlen=64)) == 2
    assert "using 'wiki' (offline mode)" in caplog.text
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    assert default_dataset() == "NeelNanda/pile-10k"


def fake_datasets(monkeypatch, rows_by_split=None, error=None):
    """Install a stand-in `datasets` module whose load_dataset returns rows or raises `error`."""
    calls = []

    def load_dataset(repo, config=None, split=None, streaming=False):
        calls.append((repo, config, split, streaming))
        if error is not None:
            raise error
        return rows_by_split[split]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    monkeypatch.setattr(calib, "hub_reachable", lambda: True)  # the stand-in answers, whatever the network says
    for var in OFFLINE_VARS:
        monkeypatch.delenv(var, raising=False)
    return calls


def test_hub_dataset_online_splits_and_columns(tok, monkeypatch):
    rows = {"train": [{"text": "Add two numbers.", "code": "def f(a, b): return a + b"}],
            "validation": [{"text": "Negate.", "code": "def g(a): return -a"}]}
    calls = fake_datasets(monkeypatch, rows)
    out = get_calibration_data(tok, "mbpp:split=train+validation", nsamples=4, seqlen=10, seed=0)
    assert sorted(texts_of(tok, out)) == ["Add two nu", "Negate.\nde"]
    assert [c[2] for c in calls] == ["train", "validation"] and calls[0][1] == "full"
    with pytest.raises(DataError, match="split='bogus' is not allowed"):
        get_calibration_data(tok, "mbpp:split=bogus", nsamples=4, seqlen=10)


def test_unknown_hub_id_reads_text_column(tok, monkeypatch):
    calls = fake_datasets(monkeypatch, {"train": [{"text": "hello hub world"}], "dev": [{"body": "x"}]})
    assert texts_of(tok, get_calibration_data(tok, "someone/corpus", nsamples=1, seqlen=5)) == ["hello"]
    assert calls[0][0] == "someone/corpus"
    with pytest.raises(DataError, match="no 'text' column"):
        get_calibration_data(tok, "someone/corpus:split=dev", nsamples=1, seqlen=5)


def test_connection_error_and_default_fallback(tok, monkeypatch, caplog):
    fake_datasets(monkeypatch, error=ConnectionError("Name or service not known"))
    with pytest.raises(DataError, match="hub is unreachable"):
        get_calibration_data(tok, "pile-10k", nsamples=1, seqlen=5)
    with caplog.at_level(logging.INFO, logger="ar_algos.data"):
        out = get_calibration_data(tok, None, nsamples=2, seqlen=32)
    assert len(out) == 2 and "using 'wiki' instead" in caplog.text


# ------------------------------------------------------------------------------------------------ registry
def test_named_datasets_are_registered_in_code_and_entry_points():
    for name in ("wiki", "pydoc", "austen", "pile-10k", "NeelNanda/pile-10k", "mbpp", "ultrachat_200k"):
        assert DATASETS.get(name) is sources.NAMED_SOURCES[name.lower()]
    pyproject = tomllib.loads((Path(sources.__file__).parents[3] / "pyproject.toml").read_text())
    table = pyproject["project"]["entry-points"]["ar.datasets"]
    assert {k.lower() for k in table} == set(sources.NAMED_SOURCES)
    for name, target in table.items():
        assert EntryPoint(name, target, "ar.datasets").load() is sources.NAMED_SOURCES[name.lower()]


@pytest.mark.slow
def test_smollm2_tokenizer_wiki_and_chat_calibration(tmp_path):
    """Real tokenizer (embedded SmolLM2, converted once into the shared cache): wiki chunks and chat rendering."""
    from transformers import AutoTokenizer

    from ar_algos.models import embedded_model_path

    real = AutoTokenizer.from_pretrained(embedded_model_path("smollm2-135m"))
    out = get_calibration_data(real, "wiki", nsamples=8, seqlen=512)
    assert len(out) == 8 and all(s["input_ids"].shape == (1, 512) for s in out)
    assert len({tuple(s["input_ids"][0, :16].tolist()) for s in out}) == 8
    (tmp_path / "chat.jsonl").write_text(json.dumps({"text": "Explain rounding. " * 40}))
    chat = get_calibration_data(real, f'{tmp_path}/chat.jsonl:system_prompt="Answer briefly."', nsamples=1,
                                seqlen=64)
    text = real.decode(chat[0]["input_ids"][0])
    assert text.startswith("<|im_start|>system\nAnswer briefly.<|im_end|>\n<|im_start|>user\nExplain rounding.")
