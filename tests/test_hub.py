"""Sharing on the Hub: the model card, the push, and what a failed push leaves behind.

There is no network here: every test that pushes replaces the Hub client's network calls at `HfApi` (create_repo,
create_branch, create_commit) with `FakeHub`, which records what would have been sent. Loading "from the Hub" reads
those recorded files from a local Hub cache laid out as `huggingface_hub` lays out downloads, with HF_HUB_OFFLINE=1.
"""

import ast
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import BLOCK_OUR_PACKAGE, TINY, error_lines, tiny_config
from demvae.cli import main as demvae
from demvae.evaluate import evaluation_output
from demvae.hub import hub_http, push_folder, push_model
from demvae.model_card import CARD_MARKER, render_model_card, write_model_card
from huggingface_hub import HfApi, ModelCard, constants
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError
from huggingface_hub.hf_api import CommitInfo, RepoUrl
from sklearn.metrics import homogeneity_score
from transformers import AutoTokenizer

from modeling_demvae import DEMVAEForGeneration, build_tokenizer
from modeling_demvae.metrics import homogeneity_chance

# three topics, two sentences each: the labels the homogeneity of the fixture's components is measured against
SENTENCES = [
    "the cat sat on the mat", "the dog sat on the rug",
    "a ship sailed over the sea", "a fish swam in the sea",
    "stocks fell sharply today", "prices rose again today",
]
TOPICS = [0, 0, 1, 1, 2, 2]
REPO_ID = "tester/demvae-tiny"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
PUSHED_FILES = {
    "README.md", "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
    "tokenizer_config.json", "modeling_demvae.py", "configuration_demvae.py", "priors.py", "cache.py", "gru.py",
    "tokenization_demvae.py", "networks.py", "attributes.py", "generation_demvae.py",
}
# what a model alone saves: no tokenizer, and so no tokenizer code
MODEL_FILES = PUSHED_FILES - {"README.md", "tokenizer.json", "tokenizer_config.json", "tokenization_demvae.py"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and far faster than on two when other jobs share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread):
    """A tiny DGM-VAE (one group of 3 components) trained for a few dozen steps, saved with its tokenizer."""
    tokenizer = build_tokenizer(SENTENCES)
    torch.manual_seed(0)
    model = DEMVAEForGeneration(tiny_config(vocab_size=len(tokenizer), num_groups=1, num_components=3,
                                            kl_annealing=False, dropout=0.0))
    batch = tokenizer(SENTENCES, return_tensors="pt", padding=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        optimizer.zero_grad()
        model(batch["input_ids"], batch["attention_mask"]).loss.backward()
        optimizer.step()
    model.eval()
    folder = tmp_path_factory.mktemp("trained")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    summary = {"step": 40, "validation": {"elbo": -9.5}, "training_arguments": {"learning_rate": 0.01,
               "max_steps": 40, "batch_size": 6, "output_dir": str(folder)}}  # as `demvae train` writes it
    (folder / "training_summary.json").write_text(json.dumps(summary))
    return folder, model, tokenizer


def measured_evaluation(folder, model, tokenizer) -> dict:
    """An evaluation JSON of this model, measured here: ELBO and NLL by the model, homogeneity by scikit-learn."""
    batch = tokenizer(SENTENCES, return_tensors="pt", padding=True)
    with torch.no_grad():
        torch.manual_seed(0)
        out = model(batch["input_ids"], batch["attention_mask"])
    components = out.component_probs.argmax(-1)[:, 0].tolist()
    homogeneity, chance = homogeneity_score(TOPICS, components), homogeneity_chance(components, TOPICS)
    return {
        "elbo": out.elbo.item(), "nll": out.nll.item(), "dispersion": out.dispersion.item(),
        "homogeneity": {"topic": homogeneity}, "homogeneity_chance": {"topic": chance},
        "homogeneity_adjusted": {"topic": homogeneity - chance},
        "active_components": [2.5], "mi": [out.mi.item()],
        "settings": {"dataset": "six-sentences", "seed": 0, "model": str(folder)},
    }


class FakeHub:
    """Stands in for the Hub's HTTP API at `HfApi` (no network here): records repos, branches and committed files
    (a Space's in `space_files`)."""

    def __init__(self, monkeypatch, *, fail_with: BaseException | None = None, fail_at: str = "create_commit"):
        self.repos, self.branches, self.commits, self.files, self.space_files = [], [], [], {}, {}
        self.fail_with, self.fail_at = fail_with, fail_at
        for name in ("create_repo", "create_branch", "create_commit"):
            monkeypatch.setattr(HfApi, name, getattr(self, name))
        monkeypatch.setattr(ModelCard, "load", self.load_card)  # transformers' push_to_hub reads the current card

    def load_card(self, repo_id, **kwargs):
        if "README.md" not in self.files:
            raise EntryNotFoundError(f"{repo_id} has no README.md yet")
        return ModelCard(self.files["README.md"].decode())

    def _maybe_fail(self, name):
        if self.fail_at == name and self.fail_with is not None:
            raise self.fail_with

    def create_repo(self, repo_id, *, token=None, private=None, exist_ok=False, **kwargs):
        self._maybe_fail("create_repo")
        assert token and exist_ok
        repo_id = repo_id if "/" in repo_id else f"tester/{repo_id}"  # the Hub resolves the namespace
        space = {"repo_type": "space", "space_sdk": kwargs["space_sdk"]} if kwargs.get("repo_type") == "space" else {}
        self.repos.append({"repo_id": repo_id, "private": private, **space})
        return RepoUrl(f"https://huggingface.co/{'spaces/' * bool(space)}{repo_id}")

    def create_branch(self, repo_id, *, branch, token=None, exist_ok=False, **kwargs):
        self._maybe_fail("create_branch")
        self.branches.append((repo_id, branch))

    def create_commit(self, repo_id, operations, *, commit_message, revision=None, token=None, **kwargs):
        self._maybe_fail("create_commit")
        space = kwargs.get("repo_type") == "space"
        for operation in operations:
            with operation.as_file() as handle:
                (self.space_files if space else self.files)[operation.path_in_repo] = handle.read()
        self.commits.append({"repo_id": repo_id, "revision": revision, "message": commit_message})
        return CommitInfo(commit_url=f"https://huggingface.co/{'spaces/' * space}{repo_id}/commit/{COMMIT}",
                          commit_message=commit_message, commit_description="", oid=COMMIT)

    def to_cache(self, cache_dir: Path, repo_id: str = REPO_ID) -> Path:
        """Lay the committed files out as a Hub download cache, so `from_pretrained(repo_id)` reads exactly them."""
        repo = cache_dir / f"models--{repo_id.replace('/', '--')}"
        snapshot = repo / "snapshots" / COMMIT
        for name, content in self.files.items():
            (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
            (snapshot / name).write_bytes(content)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(COMMIT)
        return snapshot


@pytest.fixture
def logged_in(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_test_token_not_used_for_any_request")


def folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
            digest.update(str(path.stat().st_mtime_ns).encode())
    return digest.hexdigest()


def outputs(model, tokenizer):
    batch = tokenizer(SENTENCES[:3], return_tensors="pt", padding=True)
    with torch.no_grad():
        torch.manual_seed(0)
        out = model(batch["input_ids"], batch["attention_mask"])
        torch.manual_seed(0)
        generated = model.generate(component=1, num_samples=4)
    return out.loss, out.logits, out.component_probs, generated


# ----- the card -----


def test_card_parses_back_with_the_model_s_evaluation(trained, tmp_path):
    folder, model, tokenizer = trained
    evaluation = measured_evaluation(folder, model, tokenizer)
    card = render_model_card(model, tokenizer, repo_id=REPO_ID, evaluations=[evaluation], datasets=["ptb"],
                             training_settings={"learning_rate": 0.01, "max_steps": 40})
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")

    assert loaded.data.library_name == "transformers" and loaded.data.datasets == ["ptb"]
    assert {"demvae", "dgm-vae-mi", "custom_code", "variational-autoencoder"} <= set(loaded.data.tags)
    results = {(r.metric_type, r.metric_config): r for r in loaded.data.eval_results}
    assert {r.dataset_name for r in results.values()} == {"six-sentences"}
    assert results["elbo", None].metric_value == evaluation["elbo"]
    assert results["nll", None].metric_value == evaluation["nll"]
    assert results["dispersion", None].metric_value == evaluation["dispersion"]
    assert results["homogeneity", "topic"].metric_value == evaluation["homogeneity"]["topic"]
    chance = results["homogeneity_chance", "topic"]  # the chance level beside the homogeneity, and the score above it
    assert chance.metric_name == "Homogeneity, labels shuffled (chance) (topic)"
    assert chance.metric_value == evaluation["homogeneity_chance"]["topic"]
    above = results["homogeneity_above_chance", "topic"]
    assert above.metric_name == "Homogeneity above chance (topic)"
    assert above.metric_value == pytest.approx(evaluation["homogeneity"]["topic"] - chance.metric_value)
    assert results["mutual_information", None].metric_value == evaluation["mi"][0]
    assert results["active_components", None].metric_value == 2.5
    assert len(results) == 8
    text = loaded.text
    for pretty, key in (("Homogeneity, labels shuffled (chance)", "homogeneity_chance"),
                        ("Homogeneity above chance", "homogeneity_adjusted")):
        assert f"| {pretty} (topic) | {evaluation[key]['topic']:.4g} |" in text
    assert "| `dispersion_weight` | `0.8` |" in text and "| `learning_rate` | `0.01` |" in text
    assert "## Latent space" not in text  # no picture given
    assert "`model=trained" in text and str(folder) not in text  # local paths by their last part only
    for k in range(3):
        assert f"**Component {k}**" in text


def test_card_samples_come_from_the_model(trained):
    _, model, tokenizer = trained
    text = render_model_card(model, tokenizer, repo_id=REPO_ID, samples_per_component=2, seed=3).text
    generator = torch.Generator().manual_seed(3)
    for k in range(3):
        component = torch.randint(3, (2, 1), generator=generator)
        component[:, 0] = k
        latent = model.sample_prior(2, component, generator=generator)
        for sentence in tokenizer.batch_decode(model.generate(latent=latent), skip_special_tokens=True):
            assert f"- {sentence.strip() or '(empty sentence)'}\n" in text


def test_card_without_evaluation_has_no_model_index(trained, tmp_path):
    _, model, tokenizer = trained
    card = render_model_card(model, tokenizer, repo_id=REPO_ID)
    card.save(tmp_path / "README.md")
    metadata = ModelCard.load(tmp_path / "README.md").data.to_dict()
    assert "model-index" not in metadata and "model_name" not in metadata
    assert "No evaluation results were supplied" in card.text


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.DOTALL)


def test_pushed_card_usage_snippets_run(trained, logged_in, monkeypatch, tmp_path):
    """Both snippets of the pushed card, verbatim, load the pushed files by repo id and print samples."""
    folder, _, tokenizer = trained
    hub = FakeHub(monkeypatch)
    push_folder(folder, REPO_ID)
    hub.to_cache(tmp_path / "hub")
    package, remote = python_blocks(hub.files["README.md"].decode())
    assert "trust_remote_code=True" in remote and "modeling_demvae" not in remote
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hub"), HF_HOME=str(tmp_path / "home"),
               OMP_NUM_THREADS="1")
    env.pop("HF_TOKEN", None)
    for script in (package, BLOCK_OUR_PACKAGE + remote):
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                                cwd=tmp_path, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        printed = [line for line in result.stdout.splitlines() if line.strip()]
        assert [line.split(" ", 1)[0] for line in printed] == ["0", "1", "2"]
        vocabulary = set(tokenizer.get_vocab())
        for line in printed:
            sentences = ast.literal_eval(line.split(" ", 1)[1])  # the snippet prints a list of strings
            assert len(sentences) == 3 and set(" ".join(sentences).split()) <= vocabulary


# ----- the push -----


def test_push_commits_exactly_the_model_files_and_they_load_back(trained, logged_in, monkeypatch, tmp_path):
    folder, model, tokenizer = trained
    image = tmp_path / "latent.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n not really a picture")
    hub = FakeHub(monkeypatch)
    assert demvae(["push", str(folder), "demvae-tiny", "--private", "--revision", "v1",
                   "--latent-image", str(image)]) == 0

    assert hub.repos == [{"repo_id": REPO_ID, "private": True}]
    assert hub.branches == [(REPO_ID, "v1")] and hub.commits[0]["revision"] == "v1"
    assert set(hub.files) == PUSHED_FILES | {"latent_space.png"}
    assert hub.files["latent_space.png"] == image.read_bytes()
    card = hub.files["README.md"].decode()
    assert "![Latent space](latent_space.png)" in card and f"from_pretrained({REPO_ID!r})" in card
    for row in ("| `learning_rate` | `0.01` |", "| `steps` | `40` |", "| `validation_elbo` | `-9.5` |"):
        assert row in card
    assert str(folder) not in card  # the local output_dir stays local

    snapshot = hub.to_cache(tmp_path / "hub")
    assert sorted(p.name for p in snapshot.iterdir()) == sorted(PUSHED_FILES | {"latent_space.png"})
    loaded = DEMVAEForGeneration.from_pretrained(REPO_ID, cache_dir=tmp_path / "hub")
    loaded_tokenizer = AutoTokenizer.from_pretrained(REPO_ID, cache_dir=tmp_path / "hub")
    assert loaded_tokenizer(SENTENCES)["input_ids"] == tokenizer(SENTENCES)["input_ids"]
    for expected, actual in zip(outputs(model, tokenizer), outputs(loaded, loaded_tokenizer)):
        assert torch.equal(expected, actual)


def test_push_finds_the_picture_demvae_inspect_wrote(trained, logged_in, monkeypatch, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    for path in trained[0].iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    hub = FakeHub(monkeypatch)
    push_folder(folder, REPO_ID)
    assert "latent_space.png" not in hub.files and "## Latent space" not in hub.files["README.md"].decode()
    (folder / "inspection").mkdir()
    (folder / "inspection" / "latent_space.png").write_bytes(b"\x89PNG\r\n\x1a\n from demvae inspect")
    push_folder(folder, REPO_ID)
    assert hub.files["latent_space.png"] == b"\x89PNG\r\n\x1a\n from demvae inspect"
    assert "![Latent space](latent_space.png)" in hub.files["README.md"].decode()


@pytest.mark.parametrize("origin", [{"base_model": "tester/demvae-ptb"}, {"base_model_folder": "ptb-run"}])
def test_push_names_the_base_model_that_fine_tuning_recorded(trained, logged_in, monkeypatch, tmp_path, origin):
    """A Hub id recorded by `demvae train --init-from` becomes the card's base_model; a local folder's name is
    only a training setting (base_model metadata must name a Hub model)."""
    folder = tmp_path / "tuned"
    shutil.copytree(trained[0], folder)
    summary = json.loads((folder / "training_summary.json").read_text())
    summary.update(origin, kl_annealing_step=340, kl_weight=0.75)
    summary["training_arguments"]["kl_annealing_start"] = 300
    (folder / "training_summary.json").write_text(json.dumps(summary))
    hub = FakeHub(monkeypatch)
    assert demvae(["push", str(folder), REPO_ID]) == 0
    card = ModelCard(hub.files["README.md"].decode())
    assert card.data.base_model == origin.get("base_model")
    assert ("fine-tuned from [`tester/demvae-ptb`]" in card.text) == ("base_model" in origin)
    (name, value), = origin.items()
    for row in (f"| `{name}` | `{value}` |", "| `kl_annealing_start` | `300` |", "| `kl_annealing_step` | `340` |",
                "| `kl_weight` | `0.75` |"):
        assert row in card.text
    assert demvae(["push", str(folder), REPO_ID, "--base-model", "tester/other"]) == 0  # the option wins
    assert ModelCard(hub.files["README.md"].decode()).data.base_model == "tester/other"


def test_push_model_carries_tokenizer_and_card(trained, logged_in, monkeypatch, tmp_path):
    folder, _, tokenizer = trained
    hub = FakeHub(monkeypatch)
    model = DEMVAEForGeneration.from_pretrained(folder)  # the tokenizer is found beside the weights
    push_model(model, REPO_ID, evaluations=[{"nll": 12.5}])
    assert set(hub.files) == PUSHED_FILES
    card = ModelCard(hub.files["README.md"].decode())
    assert [(r.metric_type, r.metric_value) for r in card.data.eval_results] == [("nll", 12.5)]
    assert json.loads(hub.files["tokenizer.json"])["model"]["vocab"] == tokenizer.get_vocab()

    with pytest.raises(ValueError, match="pass tokenizer="):
        push_model(DEMVAEForGeneration(tiny_config(vocab_size=len(tokenizer))), REPO_ID)


def test_model_push_to_hub_is_the_transformers_one(trained, monkeypatch):
    """The model's own push_to_hub sends the model (weights, config, modeling source) and transformers' card."""
    folder, _, _ = trained
    hub = FakeHub(monkeypatch)
    DEMVAEForGeneration.from_pretrained(folder).push_to_hub(REPO_ID, token="hf_test")
    assert set(hub.files) == MODEL_FILES | {"README.md"}
    assert "demvae" not in hub.files["README.md"].decode().split("---")[1]  # transformers' card, not ours


def test_push_to_hub_from_a_remote_code_model_without_our_package(trained, tmp_path):
    """A model loaded with trust_remote_code where our package is not installed pushes what it was loaded from."""
    folder, _, _ = trained
    script = BLOCK_OUR_PACKAGE + textwrap.dedent(
        f"""
        import json
        from huggingface_hub import HfApi, ModelCard
        from huggingface_hub.errors import EntryNotFoundError
        from huggingface_hub.hf_api import CommitInfo, RepoUrl
        from transformers import AutoModelForCausalLM

        sent = []
        def create_commit(self, repo_id, operations, **kwargs):
            sent.extend(operation.path_in_repo for operation in operations)
            return CommitInfo(commit_url="https://huggingface.co/tester/x/commit/0", commit_message="",
                              commit_description="", oid="0" * 40)
        def no_card(repo_id, **kwargs):
            raise EntryNotFoundError("no README.md yet")
        HfApi.create_repo = lambda self, repo_id, **kwargs: RepoUrl(f"https://huggingface.co/{{repo_id}}")
        HfApi.create_commit = create_commit
        ModelCard.load = no_card
        model = AutoModelForCausalLM.from_pretrained({str(folder)!r}, trust_remote_code=True)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        model.push_to_hub({REPO_ID!r}, token="hf_test")
        print(json.dumps(sorted(sent)))
        """
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert set(json.loads(result.stdout.splitlines()[-1])) == MODEL_FILES | {"README.md"}


def http_error(status: int) -> HfHubHTTPError:
    request = hub_http.Request("POST", "https://huggingface.co/api/repos/create")
    return HfHubHTTPError(f"{status} Client Error\nmore detail", response=hub_http.Response(status, request=request))


@pytest.mark.parametrize(
    "failure, fail_at, message",
    [
        (hub_http.ConnectError("[Errno -2] Name or service not known"), "create_commit", "could not reach the Hugging"),
        (TimeoutError("timed out"), "create_commit", "could not reach the Hugging"),
        (http_error(401), "create_repo", "hf auth login"),
        (http_error(500), "create_commit", "the Hub refused the push"),
        (None, None, "HF_HUB_OFFLINE=1"),  # no interception: this process is offline, as the test suite is
    ],
)
def test_failed_push_changes_nothing_and_says_so_in_one_line(
    trained, logged_in, monkeypatch, capsys, failure, fail_at, message
):
    folder = trained[0]
    before = folder_digest(folder)
    if fail_at:
        FakeHub(monkeypatch, fail_with=failure, fail_at=fail_at)
    assert constants.HF_HUB_OFFLINE
    assert demvae(["push", str(folder), REPO_ID]) == 1
    error = "\n".join(error_lines(capsys.readouterr().err))
    assert len(error.splitlines()) == 1 and error.startswith("demvae push: error: "), error
    assert message in error and "Traceback" not in error
    assert folder_digest(folder) == before


def test_not_logged_in_says_so_in_one_line(trained, monkeypatch, tmp_path, capsys):
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    hub = FakeHub(monkeypatch)
    assert demvae(["push", str(trained[0]), REPO_ID]) == 1
    assert error_lines(capsys.readouterr().err) == [
        "demvae push: error: not logged in to the Hugging Face Hub: run `hf auth login` or set HF_TOKEN to a token "
        "with write access."]
    assert hub.repos == [] and hub.files == {}


@pytest.mark.parametrize("repo_id", ["bad repo id!", "a/b/c", "user/foo--bar", "user/name."])
def test_malformed_repo_id_says_so_in_one_line(trained, logged_in, monkeypatch, capsys, repo_id):
    hub = FakeHub(monkeypatch)
    assert demvae(["push", str(trained[0]), repo_id]) == 2
    error = "\n".join(error_lines(capsys.readouterr().err))
    assert len(error.splitlines()) == 1 and "Traceback" not in error
    assert f"{repo_id!r} is not a valid Hub repository id" in error and "'namespace/name'" in error
    assert hub.repos == []


@pytest.mark.parametrize(
    "content, message",
    [(None, "evaluation JSON not found"), ("{not json", "is not valid JSON"), ('{"accuracy": 1}', "expected some")],
)
def test_bad_evaluation_json_says_so_in_one_line(trained, logged_in, monkeypatch, capsys, tmp_path, content, message):
    path = tmp_path / "eval.json"
    if content is not None:
        path.write_text(content)
    hub = FakeHub(monkeypatch)
    assert demvae(["push", str(trained[0]), REPO_ID, "--eval-json", str(path)]) == 2
    error = "\n".join(error_lines(capsys.readouterr().err))
    assert len(error.splitlines()) == 1 and message in error
    assert hub.files == {}


def test_push_folder_needs_a_saved_model(tmp_path, logged_in):
    with pytest.raises(FileNotFoundError, match="no saved model"):
        push_folder(tmp_path, REPO_ID)



# ----- the card in the model folder -----


def copied(trained, tmp_path) -> Path:
    """The fixture's model in a folder of its own, named as the Hub repo, so that the cards' titles agree."""
    folder = tmp_path / REPO_ID.split("/")[-1]
    shutil.copytree(trained[0], folder)
    return folder


def as_pushed(local_card: str, folder: Path) -> str:
    """The folder's card with the folder's path, its repository id there, replaced by the Hub's."""
    return local_card.replace(repr(str(folder)), repr(REPO_ID))


def test_training_and_fine_tuning_write_the_card_that_push_uploads(tmp_path, logged_in, monkeypatch, capsys):
    corpus = tmp_path / "train.txt"
    corpus.write_text("\n".join(SENTENCES * 4) + "\n")
    folder = tmp_path / REPO_ID.split("/")[-1]
    run = ["--train-file", str(corpus), *TINY, "--max-steps", "4", "--eval-every", "2"]
    assert demvae(["train", *run, "--output-dir", str(folder)]) == 0
    assert f"wrote the model card {folder / 'README.md'}\n" in capsys.readouterr().out
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert CARD_MARKER in card and "| `steps` | " in card and "**Group 1, component 2**" in card
    hub = FakeHub(monkeypatch)
    push_folder(folder, REPO_ID)
    assert as_pushed(card, folder) == hub.files["README.md"].decode()

    tuned = tmp_path / "tuned"
    assert demvae(["train", "--init-from", str(folder), *run, "--output-dir", str(tuned)]) == 0
    assert f"| `base_model_folder` | `{folder.name}` |" in (tuned / "README.md").read_text(encoding="utf-8")


def test_label_components_writes_the_card_with_the_labels(trained, tmp_path, capsys):
    folder = copied(trained, tmp_path)
    corpus = tmp_path / "topics.jsonl"
    names = ["animals", "money", "sea"]
    corpus.write_text("".join(json.dumps({"text": text, "topic": names[topic]}) + "\n"
                              for text, topic in zip(SENTENCES, TOPICS)))
    assert not (folder / "README.md").exists()
    assert demvae(["label-components", str(folder), "--dataset", str(corpus), "--labels", "topic",
                   "--no-progress"]) == 0
    assert capsys.readouterr().out.endswith(f"wrote the model card {folder / 'README.md'}\n")
    card = (folder / "README.md").read_text(encoding="utf-8")
    attribute = json.loads((folder / "config.json").read_text())["attributes"]["topic"]
    label = next(name for name in attribute["labels"] if attribute["values"][name])
    assert sorted(attribute["labels"]) == names
    assert (f"model.generate(attributes={{'topic': {label!r}}}, num_samples=3)  # labels: "
            f"{', '.join(attribute['labels'])}") in card


def test_evaluate_puts_its_numbers_in_the_folder_and_its_card_and_push_takes_them(trained, tmp_path, logged_in,
                                                                                 monkeypatch, capsys):
    folder = copied(trained, tmp_path)
    test_file = tmp_path / "test.txt"
    test_file.write_text("\n".join(SENTENCES) + "\n")
    evaluate = ["evaluate", str(folder), "--test-file", str(test_file), "--metrics", "nll", "collapse",
                "--nll-samples", "3", "--no-progress", "--mixed-precision", "no"]
    assert demvae([*evaluate, "--output", str(tmp_path / "elsewhere.json")]) == 0
    assert not (folder / "README.md").exists()  # an evaluation elsewhere reaches a card through --eval-json
    assert demvae(evaluate) == 0
    assert capsys.readouterr().out.endswith(f"wrote {folder / 'evaluation.json'}\nwrote the model card "
                                            f"{folder / 'README.md'} with the numbers of evaluation.json\n")
    evaluation = json.loads((folder / "evaluation.json").read_text())
    card = ModelCard.load(folder / "README.md")
    values = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert values["elbo"] == evaluation["elbo"] and values["nll"] == evaluation["nll"]
    assert values["perplexity"] == evaluation["ppl"] and values["mutual_information"] == evaluation["mi"][0]
    assert "| NLL (importance-weighted, nats per sentence) | " + f"{evaluation['nll']:.4g} |" in card.text
    everything = (folder / "README.md").read_text(encoding="utf-8")
    assert "I(x; c) on the test set (nats), sum over 1 group" in everything and "1 groups" not in everything
    assert "`nll_samples=3`" in card.text
    for unmeasured in ("rppl_preset", "rppl_samples", "rppl_max_epochs", "wkl_smoothing", "control_samples"):
        assert unmeasured not in card.text

    hub = FakeHub(monkeypatch)
    assert demvae(["push", str(folder), REPO_ID]) == 0
    assert f"the card carries the numbers of {folder / 'evaluation.json'}" in capsys.readouterr().out
    assert hub.files["README.md"].decode() == as_pushed((folder / "README.md").read_text(encoding="utf-8"), folder)


def test_an_evaluation_of_an_earlier_model_stays_out_of_the_card(trained, tmp_path, capsys):
    folder = copied(trained, tmp_path)
    evaluation = {"nll": 12.5, "control_accuracy": {"topic": 0.75}, "settings": {"control_samples": 9}}
    (folder / "evaluation.json").write_text(json.dumps(evaluation))
    written = (folder / "evaluation.json").stat().st_mtime_ns
    os.utime(folder / "config.json", ns=(written + 10**9, written + 10**9))  # labelled after the evaluation
    write_model_card(folder)
    assert "labelled again, so the card leaves those numbers out" in capsys.readouterr().out
    results = ModelCard.load(folder / "README.md").data.eval_results
    assert [(r.metric_type, r.metric_value) for r in results] == [("nll", 12.5)]
    assert "control" not in (folder / "README.md").read_text(encoding="utf-8").split("## Evaluation")[1]

    os.utime(folder / "model.safetensors", ns=(written + 2 * 10**9, written + 2 * 10**9))  # trained again since
    write_model_card(folder)
    assert "older than the model's weights (trained since)" in capsys.readouterr().out
    assert "model-index" not in ModelCard.load(folder / "README.md").data.to_dict()


def test_a_hand_written_readme_is_left_alone_and_a_card_is_written_again(trained, tmp_path, capsys):
    folder = copied(trained, tmp_path)
    (folder / "README.md").write_text("# My model\n\nNotes of my own.\n")
    write_model_card(folder)
    assert (folder / "README.md").read_text() == "# My model\n\nNotes of my own.\n"
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and f"left {folder / 'README.md'} as it is: demvae did not write it" in line

    (folder / "README.md").unlink()
    write_model_card(folder)
    card = (folder / "README.md").read_text(encoding="utf-8")
    (folder / "README.md").write_text(card.replace("## Citation", "## My notes\n\n## Citation"))
    write_model_card(folder)  # a card demvae wrote is written again, edits and all
    assert (folder / "README.md").read_text(encoding="utf-8") == card
    assert [path.name for path in folder.iterdir() if path.name.endswith(".tmp")] == []


def test_the_folder_card_shows_the_picture_demvae_inspect_drew_beside_it(trained, tmp_path):
    folder = copied(trained, tmp_path)
    (folder / "inspection").mkdir()
    (folder / "inspection" / "latent_space.png").write_bytes(b"\x89PNG\r\n\x1a\n from demvae inspect")
    write_model_card(folder)
    assert "![Latent space](inspection/latent_space.png)" in (folder / "README.md").read_text(encoding="utf-8")


def test_evaluate_writes_into_the_model_folder_only_when_it_is_one(trained, tmp_path):
    folder = copied(trained, tmp_path)
    assert evaluation_output(str(folder), folder, None) == str(folder / "evaluation.json")
    assert evaluation_output(REPO_ID, None, None) == "evaluation.json"  # a Hub id: the current folder, as before
    assert evaluation_output(str(folder), folder, "mine.json") == "mine.json"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_evaluate_refuses_a_read_only_model_folder_before_any_work_naming_output(trained, tmp_path, capsys):
    folder = copied(trained, tmp_path)
    folder.chmod(0o555)
    try:
        assert demvae(["evaluate", str(folder), "--test-file", str(tmp_path / "no-such-file.txt")]) == 2
    finally:
        folder.chmod(0o755)
    error = capsys.readouterr().err
    assert error == (f"demvae evaluate: error: {folder} is read-only, and evaluate writes evaluation.json and the "
                     "model card there; give --output FILE to write the evaluation elsewhere.\n")


@pytest.mark.parametrize(
    "measured, listed, left_out",
    [
        ({"nll": 9.0, "mi": [0.5, 0.25, 0.25]}, ["nll_samples", "seed"],
         ["rppl_preset", "rppl_samples", "rppl_max_epochs", "wkl_smoothing", "control_samples"]),
        ({"rppl": 80.0, "wkl": 0.5}, ["rppl_preset", "rppl_samples", "rppl_max_epochs", "wkl_smoothing", "seed"],
         ["nll_samples", "control_samples"]),
        ({"wkl": 0.5}, ["rppl_preset", "rppl_samples", "wkl_smoothing"], ["rppl_max_epochs", "nll_samples"]),
        ({"control_accuracy": {"topic": 0.5}, "control_per_label": {"topic: sea": 0.5}}, ["control_samples"],
         ["nll_samples", "rppl_preset", "wkl_smoothing"]),
    ],
)
def test_the_card_lists_the_settings_of_measured_metrics_only(trained, measured, listed, left_out):
    _, model, tokenizer = trained
    settings = {"seed": 0, "nll_samples": 500, "rppl_preset": "paper", "rppl_samples": [40000, 4000],
                "rppl_max_epochs": 30, "wkl_smoothing": "add-one", "control_samples": 100}
    text = render_model_card(model, tokenizer, repo_id=REPO_ID,
                             evaluations=[{**measured, "settings": settings}]).text
    shown = text.split("Settings: ")[1].split("\n")[0]
    assert all(f"`{key}=" in shown for key in listed) and not any(f"`{key}=" in shown for key in left_out)


def test_the_card_counts_groups_in_the_singular_and_the_plural(trained):
    _, _, tokenizer = trained
    torch.manual_seed(0)
    model = DEMVAEForGeneration(tiny_config(vocab_size=len(tokenizer))).eval()  # 3 groups
    evaluation = {"mi": [0.5, 0.25, 0.25], "active_components": [1.5, 1.2, 1.3], "batch_mi": 0.9}
    text = str(render_model_card(model, tokenizer, repo_id=REPO_ID, evaluations=[evaluation], max_groups=1))
    assert "sum over 3 groups" in text and "mean over 3 groups" in text and "summed over 3 groups" in text
    assert "with 3 groups" in text and "(group 0 shown)" in text
    assert "(groups 0 to 1 shown)" in render_model_card(model, tokenizer, repo_id=REPO_ID, max_groups=2).text
    single = str(render_model_card(model, tokenizer, repo_id=REPO_ID, evaluations=[
        {"mi": [0.5], "active_components": [1.5], "batch_mi": 0.5}]))
    assert all(phrase in single for phrase in ("sum over 1 group", "mean over 1 group", "summed over 1 group"))
    assert "1 groups" not in single


# ----- the README's fine-tuning recipe -----


@pytest.mark.slow
def test_fine_tune_a_pushed_model_and_push_the_result(trained, logged_in, monkeypatch, tmp_path):
    """Push, `demvae train --init-from REPO_ID` on a new corpus (read from the Hub cache), push the result."""
    folder, model, tokenizer = trained
    hub = FakeHub(monkeypatch)
    push_folder(folder, REPO_ID)
    hub.to_cache(tmp_path / "hub")
    corpus = tmp_path / "finance.txt"
    corpus.write_text("stocks fell again today\nprices rose sharply today\nstocks rose today\nbonds fell today\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hub"), OMP_NUM_THREADS="1")
    train = ["train", "--init-from", REPO_ID, "--train-file", str(corpus), "--valid-file", str(corpus),
             "--output-dir", str(tmp_path / "tuned"), "--max-steps", "10", "--eval-every", "5", "--batch-size", "2"]
    result = subprocess.run([sys.executable, "-m", "demvae", *train], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    summary = json.loads((tmp_path / "tuned" / "training_summary.json").read_text())
    assert summary["base_model"] == REPO_ID  # recorded by --init-from, and found by the push without --base-model
    assert summary["kl_weight"] == 1.0  # a pushed model carries no run summary: taken as fully trained

    tuned_hub = FakeHub(monkeypatch)
    assert demvae(["push", str(tmp_path / "tuned"), "tester/demvae-tiny-finance"]) == 0
    assert set(tuned_hub.files) == PUSHED_FILES
    card = ModelCard(tuned_hub.files["README.md"].decode())
    assert card.data.base_model == REPO_ID and f"fine-tuned from [`{REPO_ID}`]" in card.text
    vocabulary = [json.loads(files["tokenizer.json"])["model"]["vocab"] for files in (hub.files, tuned_hub.files)]
    assert vocabulary[0] == vocabulary[1]  # the pushed model's tokenizer is kept
    assert tuned_hub.files["model.safetensors"] != hub.files["model.safetensors"]
