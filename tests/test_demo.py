"""`demvae demo`: each tab's endpoint called through Gradio's own client against the app served on 127.0.0.1, for a
Gaussian, a categorical and an attribute model, each answer checked against the model called directly; the placement
cache; the Space folder and its push (the Hub intercepted by `FakeHub`). The browser test is in
test_demo_browser.py."""

import argparse
import socket
from contextlib import contextmanager
from pathlib import Path

import matplotlib.image
import pytest
import torch
import torch.nn.functional as F
from conftest import error_lines, save_tiny_model, write_dialog_corpus
from demvae.cli import main as demvae

gradio_client = pytest.importorskip("gradio_client", reason="the demo's tests need gradio: pip install -e '.[dev]'")
from demvae import demo_app, demo_placement  # noqa: E402
from demvae.demo_app import build_app  # noqa: E402
from demvae.demo_explorer import ComponentExplorer  # noqa: E402
from demvae.demo_launch import loaded_and_placed  # noqa: E402
from demvae.demo_space import PLACEMENT_FILE, SPACE_FILES  # noqa: E402
from huggingface_hub import RepoCard, constants  # noqa: E402

UNSUPERVISED_ACT = {"act": {"group": 1, "labels": ["inform", "question"], "supervised": False,
                            "values": {"inform": [0, 2], "question": [1]}}}
MODELS = {"gaussian": {}, "categorical": {"prior_family": "categorical", "categorical_size": 3},
          "attribute": {"attributes": UNSUPERVISED_ACT}}
SENTENCE, OTHER = "the cat sat on a mat", "a big dog ran"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_dialog_corpus(tmp_path_factory.mktemp("demo") / "corpus")


def demo_args(model_dir, corpus) -> argparse.Namespace:
    return argparse.Namespace(model=str(model_dir), dataset=str(corpus), test_file=None, max_sentences=2000,
                              num_threads=1)


@contextmanager
def serving(app):
    """Gradio's client of `app` served on a free port of 127.0.0.1, torch on one thread meanwhile."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        app.close()
        torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=sorted(MODELS))
def served(request, tmp_path_factory, corpus, demo_cache):
    """(client, model, tokenizer, placement) of the app served on a free port of 127.0.0.1 for one kind of model."""
    model_dir = save_tiny_model(tmp_path_factory.mktemp(request.param) / "model", corpus, **MODELS[request.param])
    model, tokenizer, placement = loaded_and_placed(demo_args(model_dir, corpus))
    with serving(build_app(ComponentExplorer(model, tokenizer, placement), title="test")) as client:
        yield client, model, tokenizer, placement


def decoded(tokenizer, ids) -> list[str]:
    return [text or "(empty)" for text in tokenizer.batch_decode(ids, skip_special_tokens=True)]


def sentence_posterior(model, tokenizer, text: str):
    """q(z, c|x) of `<s> words </s>`, the sentence built here from the tokenizer's words."""
    words = tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        return model.encode(torch.tensor([[tokenizer.bos_token_id, *words, tokenizer.eos_token_id]]))


def has_red_mark(path: str) -> bool:
    """Whether the picture holds pure red pixels: the ring (or frame) around the marked component."""
    image = matplotlib.image.imread(path)[..., :3]
    return bool(((image[..., 0] > 0.9) & (image[..., 1] < 0.1) & (image[..., 2] < 0.1)).any())


# ----- the Components tab -----


@pytest.mark.parametrize("sampling", [None, {"temperature": 0.7, "top_p": 0.9}])
def test_generate_gives_the_model_s_sentences_from_the_component(served, sampling):
    client, model, tokenizer, _ = served
    options = sampling or {"temperature": 1.0, "top_p": 1.0}
    text, facts, picture = client.predict(1, 2, "", 4, sampling is not None, options["temperature"],
                                          options["top_p"], 3, api_name="/generate")
    torch.manual_seed(3)
    codes = torch.randint(model.config.num_components, (4, model.config.num_groups))
    codes[:, 1] = 2
    expected = model.generate(component=codes, num_samples=4, **({"do_sample": True, **sampling} if sampling else {}))
    assert text.split("\n") == decoded(tokenizer, expected)
    assert "Group 1, component 2" in facts and has_red_mark(picture)


def test_describe_gives_the_share_of_the_placed_sentences(served):
    client, model, tokenizer, placement = served
    facts, picture = client.predict(2, 3, "", api_name="/describe")
    probs = torch.stack([sentence_posterior(model, tokenizer, tokenizer.decode(ids[1:-1])).component_probs[0]
                         for ids in placement.sentences])  # each sentence alone: no padding anywhere
    share, most_probable = probs[:, 2, 3].mean(), (probs[:, 2].argmax(-1) == 3).float().mean()
    assert f"share of the data: {share:.1%} (most probable component for {most_probable:.1%}" in facts
    assert f"({len(placement.sentences)} real sentences placed)" in facts and has_red_mark(picture)


def test_a_label_generates_what_the_model_generates_for_it(served):
    client, model, tokenizer, _ = served
    if not model.config.attributes:
        with pytest.raises(gradio_client.exceptions.AppError, match="not in the list of choices"):
            client.predict(0, 0, "act=question", 3, False, 1.0, 1.0, 0, api_name="/generate")
        return
    text, facts, _ = client.predict(0, 0, "act=question", 3, False, 1.0, 1.0, 5, api_name="/generate")
    torch.manual_seed(5)
    assert text.split("\n") == decoded(tokenizer, model.generate(attributes={"act": "question"}, num_samples=3))
    assert "Group 1, component 1 (act=question)" in facts  # the label's component, described
    with pytest.raises(gradio_client.exceptions.AppError, match="act=directive is not in the list of choices"):
        client.predict(0, 0, "act=directive", 3, False, 1.0, 1.0, 0, api_name="/describe")


# ----- the Read a sentence tab -----


def test_read_sentence_gives_q_c_x_the_reconstruction_and_new_z(served):
    client, model, tokenizer, _ = served
    bars, best, reconstruction, resampled = client.predict(SENTENCE, 3, 4, api_name="/read_sentence")
    posterior = sentence_posterior(model, tokenizer, SENTENCE)
    probs = posterior.component_probs[0]
    shown = torch.tensor([row[2] for row in bars["data"]]).view_as(probs)
    torch.testing.assert_close(shown, probs)
    codes = probs.argmax(-1)
    assert all(f"group {g}: component {k}" in best for g, k in enumerate(codes.tolist()))
    if model.config.has_categorical_latent:  # the posterior mode: the most probable value of each variable
        mode = F.one_hot(posterior.latent_logits.argmax(-1), model.config.categorical_size).float().flatten(1)
    else:
        mode = posterior.mean
    assert reconstruction == tokenizer.decode(model.generate(latent=mode)[0], skip_special_tokens=True)
    torch.manual_seed(4)
    assert resampled.split("\n") == tokenizer.batch_decode(model.generate(component=codes.tolist(), num_samples=3),
                                                           skip_special_tokens=True)
    with pytest.raises(gradio_client.exceptions.AppError, match="type a sentence"):
        client.predict("  ", 3, 0, api_name="/read_sentence")


# ----- the Between two sentences tab -----


def test_between_decodes_the_line_between_the_posterior_means(served):
    client, model, tokenizer, _ = served

    def mean(text):
        posterior = sentence_posterior(model, tokenizer, text)
        if model.config.has_categorical_latent:
            return posterior.latent_logits.softmax(-1).flatten(1)
        return posterior.mean

    lines = client.predict(SENTENCE, OTHER, 3, api_name="/between").split("\n")
    points = [0.5 * mean(SENTENCE) + 0.5 * mean(OTHER) if t == 0.5 else mean(SENTENCE if t == 0 else OTHER)
              for t in (0.0, 0.5, 1.0)]
    expected = tokenizer.batch_decode(model.generate(latent=torch.cat(points)), skip_special_tokens=True)
    assert lines == [f"{t:.2f}  {text}" for t, text in zip((0.0, 0.5, 1.0), expected)]


# ----- the placement cache -----


def test_sentences_are_placed_once_per_model_in_the_user_cache(tmp_path, corpus, demo_cache, monkeypatch):
    model_dir = save_tiny_model(tmp_path / "model", corpus)
    before = sorted(p.name for p in model_dir.iterdir())
    model, tokenizer, placement = loaded_and_placed(demo_args(model_dir, corpus))
    path = demo_placement.placement_path(model, placement.sentences)
    assert path.is_file() and path.is_relative_to(demo_cache / "demo")
    assert sorted(p.name for p in model_dir.iterdir()) == before  # nothing written beside the model

    def no_encoding(*args, **kwargs):
        raise AssertionError("the cached placement should have been read")

    monkeypatch.setattr(demo_placement.metrics, "encode_sentences", no_encoding)
    _, _, again = loaded_and_placed(demo_args(model_dir, corpus))
    assert again.sentences == placement.sentences
    torch.testing.assert_close(again.posterior.component_probs, placement.posterior.component_probs)
    with torch.no_grad():
        model.lm_head.bias.add_(1.0)  # other weights: another place in the cache
    assert demo_placement.placement_path(model, placement.sentences).parent != path.parent


# ----- the Space -----


def test_space_dir_writes_a_space_that_loads_the_model_by_its_hub_id(tmp_path, corpus, demo_cache, capsys):
    model_dir = save_tiny_model(tmp_path / "model", corpus)
    for wrong, message in ((["--space-dir", str(tmp_path / "space")], "give --model-id namespace/name"),
                           (["--model-id", "tester/x"], "--model-id names the model a Space loads; it goes with"),
                           (["--space-dir", str(model_dir), "--model-id", "tester/x"], "holds a model (config.json)"),
                           (["--space-dir", str(tmp_path / "space"), "--model-id", "no id"], "is not a Hub model id")):
        assert demvae(["demo", str(model_dir), "--dataset", str(corpus), *wrong]) == 2
        assert message in error_lines(capsys.readouterr().err)[-1]

    assert demvae(["demo", str(model_dir), "--dataset", str(corpus), "--space-dir", str(tmp_path / "space"),
                   "--model-id", "tester/demvae-tiny"]) == 0
    space = tmp_path / "space"
    assert {p.name for p in space.iterdir()} == set(SPACE_FILES) | {"demvae", "modeling_demvae"}
    card = RepoCard.load(space / "README.md").data
    assert (card.sdk, card.app_file, card.models) == ("gradio", "app.py", ["tester/demvae-tiny"])
    assert '"tester/demvae-tiny"' in (space / "app.py").read_text()
    requirements = (space / "requirements.txt").read_text().split()
    assert "torch>=2.6" in requirements and any(line.startswith("gradio") for line in requirements)
    assert (space / "demvae" / "demo_app.py").is_file() and (space / "modeling_demvae" / "metrics").is_dir()


def test_push_with_space_sends_a_space_that_serves_the_pushed_model(tmp_path, corpus, demo_cache, monkeypatch):
    from test_hub import FakeHub

    monkeypatch.setenv("HF_TOKEN", "hf_test_token_not_used_for_any_request")
    model_dir = save_tiny_model(tmp_path / "model", corpus)
    (tmp_path / "sentences.txt").write_text(f"{SENTENCE}\n{OTHER}\n")
    hub = FakeHub(monkeypatch)
    assert demvae(["push", str(model_dir), "demvae-tiny", "--space", "demvae-tiny-explorer",
                   "--space-test-file", str(tmp_path / "sentences.txt")]) == 0
    assert hub.repos[-1] == {"repo_id": "tester/demvae-tiny-explorer", "private": None, "repo_type": "space",
                             "space_sdk": "gradio"}
    assert set(SPACE_FILES) <= set(hub.space_files) and "README.md" in hub.files
    assert b'space_app("tester/demvae-tiny"' in hub.space_files["app.py"]

    space = tmp_path / "space"  # the Space as the Hub runs it: app.py's call, the model from the Hub cache
    for name, content in hub.space_files.items():
        (space / name).parent.mkdir(parents=True, exist_ok=True)
        (space / name).write_bytes(content)
    assert (space / "demvae" / "demo_app.py").read_bytes() == Path(demo_app.__file__).read_bytes()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub.to_cache(tmp_path / "hub", "tester/demvae-tiny").parents[2]))
    monkeypatch.chdir(space)
    with serving(demo_app.space_app("tester/demvae-tiny", PLACEMENT_FILE)) as client:
        text, facts, _ = client.predict(0, 1, "", 3, False, 1.0, 1.0, 0, api_name="/generate")
    model, tokenizer, _ = loaded_and_placed(demo_args(model_dir, corpus))
    torch.manual_seed(0)
    codes = torch.randint(model.config.num_components, (3, model.config.num_groups))
    codes[:, 0] = 1
    assert text.split("\n") == decoded(tokenizer, model.generate(component=codes, num_samples=3))
    assert "(2 real sentences placed)" in facts
