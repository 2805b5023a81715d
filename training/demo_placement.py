"""Real sentences placed in a model's latent space, once per model: the demo's picture and closest sentences read
them. Encoding a few thousand sentences takes a while on a CPU, so the placement is kept in the user's cache folder
($DEMVAE_CACHE/demo, else ~/.cache/demvae/demo), under the hash of the model's weights and of the sentences; the
model's folder is never written to. A Space ships its placement beside its app instead (`demo_space.py`)."""

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from modeling_demvae import DEMVAEPosterior, metrics
from modeling_demvae.metrics.control import demvae_cache
from modeling_demvae.metrics.sentences import as_id_lists

PLACEMENT_VERSION = 1  # part of the file name: a change of what is stored makes new placements
PLACEMENT_SUFFIX = ".safetensors"


@dataclass
class Placement:
    """Token id lists of real sentences (`<s> ... </s>`) and their posterior q(z, c|x)."""

    sentences: list[list[int]]
    posterior: DEMVAEPosterior

    def save(self, path: Path) -> None:
        """safetensors (the sentences as JSON in its metadata: never a pickle), written to a temporary file beside
        `path` and renamed: an interrupted save leaves no half file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=PLACEMENT_SUFFIX, dir=path.parent)
        os.close(handle)
        try:
            tensors = {name: value.contiguous() for name, value in self.posterior.items()}
            save_file(tensors, temporary, metadata={"sentences": json.dumps(self.sentences)})
            os.replace(temporary, path)
        finally:
            Path(temporary).unlink(missing_ok=True)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Placement":
        with safe_open(path, "pt") as saved:
            sentences = json.loads(saved.metadata()["sentences"])
            posterior = DEMVAEPosterior(**{name: saved.get_tensor(name) for name in saved.keys()})
        return cls(sentences, posterior)


def weights_hash(model) -> str:
    """sha256 of the model's parameters and buffers, by name: the same weights give the same hash, wherever loaded."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def placement_path(model, sentences: list[list[int]], cache_dir: Path | None = None) -> Path:
    """CACHE/demo/<weights hash>/<sentences hash>-v<version>.safetensors."""
    sentences_hash = hashlib.sha256(json.dumps(sentences).encode()).hexdigest()[:16]
    folder = (cache_dir or demvae_cache() / "demo") / weights_hash(model)[:16]
    return folder / f"{sentences_hash}-v{PLACEMENT_VERSION}{PLACEMENT_SUFFIX}"


def placed_sentences(model, sentences: list[list[int]], *, cache_dir: Path | None = None,
                     progress: bool = True) -> Placement:
    """The sentences' posterior under `model`, read from the cache, else encoded (with a progress bar) and cached."""
    sentences = as_id_lists(sentences)
    path = placement_path(model, sentences, cache_dir)
    if path.is_file():
        return Placement.load(path)
    with torch.no_grad():
        posterior = metrics.encode_sentences(model, sentences, progress=progress)
    placement = Placement(sentences, DEMVAEPosterior(**{k: v.detach().cpu() for k, v in posterior.items()}))
    placement.save(path)
    return placement


__all__ = ["Placement", "placed_sentences", "placement_path", "weights_hash"]
