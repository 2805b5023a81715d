"""Corpora prepared once, on disk, and reused: the text, the vocabulary built from it, and its token ids, each an
entry of the cache folder (`cache_dir`) named by a hash of what it is made from.

An entry is built in a temporary folder beside it and renamed into place in one step, with a manifest written last
that lists its files and their sizes: a folder without a manifest, or whose files differ from it (a build that was
killed, a truncated file), is reported, removed and built again, never read. The splits are Arrow files read
memory-mapped, so a corpus of any size costs the pages in use, not its size. Building reads the text a batch at a
time in the files' order, and counts words and makes ids with Arrow's kernels (`arrow_words`).

The corpus files are known by their path, size and modification time (nanoseconds), as `datasets` knows local
files: hashing their content would read gigabytes at every start, and any write through the file system changes
the time. A file rewritten with its old size and time put back is not noticed; delete the entry, or set
DEMVAE_CACHE_DIR elsewhere, to start afresh (a resumed run still compares the token ids' fingerprint). Sources
read whole into memory anyway (the synthetic corpus, Hub datasets) are known by their content or fingerprint.
"""

import fcntl
import hashlib
import json
import math
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict, Features, Sequence, Value, concatenate_datasets
from datasets.arrow_writer import ArrowWriter
from tqdm.auto import tqdm

from . import arrow_words, data, synthetic
from .arrow_rows import remember_record, row_bytes

CACHE_VERSION = 2  # part of every key: a change to how entries are built retires the old ones
MANIFEST = "manifest.json"  # written last, so its presence says the entry is whole
WRITER_BATCH = 10_000  # rows per Arrow record batch of text, and per batch tokenized
# rows per record batch of token ids: opening a memory-mapped split reads every batch's header, and the pages
# read ahead around each stay resident (100 MB for 1,000 batches of a 10M-sentence corpus; 10 MB for 100)
TOKENS_BATCH = 100_000


def cache_dir() -> Path:
    """Where prepared corpora live: $DEMVAE_CACHE_DIR, else `demvae` in the datasets cache ($HF_DATASETS_CACHE,
    by default ~/.cache/huggingface/datasets)."""
    if os.environ.get("DEMVAE_CACHE_DIR"):
        return Path(os.environ["DEMVAE_CACHE_DIR"]).expanduser()
    return Path(datasets.config.HF_DATASETS_CACHE) / "demvae"


def notice(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _key(parts: dict) -> str:
    return hashlib.sha256(json.dumps({"version": CACHE_VERSION, **parts}, sort_keys=True).encode()).hexdigest()[:32]


def file_identity(path) -> list:
    """A file as its key knows it: resolved path, size and modification time in nanoseconds."""
    path = Path(path).resolve()
    stat = path.stat()
    return [str(path), stat.st_size, stat.st_mtime_ns]


# ----- entries -----


def entry_problem(folder: Path) -> str | None:
    """Why an entry folder may not be read (None: whole): no manifest, a damaged one, or files that differ from it."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
    except FileNotFoundError:
        return "no manifest: its build did not finish"
    except (ValueError, KeyError, TypeError):
        return f"{MANIFEST} is damaged"
    for name, size in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size:,} bytes, the manifest {size:,}"
    return None


def cached_entry(kind: str, parts: dict, build, *, what: str) -> tuple[Path, dict]:
    """The entry of `kind` made from `parts`, built by `build(folder) -> manifest entries` when it is not whole;
    its folder and manifest."""
    root = cache_dir()
    folder = root / f"{kind}-{_key(parts)}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = open(root / f".{folder.name}.lock", "a")
    except OSError as error:
        raise ValueError(f"the corpus cache {root} cannot be written ({error.strerror}); set DEMVAE_CACHE_DIR to a "
                         "writable folder.") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder at a time; the others wait and then read its entry
        return _whole_entry(folder, build, {"kind": kind, "parts": parts}, what)


def _whole_entry(folder: Path, build, manifest: dict, what: str) -> tuple[Path, dict]:
    if folder.is_dir():
        problem = entry_problem(folder)
        if problem is None:
            notice(f"Reusing the {what} prepared in {folder}")
            return folder, json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        notice(f"The {what} in {folder} is unusable ({problem}); preparing it again.")
        shutil.rmtree(folder)
    for stale in folder.parent.glob(f".building-{folder.name}-*"):  # of a build that was killed
        shutil.rmtree(stale, ignore_errors=True)
    building = folder.parent / f".building-{folder.name}-{os.getpid()}"
    building.mkdir()
    try:
        manifest = {**manifest, **build(building)}
        manifest["files"] = {path.relative_to(building).as_posix(): path.stat().st_size
                             for path in sorted(building.rglob("*")) if path.is_file()}
        (building / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        building.rename(folder)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return folder, manifest


def _write_split(rows, features: Features, path: Path) -> int:
    """Write tables or row batches (dicts of columns) into one Arrow file; the number of rows."""
    with ArrowWriter(features=features, path=str(path), writer_batch_size=WRITER_BATCH) as writer:
        for batch in rows:
            writer.write_table(batch) if hasattr(batch, "schema") else writer.write_batch(batch)
        count, _ = writer.finalize()
    return count


def _load_splits(folder: Path, manifest: dict) -> DatasetDict:
    """The splits of an entry, memory-mapped, each with the records its manifest holds remembered."""
    splits = {}
    for name, split in manifest["splits"].items():
        parts = [Dataset.from_file(str(folder / file)) for file in split["files"]]
        splits[name] = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
        for column, record in split.get("records", {}).items():
            remember_record(splits[name], column, record)
    return DatasetDict(splits)


# ----- the text -----


@dataclass
class PreparedText:
    """A corpus's text in the cache: `key` names it (with the held-out validation, when there is one), `splits()`
    reads it memory-mapped; a held-out validation is carved out of the training split when it is tokenized
    (`tokenized_corpus`), both keeping the file's order."""

    key: str
    folder: Path
    manifest: dict
    holdout: dict | None = None
    _splits: DatasetDict | None = field(default=None, repr=False)

    def splits(self) -> DatasetDict:
        if self._splits is None:
            self._splits = _load_splits(self.folder, self.manifest)
        return self._splits

    def sizes(self) -> dict[str, int]:
        """Sentences per split of the training splits, from the manifest (nothing is read)."""
        sizes = {name: split["rows"] for name, split in self.manifest["splits"].items()}
        if self.holdout:
            held = held_out_count(sizes["train"], self.holdout["fraction"])
            sizes.update(train=sizes["train"] - held, validation=held)
        return sizes

    def held_out(self, rows: int) -> np.ndarray:
        """Which rows of the training file are held out for validation (a mask): `fraction` of them, rounded up as
        `Dataset.train_test_split` rounds, chosen by `seed`."""
        chosen = np.random.default_rng(self.holdout["seed"]).permutation(rows)
        held = np.zeros(rows, dtype=bool)
        held[chosen[: held_out_count(rows, self.holdout["fraction"])]] = True
        return held

    def with_holdout(self, fraction: float, seed: int) -> "PreparedText":
        """This text with `fraction` of its training sentences, chosen by `seed`, held out for validation."""
        return PreparedText(_key({"text": self.key, "holdout": [fraction, seed]}), self.folder, self.manifest,
                            {"fraction": fraction, "seed": seed})


def held_out_count(rows: int, fraction: float) -> int:
    """How many of `rows` sentences `Dataset.train_test_split(test_size=fraction)` puts in its test split."""
    return math.ceil(fraction * rows)


def _read_text_files(files: dict[str, Path], folder: Path) -> dict:
    """Each split's plain-text file, stripped non-empty lines, streamed into an Arrow file, with one bar of bytes."""
    features = Features({"text": Value("string")})
    splits = {}
    with tqdm(total=sum(path.stat().st_size for path in files.values()), unit="B", unit_scale=True,
              desc="Reading the corpus", dynamic_ncols=True) as progress:
        for name, path in files.items():
            rows = _write_split(_batches(data.sentence_lines(path, progress)), features, folder / f"{name}.arrow")
            splits[name] = {"files": [f"{name}.arrow"], "rows": rows}
    return {"splits": splits}


def _batches(lines: Iterator[str]) -> Iterator[dict]:
    batch = []
    for line in lines:
        batch.append(line)
        if len(batch) == WRITER_BATCH:
            yield {"text": batch}
            batch = []
    if batch:
        yield {"text": batch}


def _write_corpus(corpus: DatasetDict, folder: Path) -> dict:
    """A corpus already read (a table file, DailyDialog, the synthetic corpus, a Hub dataset) into Arrow files."""
    splits = {}
    for name, split in corpus.items():
        rows = _write_split(tqdm(split.with_format("arrow").iter(batch_size=WRITER_BATCH), unit=" batches",
                                 desc=f"Writing the {name} split", total=-(-len(split) // WRITER_BATCH),
                                 dynamic_ncols=True), split.features, folder / f"{name}.arrow")
        splits[name] = {"files": [f"{name}.arrow"], "rows": rows}
    return {"splits": splits}


def text_file_splits(dataset: str | None, files, data_dir) -> dict[str, Path] | None:
    """The plain-text file of each split when the corpus is made of them (--train-file and its siblings, a .txt
    file, a folder of {train,valid,test}.txt, ptb): these stream into the cache; None for other corpora."""
    if files:
        paths = dict(zip(("train", "validation", "test"), files, strict=False))
        paths = {name: Path(path) for name, path in paths.items() if path}
        if all(path.suffix.lower() not in data.TABLE_SUFFIXES for path in paths.values()):
            for path in paths.values():
                if not path.is_file():
                    raise FileNotFoundError(f"text file not found: {path} (give a file with one sentence per line).")
            return paths
        return None
    if dataset in ("synthetic", "daily_dialog", None):
        return None
    path = Path(data_dir or data.default_data_dir()) / dataset if dataset in data.BUILTIN_CORPORA else Path(dataset)
    path = path.expanduser()
    if path.is_file() and path.suffix.lower() not in data.TABLE_SUFFIXES:
        return {"train": path}
    if path.is_dir() and not (path / "train" / "dialogues.txt").is_file() and (found := data.folder_text_files(path)):
        return {name: file for name, file in zip(("train", "validation", "test"), found, strict=True) if file}
    return None


def _local_files(dataset: str | None, files, data_dir) -> list[Path] | None:
    """Every file a local corpus that is not plain text is read from (a table file, a DailyDialog folder); None
    when it is none (or a file is missing: reading it says which)."""
    if files:
        paths = [Path(path) for path in files if path]
        return paths if all(path.is_file() for path in paths) else None
    path = Path(data_dir or data.default_data_dir()) / dataset if dataset in data.BUILTIN_CORPORA else Path(dataset)
    path = path.expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(file for file in path.rglob("*") if file.is_file())
    return None


def prepared_text(dataset: str | None = None, *, files=None, text_column: str = "text", data_dir=None) -> PreparedText:
    """A corpus's text in the cache, read once: --dataset's (see `data.load_corpus`) or that of the files given
    for the train, validation and test splits (see `data.text_files_corpus`)."""
    plain = text_file_splits(dataset, files, data_dir)
    if plain is not None:
        parts = {"text_files": {name: file_identity(path) for name, path in plain.items()}}
        return _text_entry(parts, lambda folder: _check(_read_text_files(plain, folder), plain["train"]))
    local = _local_files(dataset, files, data_dir) if dataset != "synthetic" else None

    def read():
        if files:
            return data.text_files_corpus(*files, text_column=text_column)
        return data.load_corpus(dataset, text_column=text_column, data_dir=data_dir)

    if local is not None or dataset == "synthetic":
        source = [file_identity(path) for path in local] if local else [file_identity(synthetic.__file__)]
        parts = {"files": source, "text_column": text_column, "reader": dataset if not files else "files"}
        return _text_entry(parts, lambda folder: _write_corpus(read(), folder))
    corpus = read()  # a Hub dataset: in the datasets cache already, known by its fingerprints
    parts = {"hub": dataset, "text_column": text_column, "fingerprints": {k: v._fingerprint for k, v in corpus.items()}}
    return _text_entry(parts, lambda folder: _write_corpus(corpus, folder))


def _check(built: dict, origin) -> dict:
    """The error `data.text_files_corpus` gives for a split without sentences (every line empty)."""
    for name, split in built["splits"].items():
        if split["rows"] == 0:
            raise ValueError(f"corpus {origin}: the {name} split has no sentences (only empty lines?); "
                             "give at least one non-empty line of text.")
    return built


def _text_entry(parts: dict, build) -> PreparedText:
    folder, manifest = cached_entry("text", parts, build, what="text of the corpus")
    return PreparedText(_key(parts), folder, manifest)


# ----- the vocabulary and the token ids -----


def _record_batches(folder: Path, files: list[str]) -> Iterator[pa.RecordBatch]:
    """The record batches of a split's Arrow files in order, read without memory-mapping them: one pass over a
    gigabyte of text would otherwise keep every page of it resident in the process."""
    for file in files:
        with pa.OSFile(str(folder / file)) as handle, pa.ipc.open_stream(handle) as reader:
            yield from reader


def training_text_batches(text: PreparedText) -> Iterator[pa.Array]:
    """The training sentences in the order of the files (held-out rows left out), an Arrow string array a batch."""
    split = text.manifest["splits"]["train"]
    held, start = text.held_out(split["rows"]) if text.holdout else None, 0
    for batch in _record_batches(text.folder, split["files"]):
        texts = batch.column("text")
        yield texts if held is None else texts.filter(pa.array(~held[start: start + len(texts)]))
        start += len(texts)


def training_texts(text: PreparedText) -> Iterator[str]:
    """The training sentences in the order of the files, one string at a time."""
    for texts in training_text_batches(text):
        yield from texts.to_pylist()


def _counted(batches: Iterator[pa.Array], bar) -> Iterator[pa.Array]:
    for batch in batches:
        yield batch
        bar.update(len(batch))


def cached_tokenizer(text: PreparedText, **settings):
    """`build_tokenizer(**settings)` over the training sentences, in one streaming pass with a bar, its words
    counted by Arrow's kernels; built once per text and settings, then loaded from the cache."""
    from .tokenization_demvae import DEMVAETokenizer, build_tokenizer

    def build(folder: Path) -> dict:
        with tqdm(total=text.sizes()["train"], unit=" sentences", unit_scale=True, desc="Building the vocabulary",
                  dynamic_ncols=True) as bar:
            build_tokenizer(_counted(training_text_batches(text), bar), word_counter=arrow_words.counted_words,
                            **settings).save_pretrained(folder)
        return {}

    folder, _ = cached_entry("vocabulary", {"text": text.key, "settings": settings}, build, what="vocabulary")
    return DEMVAETokenizer.from_pretrained(str(folder))


def tokenizer_hash(tokenizer) -> str:
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()


def tokenized_corpus(text: PreparedText, tokenizer, *, max_length: int) -> DatasetDict:
    """`data.tokenize_corpus` of the training splits (the text column dropped, label columns kept), each in its
    file's order, with each split's record of its token ids: tokenized once per text, tokenizer and maximum length,
    then memory-mapped from the cache."""
    def build(folder: Path) -> dict:
        splits = {}
        for name, split in text.manifest["splits"].items():
            if name == "train" and text.holdout:
                outputs = {"train": folder / "train.arrow", "validation": folder / "validation.arrow"}
                route = text.held_out(split["rows"])
            else:
                outputs, route = {name: folder / f"{name}.arrow"}, None
            splits.update(_write_tokens(text.folder, split, tokenizer, max_length, outputs, route, name))
        return {"splits": splits}

    parts = {"text": text.key, "tokenizer": tokenizer_hash(tokenizer), "max_length": max_length}
    folder, manifest = cached_entry("tokens", parts, build, what="tokenized corpus")
    return _load_splits(folder, manifest)


def tokenized_split(split, tokenizer, *, max_length: int):
    """`data.tokenize_corpus` of one split, from the cache when the split is one of a prepared text's, as it lies
    in its files (`prepared_text(...).splits()[name]`); a split made in memory is tokenized in memory."""
    origin = _entry_split(split)
    if origin is None:
        return data.tokenize_corpus(split, tokenizer, max_length=max_length)
    text_folder, name, source = origin

    def build(folder: Path) -> dict:
        return {"splits": _write_tokens(text_folder, source, tokenizer, max_length, {name: folder / f"{name}.arrow"},
                                        None, name)}

    parts = {"text": text_folder.name, "split": name, "tokenizer": tokenizer_hash(tokenizer),
             "max_length": max_length}
    folder, manifest = cached_entry("tokens", parts, build, what=f"tokenized {name} split")
    return _load_splits(folder, manifest)[name]


def _entry_split(split) -> tuple[Path, str, dict] | None:
    """(entry folder, split name, the split's manifest entry) of a split read from a whole text entry and not
    changed since; else None."""
    files = [Path(item["filename"]) for item in split.cache_files]
    if split._indices is not None or not files or len({file.parent for file in files}) != 1:
        return None
    folder = files[0].parent
    if folder.parent != cache_dir() or not folder.name.startswith("text-") or entry_problem(folder) is not None:
        return None
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    names = [name for name, entry in manifest["splits"].items() if entry["files"] == [file.name for file in files]]
    if not names or split.column_names != list(_load_splits(folder, manifest)[names[0]].column_names):
        return None
    return folder, names[0], manifest["splits"][names[0]]


def _write_tokens(text_folder: Path, split: dict, tokenizer, max_length: int, outputs: dict[str, Path],
                  held: np.ndarray | None, name: str) -> dict:
    """A text split's sentences as "input_ids" and "length" columns (its other columns kept), tokenized a batch at
    a time in the file's order into `outputs` (rows marked in `held` into outputs["validation"], the others into
    outputs["train"]); each output's manifest entry, with the record of its token ids."""
    to_ids = arrow_words.SentenceIds(tokenizer, max_length)
    with pa.OSFile(str(text_folder / split["files"][0])) as handle:
        source = Features.from_arrow_schema(pa.ipc.open_stream(handle).schema)
    features = Features({**{column: feature for column, feature in source.items() if column != "text"},
                         "input_ids": Sequence(Value("int32")), "length": Value("int32")})
    digests, rows, start = {output: hashlib.sha256() for output in outputs}, dict.fromkeys(outputs, 0), 0
    pending = {output: [] for output in outputs}  # tables not yet written: TOKENS_BATCH rows make a record batch
    with ExitStack() as stack:
        writers = {output: stack.enter_context(ArrowWriter(features=features, path=str(path),
                                                           writer_batch_size=TOKENS_BATCH))
                   for output, path in outputs.items()}
        bar = stack.enter_context(tqdm(total=split["rows"], unit=" sentences", unit_scale=True, dynamic_ncols=True,
                                       desc=f"Tokenizing the {name} split"))
        for batch in _record_batches(text_folder, split["files"]):
            ids = to_ids(batch.column("text"))
            table = pa.table({**{column: batch.column(column) for column in batch.schema.names if column != "text"},
                              "input_ids": ids, "length": pc.list_value_length(ids)})
            if held is None:
                parts = {next(iter(outputs)): table}
            else:
                mask = pa.array(held[start: start + len(table)])
                parts = {"train": table.filter(pc.invert(mask)), "validation": table.filter(mask)}
            for output, part in parts.items():
                pending[output].append(part)
                digests[output].update(row_bytes(part.column("input_ids")))
                rows[output] += len(part)
                if sum(map(len, pending[output])) >= TOKENS_BATCH:
                    writers[output].write_table(pa.concat_tables(pending[output]).combine_chunks())
                    pending[output] = []
            start += len(table)
            bar.update(len(table))
        for output, writer in writers.items():
            if pending[output]:
                writer.write_table(pa.concat_tables(pending[output]).combine_chunks())
            writer.finalize()
    return {output: {"files": [path.name], "rows": rows[output],
                     "records": {"input_ids": {"sentences": rows[output], "sha256": digests[output].hexdigest()}}}
            for output, path in outputs.items()}


__all__ = ["PreparedText", "cache_dir", "cached_entry", "cached_tokenizer", "entry_problem", "prepared_text",
           "tokenized_corpus", "tokenized_split", "training_text_batches", "training_texts"]
