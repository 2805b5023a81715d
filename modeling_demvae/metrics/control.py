"""Control accuracy, the paper's interpretability-by-accuracy measure: generate sentences with a fixed label, classify
them with a classifier trained on real labelled sentences, and count how often it reads back the label asked for.

The classifier is a logistic regression on bag-of-words and bag-of-bigrams features (lower-cased words, sentence
boundaries as words), trained once per corpus and label column and cached as safetensors weights plus a JSON file
(never a pickle), under a key that hashes the training sentences and labels. Its accuracy on real test sentences is
the ceiling of the control accuracy.
"""

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

CLASSIFIER_VERSION = 2  # part of the cache key: a change of features or training makes new classifiers


def demvae_cache() -> Path:
    """The user's cache folder of the package: $DEMVAE_CACHE, else ~/.cache/demvae."""
    return Path(os.environ.get("DEMVAE_CACHE") or Path.home() / ".cache" / "demvae")


def default_cache_dir() -> Path:
    """$DEMVAE_CACHE/classifiers, else ~/.cache/demvae/classifiers."""
    return demvae_cache() / "classifiers"


def ngrams(text: str) -> list[str]:
    words = ["<s>", *text.lower().split(), "</s>"]
    return words[1:-1] + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]


class LabelClassifier(nn.Module):
    """Logistic regression over the n-gram features of a sentence (each counted once): an EmbeddingBag sum."""

    def __init__(self, features: Sequence[str], labels: Sequence[str]):
        super().__init__()
        self.features, self.labels = list(features), list(labels)
        self.index = {feature: i for i, feature in enumerate(self.features)}
        self.weights = nn.EmbeddingBag(len(self.features) + 1, len(self.labels), mode="sum", padding_idx=0)
        self.bias = nn.Parameter(torch.zeros(len(self.labels)))
        nn.init.zeros_(self.weights.weight)

    def feature_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each sentence's feature ids (0 alone: none known)."""
        return [sorted({self.index[g] + 1 for g in ngrams(text) if g in self.index}) or [0] for text in texts]

    @staticmethod
    def bags(rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat feature ids and offsets, as EmbeddingBag takes them."""
        offsets = torch.tensor([0, *[len(row) for row in rows[:-1]]]).cumsum(0)
        return torch.tensor([i for row in rows for i in row]), offsets

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.weights(ids, offsets) + self.bias

    @torch.no_grad()
    def predict(self, texts: Sequence[str]) -> list[str]:
        if not texts:
            return []
        return [self.labels[i] for i in self(*self.bags(self.feature_ids(texts))).argmax(-1).tolist()]

    def macro_accuracy(self, texts: Sequence[str], labels: Sequence[str]) -> float:
        """The mean over labels of the share of a label's sentences read as it (the balanced accuracy): the measure
        of control accuracy, which generates as many sentences of every label, on real sentences."""
        hits, counts = Counter(), Counter(labels)
        for predicted, true in zip(self.predict(texts), labels, strict=True):
            hits[true] += predicted == true
        return sum(hits[label] / count for label, count in counts.items()) / max(1, len(counts))

    def save(self, folder: Path) -> None:
        save_file({"weights": self.weights.weight.detach().contiguous(), "bias": self.bias.detach()},
                  folder / "classifier.safetensors")
        (folder / "classifier.json").write_text(json.dumps({"version": CLASSIFIER_VERSION, "labels": self.labels,
                                                            "features": self.features}), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> "LabelClassifier":
        """From `save`'s files: JSON and safetensors, nothing that runs code when read."""
        spec = json.loads((folder / "classifier.json").read_text(encoding="utf-8"))
        classifier = cls(spec["features"], spec["labels"])
        tensors = load_file(folder / "classifier.safetensors")
        classifier.weights.weight.data.copy_(tensors["weights"])
        classifier.bias.data.copy_(tensors["bias"])
        return classifier.eval()


def train_classifier(texts: Sequence[str], labels: Sequence[str], *, label_names: Sequence[str],
                     min_count: int = 2, max_features: int = 50_000, epochs: int = 8, batch_size: int = 256,
                     learning_rate: float = 0.05, weight_decay: float = 1e-6, seed: int = 0) -> LabelClassifier:
    """A logistic regression from sentences to `label_names`, on the n-grams seen at least `min_count` times.

    Each label's sentences weigh as much in the loss as another's (weights inverse to the label counts): control
    accuracy asks it about as many generated sentences of every label, so a prior toward the frequent labels (83% of
    DailyDialog's utterances carry no emotion) would only hide the rare ones."""
    counts = Counter(g for text in texts for g in set(ngrams(text)))
    features = sorted((g for g, n in counts.items() if n >= min_count), key=lambda g: (-counts[g], g))[:max_features]
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        classifier = LabelClassifier(features, label_names)
    targets = torch.tensor([classifier.labels.index(label) for label in labels])
    counts = torch.bincount(targets, minlength=len(classifier.labels)).float()
    balance = torch.where(counts > 0, len(targets) / (counts.clamp_min(1) * (counts > 0).sum()), 0.0)
    rows = classifier.feature_ids(texts)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=learning_rate, weight_decay=weight_decay)
    for _ in range(epochs):
        for batch in torch.randperm(len(texts), generator=generator).split(batch_size):
            loss = nn.functional.cross_entropy(classifier(*classifier.bags([rows[i] for i in batch.tolist()])),
                                               targets[batch], weight=balance)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return classifier.eval()


def classifier_key(texts: Sequence[str], labels: Sequence[str], label_names: Sequence[str]) -> str:
    """The cache key: a hash of the training sentences with their labels, the label set and the classifier version."""
    digest = hashlib.sha256(json.dumps([CLASSIFIER_VERSION, list(label_names)]).encode())
    for text, label in zip(texts, labels, strict=True):
        digest.update(f"{label}\t{text}\n".encode())
    return digest.hexdigest()[:32]


def cached_classifier(texts: Sequence[str], labels: Sequence[str], *, label_names: Sequence[str],
                      cache_dir: str | os.PathLike | None = None) -> tuple[LabelClassifier, bool]:
    """The classifier of these training sentences and labels: loaded from the cache, or trained and cached
    (written to a temporary folder, then renamed); returns it and whether it came from the cache."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = cache_dir / classifier_key(texts, labels, label_names)
    if (folder / "classifier.json").is_file() and (folder / "classifier.safetensors").is_file():
        try:
            return LabelClassifier.load(folder), True
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as error:
            reason = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
            raise ValueError(f"the cached classifier {folder} is damaged ({reason[:200]}); delete that folder and it "
                             "is trained again.") from None
    classifier = train_classifier(texts, labels, label_names=label_names)
    cache_dir.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache_dir))
    classifier.save(temporary)
    try:
        os.replace(temporary, folder)
    except OSError:  # another process cached it first
        shutil.rmtree(temporary, ignore_errors=True)
    return classifier, False


@torch.no_grad()
def control_accuracy(model, tokenizer, classifier: LabelClassifier, attribute: str, *, num_samples: int = 100,
                     seed: int = 0, batch_size: int = 500,
                     sample_latents: Callable[[str, int, torch.Generator], torch.Tensor] | None = None) -> dict:
    """For each label of `attribute`: `num_samples` greedy sentences from latents with the label fixed, and the
    share the classifier reads as that label. A label whose latent value the model cannot set (the majority label of
    no component) scores 0. `sample_latents(label, n, generator)` replaces the latent draws (e.g. a generator that
    ignores the label, for the chance level).

    Returns {"per_label": {label: accuracy}, "macro": their mean, "unreachable": [labels]}.
    """
    spec = model.config.attributes[attribute]
    generator = torch.Generator(device=model.device).manual_seed(seed)
    sample_latents = sample_latents or (lambda label, n, generator: model.sample_prior(
        n, attributes={attribute: label}, generator=generator))
    per_label, unreachable = {}, []
    for label in spec["labels"]:
        if not spec["values"][label]:
            per_label[label] = 0.0
            unreachable.append(label)
            continue
        latents = sample_latents(label, num_samples, generator)
        texts = [text for part in latents.split(batch_size)
                 for text in tokenizer.batch_decode(model.generate(latent=part), skip_special_tokens=True)]
        per_label[label] = sum(p == label for p in classifier.predict(texts)) / num_samples
    return {"per_label": per_label, "macro": sum(per_label.values()) / len(per_label), "unreachable": unreachable}


__all__ = ["LabelClassifier", "cached_classifier", "classifier_key", "control_accuracy", "default_cache_dir",
           "demvae_cache", "train_classifier"]
