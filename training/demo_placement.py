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

from modeling_demvae import DEMVAEPosterior, metrics
from modeling_demvae.metrics.control import demvae_cache
from modeling_demvae.metrics.sentences import as_id_lists

PLACEMENT_VERSION = 1  # part of the file name: a change of what is stored makes new placements


@dataclass
class Placement:
    """Token id lists of real sentences (`<s> ... </s>`) and their posterior q(z, c|x)."""

    sentences: list[list[int]]
    posterior: DEMVAEPosterior

    def save(self, path: Path) -> None:
        """Written to a temporary file beside `path`, then renamed: an interrupted save leaves no half file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=path.parent)
        os.close(handle)
        try:
            torch.save({"sentences": self.sentences, "posterior": dict(self.posterior.items())}, temporary)
            os.replace(temporary, path)
        finally:
            Path(temporary).unlink(missing_ok=True)

    @classmethod
    def load(cls, path: Path) -> "Placement":
        saved = torch.load(path, weights_only=True)
        return cls(saved["sentences"], DEMVAEPosterior(**saved["posterior"]))


def weights_hash(model) -> str:
    """sha256 of the model's parameters and buffers, by name: the same weights give the same hash, wherever loaded."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def placement_path(model, sentences: list[list[int]], cache_dir: Path | None = None) -> Path:
    """CACHE/demo/<weights hash>/<sentences hash>-v<version>.pt."""
    sentences_hash = hashlib.sha256(json.dumps(sentences).encode()).hexdigest()[:16]
    folder = (cache_dir or demvae_cache() / "demo") / weights_hash(model)[:16]
    return folder / f"{sentences_hash}-v{PLACEMENT_VERSION}.pt"


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
