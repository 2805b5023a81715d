"""`demvae train --streaming`: the training sentences read in order from plain-text files, through a shuffle buffer,
tokenized as they are read and never copied (the cache holds only the validation split).

What it gives up against the prepared corpus: the order is a shuffle buffer's (--shuffle-buffer sentences), not a
permutation of the whole corpus, and sentences of similar length are batched together within a window of 50
batches of it; one process only (the stream is not sharded); no held-out validation (--valid-file is required) and
no --supervise (the labels are needed before training starts). --resume is exact: the stream of an epoch depends
only on the seed and the epoch, so a resumed run reads the epoch again from its start and skips the batches it
had trained on, which costs a read of that part of the file.
"""

from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import numpy as np
from datasets import IterableDataset
from tqdm.auto import tqdm

from modeling_demvae import build_tokenizer, data
from modeling_demvae.corpus_cache import file_identity, prepared_text, tokenized_split

from .trainer import DEMVAETrainer

SHUFFLE_BUFFER = 10_000  # sentences, unless --shuffle-buffer says otherwise
BUCKET_BATCHES = 50  # batches of the stream sorted by length together, as `data.LengthBucketBatchSampler` does


def file_sentences(paths: list[str], progress=None) -> Iterator[dict]:
    """{"text": ...} for each sentence of the files, in order (`data.sentence_lines`)."""
    for path in paths:
        yield from ({"text": line} for line in data.sentence_lines(path, progress))


class SentenceStream:
    """The training sentences of `files`, an epoch at a time: shuffled through a buffer of `buffer_size`, seeded by
    the seed and the epoch; `record()` names them in the run's settings (a resumed run must read the same)."""

    def __init__(self, files, tokenizer, *, max_length: int, buffer_size: int):
        self.files, self.tokenizer = [str(Path(path)) for path in files], tokenizer
        self.max_length, self.buffer_size = max_length, buffer_size

    def record(self) -> dict:
        return {"stream": [file_identity(path) for path in self.files], "shuffle_buffer": self.buffer_size}

    def batches(self, batch_size: int, *, seed: int, epoch: int) -> Iterator[list[list[int]]]:
        """The epoch's batches of token ids: windows of BUCKET_BATCHES batches of the shuffled stream, each sorted
        by length, cut into batches (an incomplete last one dropped) and served in a seeded random order."""
        stream = IterableDataset.from_generator(file_sentences, gen_kwargs={"paths": self.files})
        stream = stream.shuffle(seed=seed, buffer_size=self.buffer_size)
        stream.set_epoch(epoch)
        stream = stream.map(data.SentenceColumns(self.tokenizer, self.max_length), batched=True,
                            remove_columns=["text"])
        rng = np.random.default_rng([seed, epoch])
        for window in stream.iter(batch_size=batch_size * BUCKET_BATCHES):
            order = np.argsort(window["length"], kind="stable")
            starts = range(0, len(order) - len(order) % batch_size, batch_size)
            for start in np.asarray(starts)[rng.permutation(len(starts))]:
                yield [window["input_ids"][index] for index in order[start: start + batch_size]]


class StreamingTrainer(DEMVAETrainer):
    """`DEMVAETrainer` on a `SentenceStream`: everything but where the training batches come from is the same."""

    def _set_training_data(self, stream: SentenceStream, dialog: bool) -> None:
        if self.accelerator.num_processes > 1:
            raise ValueError("--streaming trains on one process: the stream is read in order, not sharded; drop "
                             "--streaming (the corpus is then prepared once) to train on several.")
        if dialog:
            raise ValueError("--streaming trains sentence models: a dialog model reads its dialogs through the cache.")
        self.train_columns, self.stream = {"input_ids": stream}, stream

    def _train_batches(self):
        while True:
            batches = self.stream.batches(self.args.batch_size, seed=self.args.seed, epoch=self.state.data_epoch)
            served = self.state.batch_in_epoch
            for ids in islice(batches, self.state.batch_in_epoch, None):
                served += 1
                yield self.collate([{"input_ids": sentence} for sentence in ids])
            if served == 0:
                raise ValueError(f"the training files hold fewer sentences than one batch of {self.args.batch_size}; "
                                 "lower --batch-size or give more text.")
            self.state.data_epoch, self.state.batch_in_epoch = self.state.data_epoch + 1, 0


def streaming_data(args, settings: dict, make_model):
    """The model and tokenizer (`make_model(texts, make_tokenizer)`, the vocabulary from one streaming pass over
    the training files) and the data: the training stream and the validation split, prepared into the cache."""
    train_files = [args.train_file]

    def texts() -> Iterator[str]:
        total = sum(Path(path).stat().st_size for path in train_files)
        with tqdm(total=total, unit="B", unit_scale=True, desc="Building the vocabulary", dynamic_ncols=True) as bar:
            yield from (row["text"] for row in file_sentences(train_files, bar))

    model, tokenizer = make_model(texts, lambda **options: build_tokenizer(texts(), **options))
    validation = tokenized_split(prepared_text(files=(args.valid_file,)).splits()["train"], tokenizer,
                                 max_length=model.config.max_sentence_length)
    stream = SentenceStream(train_files, tokenizer, max_length=model.config.max_sentence_length,
                            buffer_size=args.shuffle_buffer or SHUFFLE_BUFFER)
    return model, tokenizer, {"train": stream, "validation": validation}


__all__ = ["SentenceStream", "StreamingTrainer", "file_sentences", "streaming_data"]
