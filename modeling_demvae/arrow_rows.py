"""Rows of a dataset read from Arrow when they are needed, never all at once as Python lists: a corpus of millions of
sentences costs its memory-mapped file, not gigabytes of lists."""

import hashlib
from collections.abc import Sequence

import numpy as np
import pyarrow.compute as pc

DIGEST_BATCH = 100_000  # rows hashed at a time
_STORED_RECORDS = {}  # (Arrow files, column) -> the record a prepared corpus stored when it was built


def remember_record(dataset, column: str, record: dict) -> None:
    """The record of a column of a split as it lies in its Arrow files (`corpus_cache` stores one per prepared
    split), so that `ColumnRows.record` of that unchanged split does not hash a corpus again at every start."""
    _STORED_RECORDS[(_arrow_files(dataset), column)] = record


def _arrow_files(dataset) -> tuple[str, ...]:
    return tuple(item["filename"] for item in dataset.cache_files)


class ColumnRows(Sequence):
    """One list column of a `datasets.Dataset` (token ids, attribute labels) as a read-only sequence of lists: an
    index, a slice or a list of indices reads just those rows from Arrow."""

    def __init__(self, dataset, column: str):
        if column not in dataset.column_names:
            raise ValueError(f"the dataset has no column {column!r}; its columns are {dataset.column_names}.")
        self.dataset, self.column = dataset.select_columns([column]).with_format(None), column
        self._record = None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        if isinstance(index, slice):
            index = range(*index.indices(len(self)))
        if isinstance(index, range | list | np.ndarray):
            return self.dataset[list(index)][self.column] if len(index) else []
        return self.dataset[int(index)][self.column]

    def __iter__(self):
        for batch in self.dataset.iter(batch_size=1000):
            yield from batch[self.column]

    def record(self) -> dict:
        """{"sentences": rows, "sha256": ...}: the rows' fingerprint, the digest `runs.ids_record` takes of a list
        (each row's values as int64 bytes, then b";"), computed a batch at a time in NumPy."""
        if self._record is None and self.dataset._indices is None:  # rows as they lie in the files
            self._record = _STORED_RECORDS.get((_arrow_files(self.dataset), self.column))
        if self._record is None:
            digest = hashlib.sha256()
            for table in self.dataset.with_format("arrow").iter(batch_size=DIGEST_BATCH):
                digest.update(row_bytes(table.column(self.column)))
            self._record = {"sentences": len(self), "sha256": digest.hexdigest()}
        return self._record


def column_array(dataset, column: str, dtype=np.int32) -> np.ndarray:
    """A column of numbers of a dataset (the sentence lengths) as one NumPy array of `dtype`, read from Arrow a
    batch at a time (int32 lengths: half the memory of Arrow's int64 for a corpus of millions)."""
    batches = dataset.select_columns([column]).with_format("arrow").iter(batch_size=DIGEST_BATCH)
    return np.concatenate([np.asarray(batch.column(column).to_numpy(), dtype=dtype) for batch in batches]
                          or [np.zeros(0, dtype)])


def row_bytes(column) -> bytes:
    """An Arrow list column of integers as bytes: each row's values as int64, followed by b";"."""
    values = np.asarray(pc.list_flatten(column).to_numpy(zero_copy_only=False), dtype=np.int64).view(np.uint8)
    ends = np.cumsum(pc.list_value_length(column).to_numpy(zero_copy_only=False), dtype=np.int64) * 8
    return np.insert(values, ends, ord(";")).tobytes()


__all__ = ["ColumnRows", "column_array", "remember_record", "row_bytes"]
