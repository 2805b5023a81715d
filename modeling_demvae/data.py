"""Corpora as `datasets.DatasetDict`s of sentences, tokenized and batched by length for DEM-VAE training.

Every corpus ends up with splits "train" (always), "validation" and "test" (when the source has them), one
sentence per row in a "text" column, plus any label columns the source carries (DailyDialog: "act", "emotion").
A line that cannot be read (not UTF-8, malformed JSON or CSV, text that is not a string) is an error naming the file
and the line; rows without text (null or blank) are skipped, and how many is logged.
"""

import csv
import json
import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset, DatasetDict, load_dataset

from .modeling_demvae import IGNORE_INDEX
from .synthetic import MODE_NAMES, synthetic_corpus

SPLIT_NAMES = {"train": "train", "valid": "validation", "validation": "validation", "dev": "validation", "test": "test"}
BUILTIN_CORPORA = ("ptb", "daily_dialog")  # read from the data folder; "synthetic" is generated
LABEL_COLUMNS = ("act", "emotion", "mode")  # label columns a corpus may carry (DailyDialog; the synthetic modes)
# the names of their values (DailyDialog's, spec section 7; the synthetic sentence types)
LABEL_NAMES = {
    "act": {1: "inform", 2: "question", 3: "directive", 4: "commissive"},
    "emotion": {0: "no emotion", 1: "anger", 2: "disgust", 3: "fear", 4: "happiness", 5: "sadness", 6: "surprise"},
    "mode": dict(enumerate(MODE_NAMES)),
}
TABLE_SUFFIXES = {".jsonl": "json", ".json": "json", ".csv": "csv"}
logger = logging.getLogger(__name__)


def default_data_dir() -> Path:
    """Where the corpora live: $DEMVAE_DATA_DIR; else, running from a checkout, `../shared/data` beside it; else
    `data` in the current folder (an installed package knows no checkout)."""
    if os.environ.get("DEMVAE_DATA_DIR"):
        return Path(os.environ["DEMVAE_DATA_DIR"])
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file():
        return checkout.parent / "shared" / "data"
    return Path("data")


# ----- reading sources -----


def _decoded_lines(path: Path, progress=None):
    """(line number, text) of a UTF-8 file (a byte-order mark is dropped); a line that is not UTF-8 is an error.
    `progress`, a tqdm bar counting bytes, advances by each line read."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if progress is not None:
                progress.update(len(raw))
            try:
                yield number, raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(f"{path}, line {number}: not UTF-8 text (byte {raw[error.start]:#04x} at column "
                                 f"{error.start + 1}); save the file as UTF-8.") from None


def read_sentences(path: str | os.PathLike) -> list[str]:
    """Non-empty, stripped lines of a text file (one sentence a line)."""
    return list(sentence_lines(path))


def sentence_lines(path: str | os.PathLike, progress=None):
    """The non-empty, stripped lines of a text file, one at a time (`progress`: a bar of bytes to advance)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text file not found: {path} (give a file with one sentence per line).")
    return (line.strip() for _, line in _decoded_lines(path, progress) if line.strip())


def _checked_corpus(splits: dict[str, Dataset], origin: str) -> DatasetDict:
    """A DatasetDict whose train split exists and no split is empty, else an error saying what to fix."""
    if "train" not in splits:
        raise ValueError(f"{origin} has no training split; found {sorted(splits) or 'none'}.")
    for name, split in splits.items():
        if len(split) == 0:
            raise ValueError(f"{origin}: the {name} split has no sentences (only empty lines?); "
                             "give at least one non-empty line of text.")
    return DatasetDict({name: splits[name] for name in ("train", "validation", "test") if name in splits})


def text_files_corpus(train_file, valid_file=None, test_file=None, *, text_column: str = "text") -> DatasetDict:
    """A corpus from a file per split: plain text, one sentence a line (empty lines are skipped), or a
    .jsonl/.json/.csv table read as `load_corpus` reads one, its sentences in `text_column`."""
    files = {"train": train_file, "validation": valid_file, "test": test_file}
    splits = {name: _table_corpus(Path(path), text_column)["train"] if Path(path).suffix.lower() in TABLE_SUFFIXES
              else Dataset.from_dict({"text": read_sentences(path)}) for name, path in files.items() if path}
    return _checked_corpus(splits, f"corpus {train_file}")


def daily_dialog_split(folder: str | os.PathLike) -> Dataset:
    """One row per DailyDialog utterance with its dialog act (1-4), emotion (0-6) and dialogue index.

    `dialogues.txt` holds one dialogue a line, utterances separated by `__eou__`; the act and emotion files hold
    one label per utterance. A dialogue whose label count differs from its utterance count is an error.
    """
    folder = Path(folder)
    names = ("dialogues.txt", "dialogues_act.txt", "dialogues_emotion.txt")
    for name in names:
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"DailyDialog file not found: {folder / name} (the folder needs {', '.join(names)})."
            )
    dialogues, acts, emotions = ((folder / name).read_text(encoding="utf-8").splitlines() for name in names)
    if not len(dialogues) == len(acts) == len(emotions):
        raise ValueError(f"{folder}: {len(dialogues)} dialogues but {len(acts)} act and {len(emotions)} emotion lines.")
    rows = {"text": [], "act": [], "emotion": [], "dialogue": []}
    for index, (dialogue, act_line, emotion_line) in enumerate(zip(dialogues, acts, emotions, strict=True)):
        utterances = [u.strip() for u in dialogue.split("__eou__")]
        if utterances and not utterances[-1]:
            utterances.pop()  # the separator also ends the line
        act, emotion = act_line.split(), emotion_line.split()
        if not len(utterances) == len(act) == len(emotion):
            raise ValueError(f"{folder}, dialogue {index + 1}: {len(utterances)} utterances but {len(act)} act and "
                             f"{len(emotion)} emotion labels.")
        for utterance, a, e in zip(utterances, act, emotion, strict=True):
            if utterance:
                rows["text"].append(utterance)
                rows["act"].append(int(a))
                rows["emotion"].append(int(e))
                rows["dialogue"].append(index)
    return Dataset.from_dict(rows)


def daily_dialog_corpus(folder: str | os.PathLike) -> DatasetDict:
    """DailyDialog from a folder holding train/, validation/ and test/ (each with the three label files)."""
    folder = Path(folder)
    splits = {name: daily_dialog_split(folder / name) for name in ("train", "validation", "test")
              if name == "train" or (folder / name).is_dir()}
    return _checked_corpus(splits, f"DailyDialog at {folder}")


def folder_text_files(folder: Path) -> list[Path | None] | None:
    """The train, validation and test text files of a folder of {train,valid,test}.txt (Mikolov's ptb.*.txt names
    too; None where a split has none), or None when the folder has no train.txt."""
    for prefix in ("", "ptb."):
        if (folder / f"{prefix}train.txt").is_file():
            return [next((p for n in names if (p := folder / f"{prefix}{n}.txt").is_file()), None)
                    for names in (("train",), ("valid", "validation", "dev"), ("test",))]
    return None


def _folder_corpus(folder: Path) -> DatasetDict:
    """A folder of {train,valid,test}.txt (Mikolov's ptb.*.txt names too) or a DailyDialog layout."""
    if (folder / "train" / "dialogues.txt").is_file():
        return daily_dialog_corpus(folder)
    if found := folder_text_files(folder):
        return text_files_corpus(*found)
    raise FileNotFoundError(f"no corpus found in folder {folder}: it needs train.txt (and optionally valid.txt, "
                            "test.txt) or a DailyDialog layout (train/dialogues.txt with act and emotion files).")


def _json_rows(path: Path):
    """("line N", object) for each line of JSON Lines, or ("item N", object) for a .json file holding one array."""
    if path.suffix.lower() == ".json":
        try:
            document = json.loads(path.read_bytes())
        except ValueError:  # not one JSON document: JSON Lines
            document = None
        if isinstance(document, list):
            yield from ((f"item {index}", row) for index, row in enumerate(document, start=1))
            return
    for number, line in _decoded_lines(path):
        if line.strip():
            try:
                yield f"line {number}", json.loads(line)
            except ValueError as error:
                raise ValueError(f"{path}, line {number}: not valid JSON ({error}).") from None


def _csv_rows(path: Path, text_column: str):
    """("line N", {column: value}) for each record of a CSV file with a header; integer columns, but the text, as
    ints."""
    reader = csv.reader((line for _, line in _decoded_lines(path)), strict=True)
    rows = []
    try:
        header = next(reader, [])
        for fields in reader:
            if fields and len(fields) != len(header):
                raise ValueError(f"{path}, line {reader.line_num}: {len(fields)} fields where the header has "
                                 f"{len(header)} ({', '.join(header)}); quote fields that hold commas.")
            if fields:
                rows.append((f"line {reader.line_num}", dict(zip(header, fields, strict=True))))
    except csv.Error as error:
        raise ValueError(f"{path}, line {reader.line_num}: not valid CSV ({error}).") from None
    for column in header:
        if column != text_column and all(re.fullmatch(r"-?[0-9]+", row[column]) for _, row in rows):
            for _, row in rows:
                row[column] = int(row[column])
    return rows


def _table_corpus(path: Path, text_column: str) -> DatasetDict:
    """A .jsonl/.json/.csv file as the training split, with `text_column` renamed to "text". Every row must be an
    object whose text is a string; rows whose text is null, missing or blank are skipped and counted."""
    rows = list(_json_rows(path) if TABLE_SUFFIXES[path.suffix.lower()] == "json" else _csv_rows(path, text_column))
    kept, skipped = [], []
    for where, row in rows:
        if not isinstance(row, dict):
            raise ValueError(f"{path}, {where}: a JSON {type(row).__name__}, not an object with a {text_column!r} "
                             "field.")
        text = row.get(text_column)
        if not isinstance(text, str | None):
            raise ValueError(f"{path}, {where}: {text_column!r} holds {type(text).__name__} {text!r:.40}, not text.")
        if text is None or not text.strip():
            skipped.append(where)
            continue
        kept.append({**{k: v for k, v in row.items() if k not in ("text", text_column)}, "text": text.strip()})
    if rows and all(text_column not in row for _, row in rows):
        raise ValueError(f"{path} has no column {text_column!r}; its columns are {list(rows[0][1])} (choose one "
                         "with --text-column).")
    if skipped:
        logger.warning(f"{path}: skipped {len(skipped)} of {len(rows)} rows whose {text_column!r} is null, missing "
                       f"or blank (first: {skipped[0]}).")
    try:
        split = Dataset.from_list(kept) if kept else Dataset.from_dict({"text": []})
    except (TypeError, ValueError) as error:  # pyarrow's errors are both
        raise ValueError(f"{path}: a column holds values of different types ({str(error)[:100]}).") from None
    return _checked_corpus({"train": split}, f"corpus {path}")


def _with_text_column(corpus: DatasetDict, text_column: str, origin: str) -> DatasetDict:
    """Rename splits to train/validation/test and the text column to "text", and drop (and count) null or blank
    texts; a text column that does not hold strings is an error."""
    splits = {}
    for name, split in corpus.items():
        if name not in SPLIT_NAMES:
            continue
        if text_column not in split.column_names:
            raise ValueError(f"{origin} has no column {text_column!r}; its columns are {split.column_names} "
                             "(choose one with --text-column).")
        if getattr(split.features[text_column], "dtype", None) not in ("string", "large_string"):
            raise ValueError(f"{origin}: column {text_column!r} holds {split.features[text_column]}, not text "
                             "(choose another with --text-column).")
        if text_column != "text":
            split = split.remove_columns([c for c in ["text"] if c in split.column_names])
            split = split.rename_column(text_column, "text")
        total = len(split)
        split = split.filter(lambda batch: [t is not None and bool(t.strip()) for t in batch["text"]], batched=True)
        if len(split) < total:
            logger.warning(f"{origin}, {name} split: skipped {total - len(split)} of {total} rows whose "
                           f"{text_column!r} is null or blank.")
        splits[SPLIT_NAMES[name]] = split.map(lambda batch: {"text": [t.strip() for t in batch["text"]]},
                                              batched=True)
    return _checked_corpus(splits, origin)


def load_corpus(source: str, *, text_column: str = "text", data_dir=None) -> DatasetDict:
    """A corpus by name or path.

    `source` is "synthetic" (the built-in corpus with known modes), "ptb" or "daily_dialog" (read from `data_dir`,
    default `default_data_dir()`), a folder with train/valid/test text files, a single .txt/.jsonl/.json/.csv file
    (the training split only), or the name of a dataset on the Hugging Face Hub (needs a connection;
    `text_column` names the sentence column).
    """
    source = str(source)
    if source == "synthetic":
        return synthetic_corpus()  # the same sentences whatever the training seed
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    if source in BUILTIN_CORPORA:
        folder = data_dir / source
        if not folder.is_dir():
            raise FileNotFoundError(f"corpus {source!r} not found at {folder}; set DEMVAE_DATA_DIR to the folder "
                                    f"holding {source}/.")
        return _folder_corpus(folder)
    path = Path(source).expanduser()
    if path.is_dir():
        return _folder_corpus(path)
    if path.is_file():
        if path.suffix.lower() in TABLE_SUFFIXES:
            return _table_corpus(path, text_column)
        return text_files_corpus(path)
    if path.suffix.lower() in (".txt", *TABLE_SUFFIXES) or source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise FileNotFoundError(f"corpus file not found: {source} (give an existing file or folder, 'ptb', "
                                "'daily_dialog', 'synthetic', or a Hub dataset name).")
    return _hub_corpus(source, text_column)


def _hub_corpus(name: str, text_column: str) -> DatasetDict:
    try:
        corpus = load_dataset(name)
    except Exception as error:  # offline, unknown name, gated: the datasets message says which
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise FileNotFoundError(f"{name!r} is not a file, a folder, 'ptb', 'daily_dialog' or a loadable Hub dataset "
                                f"({reason}).") from error
    return _with_text_column(corpus, text_column, f"Hub dataset {name}")


# ----- labels -----


def label_names(column: str, values) -> dict:
    """Value -> name of a label column's labels: the known names of DailyDialog's and the synthetic corpus's columns
    (all of them, so that label ids do not depend on the sample), else each distinct value as its own name, sorted.
    Missing values (None) are unlabelled rows."""
    distinct = sorted({value for value in values if value is not None}, key=lambda value: (str(type(value)), value))
    known = LABEL_NAMES.get(column)
    if known is None:
        return {value: str(value) for value in distinct}
    unknown = [value for value in distinct if value not in known]
    if unknown:
        raise ValueError(f"label column {column!r} holds {unknown[:5]}, which are none of its labels {known}.")
    return dict(known)


def with_attribute_labels(dataset: Dataset, columns: Sequence[str], names: dict[str, dict], *,
                          labelled_fraction: float = 1.0, seed: int = 0) -> Dataset:
    """`dataset` with an "attribute_labels" column: per row, each label column's label id (the value's position in
    `names[column]`, see `label_names`), -100 where the value is missing. With `labelled_fraction` < 1 only that share
    of the rows, chosen by `seed`, keeps its labels (semi-supervised training); the others get -100 throughout."""
    if not 0 < labelled_fraction <= 1:
        raise ValueError(f"labelled_fraction must lie in (0, 1], got {labelled_fraction}.")
    rows = np.full((len(dataset), len(columns)), IGNORE_INDEX, dtype=np.int64)
    for index, column in enumerate(columns):
        if column not in dataset.column_names:
            raise ValueError(f"the corpus has no label column {column!r}; its columns are {dataset.column_names}.")
        ids = {value: position for position, value in enumerate(names[column])}
        for row, value in enumerate(dataset[column]):
            if value is not None and value not in ids:
                raise ValueError(f"label column {column!r}, row {row}: {value!r} is none of its labels {list(ids)}.")
            rows[row, index] = IGNORE_INDEX if value is None else ids[value]
    if labelled_fraction < 1:
        kept = round(labelled_fraction * len(dataset))
        rows[np.random.default_rng(seed).permutation(len(dataset))[kept:]] = IGNORE_INDEX
    return dataset.add_column("attribute_labels", rows.tolist())


# ----- tokenizing and batching -----


def sentence_ids(tokenizer, texts: Sequence[str], *, max_length: int = 40) -> list[list[int]]:
    """Each text as `<s> ... </s>`, cut to `max_length` tokens with `</s>` kept last.

    The sentence markers are added here, not by the tokenizer (which adds only `<s>`, as prompts need; tokenizers
    saved by older versions also add `</s>`), so every tokenizer gives the same training sentences."""
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2 (<s> and </s>), got {max_length}.")
    backend = tokenizer.backend_tokenizer
    if backend.truncation is None and backend.padding is None:  # the Rust tokenizer itself: twice as fast
        words = [encoding.ids for encoding in backend.encode_batch_fast(list(texts), add_special_tokens=False)]
    else:  # verbose=False: it would warn of sentences past its model_max_length, which are cut just below
        words = tokenizer(list(texts), add_special_tokens=False, return_attention_mask=False,
                          verbose=False)["input_ids"]
    return [[tokenizer.bos_token_id, *sentence[: max_length - 2], tokenizer.eos_token_id] for sentence in words]


class SentenceColumns:
    """The "input_ids" (`sentence_ids`) and "length" columns of a batch of texts: the batched function of
    `Dataset.map`, an object rather than a closure so that the processes of `map(num_proc=...)` can take it."""

    def __init__(self, tokenizer, max_length: int = 40):
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, batch: dict) -> dict:
        ids = sentence_ids(self.tokenizer, batch["text"], max_length=self.max_length)
        return {"input_ids": ids, "length": [len(sentence) for sentence in ids]}


def tokenize_corpus(dataset, tokenizer, *, max_length: int = 40):
    """Add "input_ids" (`sentence_ids`: `<s> ... </s>`, at most `max_length` tokens) and "length" columns.

    Works on a Dataset or a DatasetDict; the other columns (the text, labels) are kept.
    """
    return dataset.map(SentenceColumns(tokenizer, max_length), batched=True, desc="Tokenizing")


@dataclass
class PaddingCollator:
    """Right-pads "input_ids" into a batch with `attention_mask` and `labels` (-100 at pads).

    `extra_columns` (e.g. ("act", "emotion")) are passed through as tensors.
    """

    pad_token_id: int = 0
    extra_columns: Sequence[str] = ()

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        input_ids = torch.full((len(features), longest), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, feature in enumerate(features):
            n = len(feature["input_ids"])
            input_ids[row, :n] = torch.as_tensor(feature["input_ids"], dtype=torch.long)
            attention_mask[row, :n] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask,
                 "labels": input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)}
        for column in self.extra_columns:
            batch[column] = torch.tensor([f[column] for f in features])
        return batch


class LengthBucketBatchSampler:
    """Batches of sentences of similar length, so little compute goes to padding.

    Each epoch the indices are shuffled (seeded by `seed` and the epoch), cut into chunks of `bucket_batches`
    batches, sorted by length within a chunk, cut into batches, and the batch order is shuffled again. The
    order depends only on (seed, epoch), which makes resumed runs follow the same trajectory.
    With `shuffle=False` the whole set is sorted by length once (evaluation).

    Sharding for distributed training: with `num_shards` > 1, each global batch of `batch_size` sentences is
    split into equal contiguous parts and shard `shard_index` gets its part (so `batch_size` must divide evenly;
    incomplete batches are dropped). Without `drop_last` (evaluation) whole batches are dealt round-robin instead.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, *, seed: int = 0, shuffle: bool = True,
                 drop_last: bool = False, bucket_batches: int = 50, num_shards: int = 1, shard_index: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
        if not 0 <= shard_index < num_shards:
            raise ValueError(f"shard_index must be in [0, num_shards={num_shards}), got {shard_index}.")
        if drop_last and batch_size % num_shards:
            raise ValueError(f"batch size {batch_size} does not split evenly over {num_shards} processes; "
                             f"use a multiple of {num_shards}.")
        self.lengths = np.asarray(lengths)
        self.batch_size, self.seed, self.shuffle, self.drop_last = batch_size, seed, shuffle, drop_last
        self.bucket_batches, self.num_shards, self.shard_index = bucket_batches, num_shards, shard_index
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_batches(self, epoch: int | None = None) -> list[list[int]]:
        """Every process's batches of one epoch, before sharding."""
        order, starts = self._batch_starts(epoch)
        return [order[start: start + self.batch_size].tolist() for start in starts]

    def _batch_starts(self, epoch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The epoch's sentence order and where each of its batches starts in it, in batch order: two arrays, not a
        list per batch, so that a corpus of millions of sentences costs a few bytes a sentence."""
        stop = len(self.lengths) - len(self.lengths) % self.batch_size if self.drop_last else len(self.lengths)
        starts = np.arange(0, stop, self.batch_size)
        if not self.shuffle:
            return np.argsort(self.lengths, kind="stable"), starts
        rng = np.random.default_rng([self.seed, self.epoch if epoch is None else epoch])
        order = rng.permutation(len(self.lengths)).astype(np.int32 if len(self.lengths) < 2**31 else np.int64)
        chunk = self.batch_size * self.bucket_batches
        order = np.concatenate([part[np.argsort(self.lengths[part], kind="stable")]
                                for part in np.split(order, range(chunk, len(order), chunk))])
        return order, starts[rng.permutation(len(starts))]

    def __iter__(self):
        order, starts = self._batch_starts()
        if self.num_shards > 1 and not self.drop_last:
            starts = starts[self.shard_index:: self.num_shards]
        part = self.batch_size // self.num_shards if self.drop_last else self.batch_size
        offset = self.shard_index * part if self.drop_last else 0
        for start in starts:
            yield order[start + offset: min(start + offset + part, start + self.batch_size)].tolist()

    def __len__(self) -> int:
        n = len(self.lengths)
        total = n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        if self.num_shards == 1 or self.drop_last:
            return total
        return len(range(self.shard_index, total, self.num_shards))


__all__ = [
    "IGNORE_INDEX",
    "LABEL_COLUMNS",
    "LABEL_NAMES",
    "LengthBucketBatchSampler",
    "PaddingCollator",
    "SentenceColumns",
    "daily_dialog_corpus",
    "default_data_dir",
    "label_names",
    "load_corpus",
    "read_sentences",
    "sentence_lines",
    "sentence_ids",
    "text_files_corpus",
    "tokenize_corpus",
    "with_attribute_labels",
]
