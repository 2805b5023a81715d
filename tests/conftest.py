import atexit
import json
import os
import shutil
import tempfile
import textwrap
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# prepared corpora of the tests (and of the commands they run) go to a folder of their own, not the user's cache
if "DEMVAE_CACHE_DIR" not in os.environ:
    os.environ["DEMVAE_CACHE_DIR"] = tempfile.mkdtemp(prefix="demvae-test-cache-")
    atexit.register(shutil.rmtree, os.environ["DEMVAE_CACHE_DIR"], True)

from demvae.arguments import TrainingArguments  # noqa: E402
from demvae.trainer import DEMVAETrainer  # noqa: E402

from modeling_demvae import DEMVAEConfig, DEMVAEForGeneration, build_tokenizer, data  # noqa: E402
from modeling_demvae.data import default_data_dir, tokenize_corpus  # noqa: E402
from modeling_demvae.synthetic import synthetic_corpus  # noqa: E402

VOCAB_SIZE = 40


def tiny_config(**overrides) -> DEMVAEConfig:
    """A model small enough to run every check in milliseconds."""
    settings = dict(
        vocab_size=VOCAB_SIZE,
        embed_size=12,
        encoder_hidden_size=10,
        decoder_hidden_size=12,
        num_groups=3,
        num_components=4,
        latent_size=2,
        max_sentence_length=12,
    )
    settings.update(overrides)
    return DEMVAEConfig(**settings)


def tiny_model(seed: int = 0, **overrides) -> DEMVAEForGeneration:
    torch.manual_seed(seed)
    return DEMVAEForGeneration(tiny_config(**overrides))


def tiny_batch():
    """Three sentences of different lengths, right-padded with 0; each starts with <s> (1) and ends with </s> (2)."""
    input_ids = torch.tensor(
        [[1, 5, 6, 7, 8, 2], [1, 9, 10, 2, 0, 0], [1, 11, 2, 0, 0, 0]],
    )
    return input_ids, input_ids.ne(0).long()


@pytest.fixture
def data_dir() -> Path:
    """The shared corpora (DEMVAE_DATA_DIR, default ../shared/data beside the checkout); skip when absent."""
    path = default_data_dir()
    if not (path / "ptb").is_dir():
        pytest.skip(f"shared corpora not found at {path} (set DEMVAE_DATA_DIR to the folder holding ptb/)")
    return path


# A meta-path finder, as the first lines of a script run in a subprocess: that process cannot import our
# packages, as on a machine where only a saved model folder and transformers are at hand.
BLOCK_OUR_PACKAGE = textwrap.dedent(
    """
    import sys
    class BlockOurPackage:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("modeling_demvae", "demvae"):
                raise ImportError(f"{name} is blocked: this process must not see the installed package")
    sys.meta_path.insert(0, BlockOurPackage())
    """
)


WORDS = "the cat dog sat ran on a mat rug big small red".split()


def write_dialog_corpus(folder, num_dialogues=6, seed=0):
    """A DailyDialog-shaped corpus (train/validation/test with act and emotion labels) of random short utterances."""
    generator = torch.Generator().manual_seed(seed)
    for split in ("train", "validation", "test"):
        (folder / split).mkdir(parents=True)
        dialogues, acts, emotions = [], [], []
        for _ in range(num_dialogues):
            turns = []
            for _ in range(3):
                length = int(torch.randint(2, 6, (1,), generator=generator))
                turns.append(" ".join(WORDS[i] for i in torch.randint(len(WORDS), (length,), generator=generator)))
            dialogues.append(" __eou__ ".join(turns) + " __eou__")
            acts.append(" ".join(str(int(a)) for a in torch.randint(1, 5, (3,), generator=generator)))
            emotions.append(" ".join(str(int(e)) for e in torch.randint(0, 7, (3,), generator=generator)))
        for name, lines in (("dialogues", dialogues), ("dialogues_act", acts), ("dialogues_emotion", emotions)):
            (folder / split / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return folder


def save_tiny_model(folder, corpus_folder, **overrides):
    """A tiny untrained model with a tokenizer built from the corpus, saved as `demvae train` does."""
    corpus = data.load_corpus(str(corpus_folder))
    tokenizer = build_tokenizer(corpus["train"]["text"])
    torch.manual_seed(0)
    model = DEMVAEForGeneration(tiny_config(vocab_size=len(tokenizer), **overrides))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# ----- training runs -----

REPO = Path(__file__).resolve().parents[1]
# float32 whatever the CPU: the tests compare exact arithmetic (auto is bf16 where the CPU has bf16 units; that path
# has its own tests in test_bf16.py and test_precision.py)
TINY_RUN = ["--batch-size", "8", "--learning-rate", "0.01", "--num-samples", "0", "--report-to", "none",
            "--num-threads", "1", "--kl-annealing-midpoint", "20", "--kl-annealing-slope", "0.1",
            "--mixed-precision", "no"]
TINY = ["--embed-size", "16", "--encoder-hidden-size", "16", "--decoder-hidden-size", "16", "--num-groups", "2",
        "--num-components", "3", "--latent-size", "2", "--max-sentence-length", "16", *TINY_RUN]


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Accelerate keeps one mixed precision per process, as `demvae train` runs one training per process: the tests
    run many in this one, float32 ones and (where the CPU has bf16 units) bf16 ones, so each starts and ends with
    none set."""
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory):
    """$DEMVAE_CACHE for the module: the demo's placements land here, never in the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("demvae_cache")
        patch.setenv("DEMVAE_CACHE", str(folder))
        yield folder


CHECKPOINT_FILES = {"model.safetensors", "optimizer.pt", "random_states_0.safetensors", "trainer_state.json"}


def error_lines(stderr: str) -> list[str]:
    """What a command said on stderr but its progress: no progress bars, no status line (it ends with "...")."""
    progress = ("Tokenizing", "Training", "Reading the corpus", "Building the vocabulary", "Writing the", "Reusing the")
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith(progress)
            and not line.endswith(" ...")]


def subprocess_env() -> dict:
    return dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
                PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def tiny_trainer(tmp_path, model_settings=None, **overrides):
    corpus = synthetic_corpus(num_train=64, num_valid=16, num_test=0, seed=5)
    tokenizer = build_tokenizer(corpus["train"]["text"])
    data = tokenize_corpus(corpus, tokenizer, max_length=16)
    torch.manual_seed(0)
    model = DEMVAEForGeneration(DEMVAEConfig(vocab_size=len(tokenizer), embed_size=16, encoder_hidden_size=16,
                                             decoder_hidden_size=16, num_groups=2, num_components=3,
                                             max_sentence_length=16, **(model_settings or {})))
    args = TrainingArguments(**{"output_dir": str(tmp_path), "batch_size": 8, "report_to": "none",
                                "mixed_precision": "no", **overrides})
    return DEMVAETrainer(model, tokenizer, data["train"], data["validation"], args), model


# ----- attributes -----


@pytest.fixture(scope="module")
def labelled_corpus(tmp_path_factory) -> str:
    """A .jsonl corpus with the synthetic corpus's known "mode" labels."""
    split = synthetic_corpus(num_train=240, num_valid=0, num_test=0, seed=2)["train"]
    path = tmp_path_factory.mktemp("labelled") / "train.jsonl"
    path.write_text("".join(json.dumps({"text": t, "mode": m}) + "\n" for t, m in zip(split["text"], split["mode"])))
    return str(path)


def sharp_prior(model):
    """Component means far apart and variances ~0: a sampled z_g is its component's mean, which names it."""
    with torch.no_grad():
        model.prior.means.copy_(torch.arange(model.prior.means.numel(), dtype=torch.float).view_as(model.prior.means))
        model.prior.log_variances.fill_(-40.0)
    return model


def components_of(model, latent: torch.Tensor) -> torch.Tensor:
    """(n, G) component index of each group's z (the nearest mean)."""
    z = latent.view(latent.shape[0], model.config.num_groups, 1, model.config.latent_size)
    return (z - model.prior.means.unsqueeze(0)).norm(dim=-1).argmin(-1)
