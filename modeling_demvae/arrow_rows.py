"""Rows of a dataset read from Arrow when they are needed, never all at once as Python lists: a corpus of millions of
sentences costs its memory-mapped file, not gigabytes of lists."""

import hashlib
import os
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets.table import MemoryMappedTable

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
        self._file_rows = FileRows.of(dataset, column)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        if isinstance(index, slice):
            index = range(*index.indices(len(self)))
        if self._file_rows is not None:  # an int counts from the end when negative, as a dataset's index does
            return self._file_rows.rows(index) if isinstance(index, range | list | np.ndarray) else \
                self._file_rows.rows([index % len(self) if -len(self) <= index < 0 else index])[0]
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


class FileRows:
    """Rows of a list-of-integers column read from its Arrow file with `pread`, not through the memory map: a row
    read through the map maps the page-cache pages around it into the process (on a file system with large folios,
    1.4 MB a row here), so the random batches of a 10M-sentence corpus would keep hundreds of MB of it resident;
    read, the file's pages stay in the page cache, outside the process. `of` gives None for a column it cannot read
    so (nested lists, nulls, rows not as they lie in one file)."""

    def __init__(self, path: str, column: str):
        self.path, self._fd = path, None
        starts, offsets, values, dtypes = [0], [], [], []
        with pa.memory_map(path) as mapped:  # to find the buffers' places in the file; closed before any row is read
            whole = mapped.read_buffer()
            base = whole.address
            for batch in pa.ipc.open_stream(whole):
                rows = batch.column(column)
                _, offset_buffer, _, value_buffer = rows.buffers()
                dtypes.append(np.dtype(rows.type.value_type.to_pandas_dtype()).newbyteorder("<"))
                offsets.append(offset_buffer.address - base + 4 * rows.offset)
                values.append(value_buffer.address - base + dtypes[-1].itemsize * rows.values.offset)
                starts.append(starts[-1] + len(rows))
        self.starts, self.offsets, self.values, self.dtypes = np.array(starts), offsets, values, dtypes

    @classmethod
    def of(cls, dataset, column: str) -> "FileRows | None":
        files = dataset.cache_files
        if (not isinstance(dataset.data, MemoryMappedTable) or dataset._indices is not None or len(files) != 1
                or dataset.data.table.column(column).null_count):  # a column added in memory, rows selected
            return None
        kind = dataset.data.table.schema.field(column).type
        if not (pa.types.is_list(kind) and pa.types.is_integer(kind.value_type)):
            return None
        rows = cls(files[0]["filename"], column)
        return rows if rows.starts[-1] == len(dataset) else None

    def rows(self, indices) -> list[list[int]]:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) and (indices.min() < 0 or indices.max() >= self.starts[-1]):
            raise IndexError(f"row index out of range for {self.starts[-1]} rows")
        chunks = np.searchsorted(self.starts, indices, side="right") - 1
        return [self._row(int(chunk), int(index - self.starts[chunk])) for chunk, index in zip(chunks, indices,
                                                                                              strict=True)]

    def _row(self, chunk: int, row: int) -> list[int]:
        start, stop = np.frombuffer(os.pread(self._fd, 8, self.offsets[chunk] + 4 * row), dtype="<i4")
        dtype = self.dtypes[chunk]
        data = os.pread(self._fd, int(stop - start) * dtype.itemsize, self.values[chunk] + dtype.itemsize * int(start))
        return np.frombuffer(data, dtype=dtype).tolist()

    def __del__(self):
        if self._fd is not None:
            os.close(self._fd)

    def __getstate__(self):  # a copy in another process opens the file again
        return {**self.__dict__, "_fd": None}


def column_array(dataset, column: str, dtype=np.int32) -> np.ndarray:
    """A column of a dataset without missing values (the sentence lengths, a label column) as one NumPy array of
    `dtype` (None: the column's own), read from Arrow a batch at a time (int32 lengths: half the memory of Arrow's
    int64 for a corpus of millions)."""
    parts = []
    for batch in dataset.select_columns([column]).with_format("arrow").iter(batch_size=DIGEST_BATCH):
        values = batch.column(column)
        if values.null_count:
            raise ValueError(f"the column {column!r} has rows without a value; it needs one in every row.")
        parts.append(np.asarray(values.to_numpy(), dtype=dtype))
    return np.concatenate(parts or [np.zeros(0, dtype)])


def row_bytes(column) -> bytes:
    """An Arrow list column of integers as bytes: each row's values as int64, followed by b";"."""
    values = np.asarray(pc.list_flatten(column).to_numpy(zero_copy_only=False), dtype=np.int64).view(np.uint8)
    ends = np.cumsum(pc.list_value_length(column).to_numpy(zero_copy_only=False), dtype=np.int64) * 8
    return np.insert(values, ends, ord(";")).tobytes()


__all__ = ["ColumnRows", "FileRows", "column_array", "remember_record", "row_bytes"]
