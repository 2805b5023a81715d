"""Corpora of any size (issue 32): the prepared corpus in the cache (reused when nothing changed, rebuilt when the
corpus, the tokenizer or the maximum length changed, never read half-written or damaged), the vocabulary from the
tokenizers trainer, and `train --streaming` (trains, resumes exactly, refuses what it cannot do)."""

import json
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import TINY, error_lines
from datasets import Dataset
from demvae.checkpoints import list_checkpoints
from demvae.cli import main as demvae
from demvae.runs import ids_record
from safetensors.torch import load_file

from modeling_demvae import build_tokenizer, corpus_cache
from modeling_demvae.arrow_rows import ColumnRows
from modeling_demvae.corpus_cache import MANIFEST, cached_tokenizer, prepared_text, tokenized_corpus
from modeling_demvae.data import read_sentences, sentence_ids
from modeling_demvae.synthetic import write_synthetic_corpus


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty cache of this test's own."""
    monkeypatch.setenv("DEMVAE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_synthetic_corpus(tmp_path_factory.mktemp("corpus"), num_train=60, num_valid=20, num_test=10)


def entries(cache: Path, kind: str) -> list[str]:
    return sorted(path.name for path in cache.glob(f"{kind}-*"))


def prepare(files, *, max_vocab_size=50, max_length=12):
    """The three entries train builds: the text, the vocabulary and the token ids."""
    text = prepared_text(files=files)
    tokenizer = cached_tokenizer(text, max_vocab_size=max_vocab_size, min_frequency=1, model_max_length=max_length)
    return text, tokenizer, tokenized_corpus(text, tokenizer, max_length=max_length)


def test_the_cache_is_reused_when_nothing_changed_and_rebuilt_when_the_corpus_tokenizer_or_length_changed(
        cache, corpus, tmp_path, capsys):
    files = (tmp_path / "train.txt", corpus / "valid.txt")
    shutil.copy(corpus / "train.txt", files[0])
    text, tokenizer, data = prepare(files)
    assert "Reusing" not in capsys.readouterr().err
    # what is stored is what the in-memory pipeline gives, computed here independently of the cache
    for name, path in zip(("train", "validation"), files, strict=True):
        expected = sentence_ids(tokenizer, read_sentences(path), max_length=12)
        rows = ColumnRows(data[name], "input_ids")
        assert list(rows) == expected and list(data[name]["length"]) == [len(ids) for ids in expected]
        assert rows.record() == ids_record(expected)  # stored at build time, equal to the digest of the lists
    reference = build_tokenizer(read_sentences(files[0]), max_vocab_size=50, model_max_length=12)
    assert tokenizer.get_vocab() == reference.get_vocab()

    _, again, data_again = prepare(files)  # nothing changed: every entry reused, one line each naming where
    reused = [line for line in capsys.readouterr().err.splitlines() if line.startswith("Reusing")]
    assert [re.sub(r" prepared in .*", "", line) for line in reused] == [
        "Reusing the text of the corpus", "Reusing the vocabulary", "Reusing the tokenized corpus"]
    assert all(str(cache) in line for line in reused)
    assert again.get_vocab() == tokenizer.get_vocab() and list(data_again["train"]["input_ids"]) == list(
        data["train"]["input_ids"])
    assert [len(entries(cache, kind)) for kind in ("text", "vocabulary", "tokens")] == [1, 1, 1]

    prepare(files, max_length=8)  # another maximum length: new token ids only
    assert [len(entries(cache, kind)) for kind in ("text", "vocabulary", "tokens")] == [1, 2, 2]
    prepare(files, max_vocab_size=30, max_length=8)  # another tokenizer: new vocabulary and token ids
    assert [len(entries(cache, kind)) for kind in ("text", "vocabulary", "tokens")] == [1, 3, 3]
    with open(files[0], "a") as handle:  # the corpus changed: everything again
        handle.write("a sentence the corpus did not have\n")
    _, _, changed = prepare(files)
    assert [len(entries(cache, kind)) for kind in ("text", "vocabulary", "tokens")] == [2, 4, 4]
    assert len(changed["train"]) == len(data["train"]) + 1


@pytest.mark.parametrize("damage", ["no manifest", "truncated", "manifest damaged", "file missing"])
def test_a_half_written_or_damaged_entry_is_detected_and_rebuilt_never_read(cache, corpus, capsys, damage):
    files = (corpus / "train.txt", corpus / "valid.txt")
    _, _, data = prepare(files)
    expected = list(data["train"]["input_ids"])
    (folder,) = cache.glob("tokens-*")
    manifest = json.loads((folder / MANIFEST).read_text())
    arrow = folder / next(name for name in manifest["files"] if name.startswith("train"))
    if damage == "no manifest":  # a build killed before it finished
        (folder / MANIFEST).unlink()
    elif damage == "truncated":
        arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])
    elif damage == "manifest damaged":
        (folder / MANIFEST).write_text('{"files": ')
    else:
        arrow.unlink()
    (cache / f".building-{folder.name}-1").mkdir()  # and the leftover of a build that was killed
    capsys.readouterr()
    _, _, rebuilt = prepare(files)
    err = capsys.readouterr().err
    assert f"The tokenized corpus in {folder} is unusable" in err and "preparing it again" in err
    assert list(rebuilt["train"]["input_ids"]) == expected
    assert corpus_cache.entry_problem(folder) is None and not list(cache.glob(".building-*"))


def test_a_build_that_fails_leaves_nothing_behind(cache):
    def build(folder):
        (folder / "part.arrow").write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        corpus_cache.cached_entry("tokens", {"x": 1}, build, what="test entry")
    assert not [path for path in cache.iterdir() if not path.name.endswith(".lock")]


def test_the_vocabulary_counted_by_the_tokenizers_trainer_is_the_most_frequent_words():
    texts = ["b a a <unk> c", "C B A d", "<s> e e e e", "</S> f"] * 3 + ["g"]
    counts = Counter(word for text in texts for word in text.lower().split())
    for cap, min_frequency in ((50, 1), (7, 1), (50, 4)):
        words = sorted((w for w, n in counts.items() if n >= min_frequency and w not in ("<pad>", "<s>", "</s>",
                                                                                           "<unk>")),
                       key=lambda w: (-counts[w], w))[: cap - 4]
        tokenizer = build_tokenizer(iter(texts), max_vocab_size=cap, min_frequency=min_frequency)
        assert tokenizer.get_vocab() == {w: i for i, w in enumerate(["<pad>", "<s>", "</s>", "<unk>", *words])}


def test_a_second_start_reuses_the_cache_and_trains_the_same_model(cache, corpus, tmp_path, capsys):
    run = ["train", "--train-file", str(corpus / "train.txt"), "--valid-file", str(corpus / "valid.txt"), *TINY,
           "--max-steps", "4"]
    assert demvae([*run, "--output-dir", str(tmp_path / "first")]) == 0
    assert "Reusing" not in capsys.readouterr().err
    assert demvae([*run, "--output-dir", str(tmp_path / "second")]) == 0
    assert "Reusing the tokenized corpus prepared in" in capsys.readouterr().err
    weights = [load_file(tmp_path / name / "model.safetensors") for name in ("first", "second")]
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])


def streaming(corpus, folder, *extra):
    return ["train", "--streaming", "--train-file", str(corpus / "train.txt"), "--valid-file",
            str(corpus / "valid.txt"), *TINY, "--max-steps", "8", "--checkpoint-every", "3", "--keep-checkpoints", "5",
            "--shuffle-buffer", "16", "--dropout", "0.3", "--output-dir", str(folder), *extra]


def test_streaming_trains_without_copying_the_corpus_and_resumes_exactly(cache, corpus, tmp_path):
    assert demvae(streaming(corpus, tmp_path / "whole")) == 0
    assert not entries(cache, "text") or all(  # only the validation file was prepared
        "valid.txt" in (cache / name / MANIFEST).read_text() for name in entries(cache, "text"))
    state = json.loads((list_checkpoints(tmp_path / "whole" / "checkpoints")[-1] / "trainer_state.json").read_text())
    assert state["trainer"]["data_epoch"] >= 1  # 60 sentences, batches of 4: the 8 steps cross an epoch
    assert demvae(streaming(corpus, tmp_path / "other-buffer", "--shuffle-buffer", "4")) == 0
    weights = {name: load_file(tmp_path / name / "model.safetensors") for name in ("whole", "other-buffer")}
    assert not all(torch.equal(weights["whole"][k], weights["other-buffer"][k]) for k in weights["whole"])

    resumed = tmp_path / "resumed"  # stopped after step 6, in the middle of the second epoch
    shutil.copytree(tmp_path / "whole", resumed)
    for checkpoint in list_checkpoints(resumed / "checkpoints")[2:]:
        shutil.rmtree(checkpoint)
    assert demvae(streaming(corpus, resumed, "--resume")) == 0
    final = [load_file(list_checkpoints(folder / "checkpoints")[-1] / "model.safetensors")
             for folder in (tmp_path / "whole", resumed)]
    assert all(torch.equal(final[0][k], final[1][k]) for k in final[0])


@pytest.mark.parametrize("options, refused", [
    (["--dataset", "ptb"], "a --dataset is prepared into the cache instead"),
    (["--train-file", "TRAIN"], "give --valid-file"),
    (["--train-file", "TABLE", "--valid-file", "VALID"], "a .jsonl/.json/.csv file is prepared"),
    (["--train-file", "TRAIN", "--valid-file", "VALID", "--supervise", "mode"], "--supervise needs every label"),
])
def test_streaming_refuses_what_it_cannot_do(corpus, tmp_path, capsys, options, refused):
    table = tmp_path / "train.jsonl"
    table.write_text('{"text": "a b"}\n')
    paths = {"TRAIN": str(corpus / "train.txt"), "VALID": str(corpus / "valid.txt"), "TABLE": str(table)}
    argv = ["train", "--streaming", *[paths.get(option, option) for option in options], "--output-dir",
            str(tmp_path / "out")]
    assert demvae(argv) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert line.startswith("demvae train: error: --streaming: ") and refused in line, line
    assert not (tmp_path / "out").exists()


def test_several_processes_and_a_shuffle_buffer_without_streaming_are_refused(corpus, tmp_path, capsys, monkeypatch):
    files = ["--train-file", str(corpus / "train.txt"), "--valid-file", str(corpus / "valid.txt")]
    assert demvae(["train", *files, "--shuffle-buffer", "10", "--output-dir", str(tmp_path / "a")]) == 2
    assert "--shuffle-buffer does nothing here" in error_lines(capsys.readouterr().err)[0]
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert demvae(["train", "--streaming", *files, "--output-dir", str(tmp_path / "b")]) == 2
    assert "it trains on one process" in error_lines(capsys.readouterr().err)[0]
    assert os.environ["WORLD_SIZE"] == "2"


def test_evaluation_tokenizes_a_test_file_once_and_reads_it_from_the_cache(cache, corpus, capsys):
    from argparse import Namespace

    from demvae.evaluation import load_splits, sentences_of

    tokenizer = build_tokenizer(read_sentences(corpus / "train.txt"), max_vocab_size=50)
    args = Namespace(dataset=None, test_file=str(corpus / "test.txt"), train_file=None)
    expected = sentence_ids(tokenizer, read_sentences(corpus / "test.txt"), max_length=12)[:5]
    for start in ("first", "second"):
        ids, split = sentences_of(load_splits(args)["test"], tokenizer, 12, limit=5)
        assert list(ids) == expected and ids[1:3] == expected[1:3] and len(split) == 5
        reused = "Reusing the tokenized" in capsys.readouterr().err
        assert reused == (start == "second")


def test_a_cache_folder_that_cannot_be_written_is_one_line(corpus, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("DEMVAE_CACHE_DIR", str(blocker / "cache"))
    with pytest.raises(ValueError, match="cannot be written .*set DEMVAE_CACHE_DIR to a writable folder"):
        prepared_text(files=(corpus / "train.txt",))


def test_a_corpus_without_validation_holds_rows_out_in_file_order_and_counts_its_training_sentences_only(cache,
                                                                                                          corpus):
    text = prepared_text(files=(corpus / "train.txt",)).with_holdout(0.25, 3)
    sentences = read_sentences(corpus / "train.txt")
    held = text.held_out(len(sentences))
    kept = [sentence for sentence, out in zip(sentences, held, strict=True) if not out]
    assert held.sum() == 15 and text.sizes() == {"train": 45, "validation": 15}
    assert list(corpus_cache.training_texts(text)) == kept
    tokenizer = cached_tokenizer(text, max_vocab_size=50, min_frequency=1, model_max_length=12)
    assert tokenizer.get_vocab() == build_tokenizer(kept, max_vocab_size=50, model_max_length=12).get_vocab()
    splits = tokenized_corpus(text, tokenizer, max_length=12)
    assert splits["train"]["input_ids"][:] == sentence_ids(tokenizer, kept, max_length=12)
    assert splits["validation"]["input_ids"][:] == sentence_ids(
        tokenizer, [sentence for sentence, out in zip(sentences, held, strict=True) if out], max_length=12)
    assert splits["train"]["length"][:] == [len(ids) for ids in splits["train"]["input_ids"][:]]


def test_rows_are_read_from_the_file_with_pread_as_they_lie_there(cache, corpus, monkeypatch):
    monkeypatch.setattr(corpus_cache, "WRITER_BATCH", 5)  # record batches of 5 and 7 rows: rows cross them
    monkeypatch.setattr(corpus_cache, "TOKENS_BATCH", 7)
    _, tokenizer, data = prepare((corpus / "train.txt", corpus / "valid.txt"))
    rows = ColumnRows(data["train"], "input_ids")
    assert rows._file_rows is not None and len(rows._file_rows.starts) > 5
    expected = sentence_ids(tokenizer, read_sentences(corpus / "train.txt"), max_length=12)
    order = [*range(len(expected) - 1, -1, -1), 0, 7, 7, 13]
    assert rows[order] == [expected[i] for i in order] and rows[6] == expected[6] and rows[3:9] == expected[3:9]
    assert rows[[]] == [] and rows[-1] == expected[-1]  # an int from the end, as a dataset's index
    with pytest.raises(IndexError):
        rows[[len(expected)]]
    # what it cannot read so is read through datasets: rows behind an indices mapping, a column in memory
    assert ColumnRows(data["train"].select([3, 1]), "input_ids")._file_rows is None
    assert ColumnRows(Dataset.from_dict({"input_ids": [[1, 2]]}), "input_ids")._file_rows is None
    added = data["train"].add_column("labels", [[1]] * len(expected))  # a column beside the file's, in memory
    assert ColumnRows(added, "labels")._file_rows is None and ColumnRows(added, "labels")[[0, 2]] == [[1], [1]]
