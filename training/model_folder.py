"""A command's MODEL argument, before anything is loaded: a local model folder (checked: it exists, holds a config and
readable weights) or a Hub id (only a name of the form namespace/name that is no local path), and what the folder's
run recorded.

Light on purpose: a mistyped folder is named in one line at once, before torch and transformers load, and never
sent to the Hub to be retried over the network.
"""

import difflib
import json
import re
from pathlib import Path

from safetensors import SafetensorError, safe_open

from .model_source import package_dir

RUN_SUMMARY = "training_summary.json"  # written beside the exported model by `demvae train`
EVALUATION_FILE = "evaluation.json"  # `demvae evaluate MODEL` writes it beside the model; the card carries it
LEARNING_CURVE = "learning_curve.jsonl"  # in the run's output folder, appended as the run validates
CHECKPOINTS_FOLDER = "checkpoints"  # a run's checkpoints, OUTPUT/checkpoints/step-N, renamed and deleted by it
CHECKPOINT_PATTERN = re.compile(r"^step-(\d+)$")
PROGRESS_SUFFIX = ".partial"  # an evaluation's finished parts: OUTPUT.partial and OUTPUT.partial.NAME.pt
PROGRESS_FILE = re.compile(rf"{re.escape(PROGRESS_SUFFIX)}(\.\w+\.pt)?$")
INSPECTION_FILES = ("latent_space.png", "components.md")  # what `demvae inspect` writes
# the model card's first line after its metadata: a README.md without it is someone's own, never written over
CARD_SIGNATURE = "<!-- Model card written by demvae"
JSON_FILES = ("config.json", "generation_config.json", "tokenizer_config.json", "tokenizer.json")
# a saved model's own files: what save_pretrained, the tokenizer and `demvae train` write, and the modeling source
MODEL_FILE_PATTERNS = ("config.json", "generation_config.json", "tokenizer*.json", "special_tokens_map.json",
                       "added_tokens.json", "*.safetensors", "*.safetensors.index.json", RUN_SUMMARY,
                       *(path.name for path in package_dir().glob("*.py")))
# what a folder holds while it is written (renamed into place when complete) or removed (renamed first)
TEMPORARY_PREFIX, TRASH_PREFIX = ".tmp-", ".trash-"
SPECIAL_IDS = ("pad_token_id", "bos_token_id", "eos_token_id", "unk_token_id")  # config fields the tokenizer fixes
DIALOG_MODEL_TYPE = "demvae_dialog"  # config.json's model_type of a dialog model (DEMVAEForDialogGeneration)
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")  # namespace/name, as the Hub spells repository ids


def model_files(folder) -> list[Path]:
    """The files of the model saved in `folder` (none when it holds no config.json or weights): the ones that
    commands writing beside a model must never replace."""
    folder = Path(folder)
    if not (folder / "config.json").is_file() and not (folder / "model.safetensors").is_file():
        return []
    return sorted({path for pattern in MODEL_FILE_PATTERNS for path in folder.glob(pattern) if path.is_file()})


def checkpoints_folder_of(path) -> Path | None:
    """The run's checkpoints/ folder that `path` is in or is (one beside a model, or holding step-N folders), else
    None: the trainer renames and deletes what is there, so nothing else may write into it."""
    path = Path(path).absolute()
    for folder in (path, *path.parents):
        if folder.name == CHECKPOINTS_FOLDER and folder.is_dir() and (model_files(folder.parent) or any(
                CHECKPOINT_PATTERN.match(child.name.removeprefix(TEMPORARY_PREFIX)) for child in folder.iterdir())):
            return folder
    return None


def written_by_demvae(path, *, replaces: tuple[str, ...] = ()) -> tuple[str, str] | None:
    """What `path` is when a demvae command wrote it and writing over it would damage something, as (what it is, what
    writing it would damage): a model's file, anything in a run's checkpoints, an evaluation's progress, a model
    card, inspect's picture or report, a run's summary or learning curve. None for any other path, and for the
    files named in `replaces`, which the asking command writes itself."""
    path = Path(path)
    if (checkpoints := checkpoints_folder_of(path)) is not None:
        return f"in the checkpoints of the run in {checkpoints.parent}", "that run's checkpoint"
    if path.name in replaces or not path.is_file():
        return None
    if path.resolve() in {file.resolve() for file in model_files(path.parent)}:
        return f"a file of the model saved in {path.parent}", "the model"
    if PROGRESS_FILE.search(path.name):
        return "an evaluation's progress file", "that evaluation's finished parts (--resume)"
    if path.name in (RUN_SUMMARY, LEARNING_CURVE):
        return f"the {'training summary' if path.name == RUN_SUMMARY else 'learning curve'} of the run in " \
               f"{path.parent}", "that run's record"
    if path.name in INSPECTION_FILES:
        return "a picture or report of `demvae inspect`", "it"
    if path.name == "README.md" and CARD_SIGNATURE in path.read_text(encoding="utf-8", errors="replace"):
        return "a model card written by demvae", "the card"
    return None


def is_hub_id(source: str) -> bool:
    """Whether MODEL names a Hub repository: namespace/name, and no such local path."""
    return HUB_ID.fullmatch(source) is not None and not Path(source).exists()


def _missing_folder(source: str) -> FileNotFoundError:
    """No such folder, with the closest model folder beside it when there is one (a typo)."""
    folder = Path(source).expanduser()
    parent = folder.parent if folder.parent.is_dir() else None
    nearby = [path.name for path in parent.iterdir() if (path / "config.json").is_file()] if parent else []
    close = difflib.get_close_matches(folder.name, nearby, n=1)
    hint = f"; did you mean {folder.parent / close[0]}?" if close else \
        " (a model on the Hub is named namespace/name)."
    return FileNotFoundError(f"no model at {source}: there is no such folder{hint}")


def checked_model_folder(source: str) -> Path | None:
    """The local model folder MODEL names, checked (config.json and valid JSON files, a readable weights header), or
    None for a Hub id; FileNotFoundError or ValueError in one line otherwise."""
    if is_hub_id(source):
        return None
    folder = Path(source).expanduser()
    if not folder.exists():
        raise _missing_folder(source)
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise FileNotFoundError(f"no model found at {source}: expected a folder with config.json and model weights "
                                "(the output of `demvae train` or save_pretrained).")
    for name in JSON_FILES:
        if not (folder / name).is_file():
            continue
        try:
            content = json.loads((folder / name).read_bytes())
        except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
            raise ValueError(f"cannot load the model at {source}: {name} is not valid JSON ({error}).") from None
        if not isinstance(content, dict):
            raise ValueError(f"cannot load the model at {source}: {name} holds a JSON {type(content).__name__}, "
                             "not an object of settings.")
    if (folder / "model.safetensors").is_file():
        try:  # the header lists every tensor's bytes: a truncated or foreign file fails here (read as NumPy: no torch)
            with safe_open(folder / "model.safetensors", "np"):
                pass
        except (SafetensorError, OSError) as error:
            raise ValueError(f"cannot load the model at {source}: model.safetensors is damaged or truncated "
                             f"({one_line(error)}).") from None
    return folder


def saved_config(folder: Path | None) -> dict:
    """The settings in a checked model folder's config.json (empty for a Hub id, which is not read before loading)."""
    return {} if folder is None else json.loads((folder / "config.json").read_bytes())


def is_dialog_model(folder: Path | None) -> bool:
    """Whether the checked model folder holds a dialog model (False for a Hub id, which is not read before
    loading)."""
    return saved_config(folder).get("model_type") == DIALOG_MODEL_TYPE


def one_line(error: BaseException, *, whole: bool = False) -> str:
    """The first non-empty line of an error message (libraries often add advice over several lines); with `whole`,
    every line joined (a config field's type error, whose first line names only the field)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return " ".join(lines) if whole else lines[0] if lines else type(error).__name__


def training_summary(folder: Path) -> dict:
    """The run summary `demvae train` wrote beside the model, {} when there is none."""
    path = folder / RUN_SUMMARY
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def recorded_corpus(folder: Path | None) -> dict:
    """Where the text of the run that wrote `folder` came from (the training summary's sources: `dataset` and
    `text_column`, or `train_file`, `valid_file` and `test_file`); empty when nothing was recorded."""
    try:
        summary = {} if folder is None else training_summary(folder)
    except ValueError:  # a damaged summary: the corpus is asked for instead
        return {}
    sources = summary.get("data", {}).get("sources") if isinstance(summary, dict) else None
    return {key: value for key, value in sources.items() if value is not None} if isinstance(sources, dict) else {}


def described_corpus(args, folder: Path | None) -> str:
    """The corpus a command reads, in words. With neither --dataset nor --test-file, the one the model was trained
    on, from its training summary (set into `args`); without a record, an error naming both options."""
    test_file = getattr(args, "test_file", None)
    if args.dataset or test_file:
        return f"the {args.dataset} corpus" if args.dataset else test_file
    sources, recorded = recorded_corpus(folder), f"the model's own, from its {RUN_SUMMARY}"
    if "dataset" in sources:
        args.dataset = sources["dataset"]
        if "text_column" in sources and hasattr(args, "text_column"):
            args.text_column = sources["text_column"]
        return f"the {args.dataset} corpus ({recorded})"
    test_file = sources.get("test_file") or sources.get("valid_file")
    if test_file and hasattr(args, "test_file"):
        args.test_file = test_file
        if hasattr(args, "train_file") and not args.train_file:
            args.train_file = sources["train_file"]
        return f"{test_file} ({recorded})"
    raise ValueError(f"no sentences to read: give --dataset{' or --test-file' * hasattr(args, 'test_file')}; the "
                     f"model at {args.model} records no corpus it could be read from.")


__all__ = ["CARD_SIGNATURE", "CHECKPOINT_PATTERN", "CHECKPOINTS_FOLDER", "DIALOG_MODEL_TYPE", "EVALUATION_FILE",
           "INSPECTION_FILES", "LEARNING_CURVE", "PROGRESS_SUFFIX", "RUN_SUMMARY", "SPECIAL_IDS", "TEMPORARY_PREFIX",
           "TRASH_PREFIX", "checked_model_folder", "checkpoints_folder_of", "described_corpus", "is_dialog_model",
           "is_hub_id", "model_files", "one_line", "recorded_corpus", "saved_config", "training_summary",
           "written_by_demvae"]
