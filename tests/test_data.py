import json

import numpy as np
import pytest
from datasets import Dataset

from modeling_demvae import build_tokenizer
from modeling_demvae.data import (
    IGNORE_INDEX,
    LengthBucketBatchSampler,
    PaddingCollator,
    load_corpus,
    text_files_corpus,
    tokenize_corpus,
)


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_text_files_skip_blank_lines_and_name_splits(tmp_path):
    train = write(tmp_path / "train.txt", "the cat sat\n\n   \n  a dog ran  \n")
    valid = write(tmp_path / "valid.txt", "a cat\n")
    corpus = text_files_corpus(train, valid)
    assert list(corpus) == ["train", "validation"]
    assert corpus["train"]["text"] == ["the cat sat", "a dog ran"]
    folder = load_corpus(str(tmp_path))  # a folder with train.txt / valid.txt
    assert folder["validation"]["text"] == ["a cat"]


@pytest.mark.parametrize("content", ["", "\n\n  \n\t\n"])
def test_empty_or_blank_corpus_is_an_error_naming_the_file(tmp_path, content):
    path = write(tmp_path / "empty.txt", content)
    with pytest.raises(ValueError, match="empty.txt.*no sentences"):
        load_corpus(str(path))


def test_missing_file_is_an_error_naming_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        load_corpus(str(tmp_path / "missing.txt"))
    with pytest.raises(FileNotFoundError, match="valid.txt"):
        text_files_corpus(write(tmp_path / "train.txt", "a b\n"), tmp_path / "valid.txt")


def test_jsonl_and_csv_with_a_named_text_column(tmp_path):
    rows = [{"sentence": "one two", "label": 1}, {"sentence": "  ", "label": 2}, {"sentence": "three", "label": 3}]
    jsonl = write(tmp_path / "data.jsonl", "\n".join(json.dumps(r) for r in rows))
    corpus = load_corpus(str(jsonl), text_column="sentence")
    assert corpus["train"]["text"] == ["one two", "three"]
    assert corpus["train"]["label"] == [1, 3]
    csv = write(tmp_path / "data.csv", "sentence,label\nfour five,0\nsix,1\n")
    assert load_corpus(str(csv), text_column="sentence")["train"]["text"] == ["four five", "six"]
    with pytest.raises(ValueError, match="no column 'text'.*sentence"):
        load_corpus(str(csv))


def test_rows_without_text_are_skipped_counted_and_reported(tmp_path, caplog):
    """Issue 11: 100 of 300 rows without text were dropped without a word; now the count and the first line."""
    rows = [{"text": f"sentence {i}", "act": i % 4} for i in range(300)]
    for i in range(2, 300, 3):  # rows 3, 6, ... (lines 3, 6, ...): null, missing, blank in turn
        rows[i] = [{"text": None, "act": 0}, {"act": 0}, {"text": "   ", "act": 0}][i // 3 % 3]
    path = write(tmp_path / "rows.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    with caplog.at_level("WARNING", logger="modeling_demvae.data"):
        corpus = load_corpus(str(path))
    kept = [r for r in rows if isinstance(r.get("text"), str) and r["text"].strip()]
    assert corpus["train"]["text"] == [r["text"] for r in kept] and corpus["train"]["act"] == [r["act"] for r in kept]
    assert len(kept) == 200
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: skipped 100 of 300 rows whose 'text' is null, missing or blank (first: line 3)."]


@pytest.mark.parametrize("name, content, expected", [
    ("bad.jsonl", b'{"text": "a"}\n{"text": "b"\n', r"bad.jsonl, line 2: not valid JSON"),
    ("number.jsonl", b'{"text": "a"}\n\n{"text": 3.5}\n', r"number.jsonl, line 3: 'text' holds float 3.5, not text"),
    ("object.jsonl", b'{"text": {"a": 1}}\n', r"object.jsonl, line 1: 'text' holds dict"),
    ("scalar.jsonl", b'"just a string"\n', r"scalar.jsonl, line 1: a JSON str, not an object with a 'text' field"),
    ("array.json", b'[{"text": "a"}, {"text": 1}]', r"array.json, item 2: 'text' holds int 1"),
    ("latin1.jsonl", '{"text": "ok"}\n{"text": "caf\u00e9"}\n'.encode("latin-1"),
     r"latin1.jsonl, line 2: not UTF-8 text \(byte 0xe9 at column 14\)"),
    ("latin1.txt", "ok\nok\ncaf\u00e9\n".encode("latin-1"), r"latin1.txt, line 3: not UTF-8 text"),
    ("latin1.csv", "text\nok\ncaf\u00e9\n".encode("latin-1"), r"latin1.csv, line 3: not UTF-8 text"),
    ("fields.csv", b"text,act\na,1\nb,2,3\n", r"fields.csv, line 3: 3 fields where the header has 2 \(text, act\)"),
    ("quotes.csv", b'text,act\na,1\n"b,2\n', r"quotes.csv, line 3: not valid CSV"),
])
def test_unreadable_lines_name_the_file_and_the_line(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=expected) as error:
        load_corpus(str(path))
    assert "\n" not in str(error.value)


def test_csv_keeps_integer_labels_and_numeric_text_as_text(tmp_path):
    path = write(tmp_path / "data.csv", 'text,act,note\n"one, two",1,x\n42,-3,\n\nthree,2,y\n')
    train = load_corpus(str(path))["train"]
    assert train["text"] == ["one, two", "42", "three"] and train["act"] == [1, -3, 2]
    assert train["note"] == ["x", "", "y"]


def test_hub_splits_count_what_they_skip_and_refuse_a_column_that_is_not_text(caplog):
    from datasets import DatasetDict

    from modeling_demvae.data import _with_text_column

    corpus = DatasetDict(train=Dataset.from_dict({"sentence": ["a b", None, " ", "c"], "label": [0, 1, 2, 3]}))
    with caplog.at_level("WARNING", logger="modeling_demvae.data"):
        splits = _with_text_column(corpus, "sentence", "Hub dataset x")
    assert splits["train"]["text"] == ["a b", "c"] and splits["train"]["label"] == [0, 3]
    assert "Hub dataset x, train split: skipped 2 of 4 rows whose 'sentence' is null or blank." in caplog.text
    with pytest.raises(ValueError, match="Hub dataset x: column 'label' holds Value.*int64.*not text"):
        _with_text_column(corpus, "label", "Hub dataset x")


def test_tokenize_caps_length_keeping_eos_and_keeps_label_columns():
    data = Dataset.from_dict({"text": ["a b c d e f g h", "a zebra"], "act": [3, 4]})
    tokenizer = build_tokenizer(["a b c d e f g h"])  # vocabulary from the training text only: no "zebra"
    out = tokenize_corpus(data, tokenizer, max_length=5)
    assert out["input_ids"][0] == [1, tokenizer.convert_tokens_to_ids("a"), tokenizer.convert_tokens_to_ids("b"),
                                   tokenizer.convert_tokens_to_ids("c"), 2]
    assert out["input_ids"][1] == [1, tokenizer.convert_tokens_to_ids("a"), 3, 2]
    assert out["length"] == [5, 4]
    assert out["act"] == [3, 4] and out["text"] == data["text"]


def test_collator_pads_and_masks_labels():
    batch = PaddingCollator(pad_token_id=0, extra_columns=("act",))(
        [{"input_ids": [1, 5, 6, 2], "act": 2}, {"input_ids": [1, 7, 2], "act": 4}]
    )
    assert batch["input_ids"].tolist() == [[1, 5, 6, 2], [1, 7, 2, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert batch["labels"].tolist() == [[1, 5, 6, 2], [1, 7, 2, IGNORE_INDEX]]
    assert batch["act"].tolist() == [2, 4]


def test_length_buckets_are_deterministic_complete_and_tight():
    lengths = np.random.default_rng(0).integers(3, 41, size=1000)
    sampler = LengthBucketBatchSampler(lengths, 10, seed=3, bucket_batches=20)
    epoch0 = sampler.global_batches(0)
    assert epoch0 == LengthBucketBatchSampler(lengths, 10, seed=3, bucket_batches=20).global_batches(0)
    assert epoch0 != sampler.global_batches(1)
    assert sorted(i for b in epoch0 for i in b) == list(range(1000))  # every sentence once
    padded = sum(len(b) * lengths[b].max() for b in epoch0)
    unbucketed = LengthBucketBatchSampler(lengths, 10, seed=3, bucket_batches=1).global_batches(0)
    padded_unbucketed = sum(len(b) * lengths[b].max() for b in unbucketed)
    assert lengths.sum() / padded > 0.95 > lengths.sum() / padded_unbucketed


def test_shards_split_each_global_batch_evenly():
    lengths = np.arange(103) % 17 + 2
    whole = LengthBucketBatchSampler(lengths, 8, seed=1, drop_last=True)
    shards = [list(LengthBucketBatchSampler(lengths, 8, seed=1, drop_last=True, num_shards=2, shard_index=r))
              for r in range(2)]
    assert len(whole) == len(shards[0]) == 12
    for batch, part0, part1 in zip(whole, *shards, strict=True):
        assert part0 + part1 == batch and len(part0) == 4
    with pytest.raises(ValueError, match="multiple of 3"):
        LengthBucketBatchSampler(lengths, 8, drop_last=True, num_shards=3)
    evaluation = [list(LengthBucketBatchSampler(lengths, 8, shuffle=False, num_shards=2, shard_index=r))
                  for r in range(2)]
    assert sorted(i for shard in evaluation for b in shard for i in b) == list(range(103))


def test_penn_treebank_splits(data_dir):
    corpus = load_corpus("ptb", data_dir=data_dir)
    expected = {name: sum(1 for line in open(data_dir / "ptb" / f"ptb.{file}.txt") if line.strip())
                for name, file in (("train", "train"), ("validation", "valid"), ("test", "test"))}
    assert {name: len(split) for name, split in corpus.items()} == expected
    assert expected["train"] == 42068


def test_daily_dialog_one_row_per_utterance_with_labels(data_dir):
    corpus = load_corpus("daily_dialog", data_dir=data_dir)
    assert len(corpus["train"]) == 87170  # the spec's count
    folder = data_dir / "daily_dialog" / "validation"
    assert len(corpus["validation"]) == open(folder / "dialogues.txt").read().count("__eou__")
    first_acts = [int(a) for a in open(folder / "dialogues_act.txt").readline().split()]
    assert corpus["validation"].filter(lambda row: row["dialogue"] == 0)["act"] == first_acts
    assert set(corpus["train"]["act"]) == {1, 2, 3, 4}
    assert set(corpus["train"]["emotion"]) == set(range(7))


def test_unknown_hub_name_offline_is_an_error_saying_what_was_tried():
    with pytest.raises(FileNotFoundError, match="not a file, a folder, 'ptb', 'daily_dialog' or a loadable Hub"):
        load_corpus("someone/no-such-corpus")  # tests run with HF_HUB_OFFLINE=1: fails without a network call
