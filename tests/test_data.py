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
