"""Sharing on the Hugging Face Hub: a push that carries everything `from_pretrained` needs (safetensors weights,
config, generation config, tokenizer, the modeling source for `trust_remote_code=True`) and the model card
(`model_card.py`).

A push stages its files in a temporary folder and sends them in one commit, so a failed push changes nothing on
disk and leaves no half-written revision on the Hub.
"""

import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled
from huggingface_hub.utils import validate_repo_id

from .loading import load_model_and_tokenizer, load_tokenizer, quiet_progress_bars
from .model_card import LATENT_IMAGE_NAME, folder_card_options, render_model_card
from .model_folder import EVALUATION_FILE, one_line

try:  # the Hub client's HTTP library: httpx2 under huggingface_hub 2.x, httpx under 1.x
    import httpx2 as hub_http
except ImportError:
    import httpx as hub_http


class HubPushError(RuntimeError):
    """A push the Hub refused or could not receive; the message is one line saying what to do."""


def checked_repo_id(repo_id: str) -> str:
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(
            f"{repo_id!r} is not a valid Hub repository id ({error}); expected 'name' or 'namespace/name' with "
            "letters, digits, '-', '_' or '.', no '--' or '..', at most 96 characters."
        ) from None
    return repo_id


@contextmanager
def _hub_errors(repo_id: str):
    """Turn the Hub client's errors into a HubPushError that says what to do, in one line."""
    try:
        yield
    except HfHubHTTPError as error:
        status = getattr(error.response, "status_code", None)
        if status in (401, 403):
            raise HubPushError(
                f"the Hub refused to let this token write to {repo_id!r} (HTTP {status}): log in with "
                "`hf auth login` or set HF_TOKEN to a token with write access to that namespace."
            ) from error
        raise HubPushError(f"the Hub refused the push to {repo_id!r}: {one_line(error)}") from error
    except OfflineModeIsEnabled as error:
        raise HubPushError(
            f"cannot push to {repo_id!r} while HF_HUB_OFFLINE=1 is set; unset it and run the push again."
        ) from error
    except (OSError, hub_http.TransportError) as error:
        raise HubPushError(
            f"could not reach the Hugging Face Hub to push {repo_id!r} ({type(error).__name__}: {one_line(error)});"
            " check the network connection and run the push again."
        ) from error


def push_model(
    model,
    repo_id: str,
    *,
    tokenizer=None,
    evaluations: Iterable[Mapping] = (),
    latent_image: str | os.PathLike | None = None,
    private: bool | None = None,
    revision: str | None = None,
    token: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    commit_description: str | None = None,
    **card_options,
):
    """Push `model` with its tokenizer, modeling source and a freshly rendered card, in one commit.

    The tokenizer defaults to the one saved beside the model it was loaded from. `card_options` go to
    `render_model_card` (datasets=, base_model=, license=, tags=, training_settings=, ...). Raises ValueError for a
    malformed repo id or a missing tokenizer, FileNotFoundError for a missing picture, HubPushError when the Hub
    cannot be reached or refuses; nothing on disk is changed either way. Returns the Hub's `CommitInfo`.
    """
    checked_repo_id(repo_id)
    if latent_image is not None and not Path(latent_image).is_file():
        raise FileNotFoundError(f"latent-space picture not found: {latent_image} (write one with `demvae inspect`).")
    token = token or get_token()
    if not token:
        raise HubPushError(
            "not logged in to the Hugging Face Hub: run `hf auth login` or set HF_TOKEN to a token with write access."
        )
    tokenizer = tokenizer or _saved_tokenizer(model)
    api = HfApi()
    with _hub_errors(repo_id):
        repo_id = api.create_repo(repo_id, token=token, private=private, exist_ok=True).repo_id  # namespace resolved
    with tempfile.TemporaryDirectory(prefix="demvae-push-") as staging:
        staging = Path(staging)
        with quiet_progress_bars():
            model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if latent_image is not None:
            shutil.copyfile(latent_image, staging / LATENT_IMAGE_NAME)
        card = render_model_card(model, tokenizer, repo_id=repo_id, evaluations=evaluations,
                                 latent_image=LATENT_IMAGE_NAME if latent_image is not None else None,
                                 **card_options)
        card.save(staging / "README.md")
        operations = [
            CommitOperationAdd(path_in_repo=path.relative_to(staging).as_posix(), path_or_fileobj=str(path))
            for path in sorted(staging.rglob("*")) if path.is_file()
        ]
        with _hub_errors(repo_id):
            if revision:
                api.create_branch(repo_id, branch=revision, token=token, exist_ok=True)
            return api.create_commit(
                repo_id, operations=operations, token=token, revision=revision, create_pr=create_pr,
                commit_message=commit_message or f"Upload {model.config.paper_name} with demvae",
                commit_description=commit_description,
            )


def push_space(folder: str | os.PathLike, space_id: str, *, private: bool | None = None, token: str | None = None,
               commit_message: str | None = None):
    """Push a folder written by `demvae demo --space-dir` as a Gradio Space, in one commit (created when missing).
    Raises ValueError for a malformed id, HubPushError when the Hub cannot be reached or refuses. Returns the
    Hub's `CommitInfo`."""
    checked_repo_id(space_id)
    folder = Path(folder)
    token = token or get_token()
    if not token:
        raise HubPushError(
            "not logged in to the Hugging Face Hub: run `hf auth login` or set HF_TOKEN to a token with write access."
        )
    api = HfApi()
    with _hub_errors(space_id):
        space_id = api.create_repo(space_id, token=token, private=private, repo_type="space", space_sdk="gradio",
                                   exist_ok=True).repo_id
        operations = [CommitOperationAdd(path_in_repo=path.relative_to(folder).as_posix(), path_or_fileobj=str(path))
                      for path in sorted(folder.rglob("*")) if path.is_file()]
        return api.create_commit(space_id, operations=operations, token=token, repo_type="space",
                                 commit_message=commit_message or "Upload the DEM-VAE component explorer with demvae")


def _saved_tokenizer(model):
    """The tokenizer saved beside the model's source folder or Hub repo, else a ValueError saying what to pass."""
    hint = "pass tokenizer=... (the one it was trained with)."
    if not model.name_or_path:
        raise ValueError(f"no tokenizer to push with this model (it was not loaded from a folder or the Hub); {hint}")
    try:
        return load_tokenizer(model.name_or_path)
    except ValueError as error:
        raise ValueError(f"{error.args[0].removesuffix('.')}; {hint}") from None


def push_folder(folder: str | os.PathLike, repo_id: str, **options):
    """Push a folder written by `save_pretrained` (e.g. `demvae train --output-dir`); the folder is only read.

    The model and tokenizer are loaded from it and saved again for the push, so the Hub gets the current
    config format and modeling source, the samples in the card come from these weights, and extra files there
    (checkpoints, logs) stay local. The card's training settings come from the folder's training summary, its
    numbers from the folder's evaluation.json (`demvae evaluate MODEL`), its picture from `demvae inspect`'s default
    output there, and the base model of a fine-tuned one from the Hub id `demvae train --init-from` recorded,
    unless `training_settings=`, `evaluations=`, `latent_image=` or `base_model=` are given. `options` are those
    of `push_model`.
    """
    checked_repo_id(repo_id)
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"no saved model in {folder}: expected the save_pretrained layout (config.json, ...).")
    given = options.get("evaluations") is not None
    options = folder_card_options(folder, options)
    if options["evaluations"] and not given:
        print(f"the card carries the numbers of {folder / EVALUATION_FILE} (--eval-json gives others)")
    model, tokenizer = load_model_and_tokenizer(folder)
    return push_model(model, repo_id, tokenizer=tokenizer, **options)


__all__ = ["HubPushError", "checked_repo_id", "push_folder", "push_model", "push_space"]
