"""`demvae inspect`: the latent-space PNG and the per-component report."""

import re

import matplotlib.figure
import matplotlib.image
import numpy as np
import pytest
import torch
from conftest import save_tiny_model, write_dialog_corpus
from demvae.cli import main
from demvae.inspection import characteristic_words, project_to_2d
from sklearn.metrics import homogeneity_score
from transformers import PreTrainedTokenizerFast

from modeling_demvae import DEMVAEConfig, DEMVAEForGeneration, data, metrics

FAMILIES = {"gaussian": {}, "categorical": {"prior_family": "categorical", "categorical_size": 3}}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def saved(tmp_path_factory, request):
    root = tmp_path_factory.mktemp("inspect")
    corpus = write_dialog_corpus(root / "corpus")
    return save_tiny_model(root / "model", corpus, num_groups=4, latent_size=3, **FAMILIES[request.param]), corpus


@pytest.fixture
def saved_figures(monkeypatch) -> list:
    """The matplotlib figures `demvae inspect` saves, kept for their titles, legends and axes."""
    figures, savefig = [], matplotlib.figure.Figure.savefig

    def kept_savefig(figure, *args, **kwargs):
        figures.append(figure)
        return savefig(figure, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", kept_savefig)
    return figures


def test_inspect_writes_the_picture_and_a_report_per_component(saved, saved_figures, tmp_path, capsys):
    model_dir, corpus = saved
    assert main(["inspect", str(model_dir), "--dataset", str(corpus), "--output-dir", str(tmp_path),
                 "--max-groups", "3", "--samples-per-component", "20", "--examples", "2"]) == 0
    image = matplotlib.image.imread(tmp_path / "latent_space.png")
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
    assert image[..., :3].std() > 0.01  # not a blank canvas
    report = (tmp_path / "components.md").read_text()
    assert report.count("## Group ") == 3 and report.count("### Component ") == 3 * 4
    for needle in ("share of the data", "characteristic words", "sampled:", "closest real sentences", "I(x; c)"):
        assert needle in report
    assert "latent_space.png" in capsys.readouterr().out
    paper_name = DEMVAEConfig.from_pretrained(model_dir).paper_name
    assert len(saved_figures) == 1  # "DGM-VAE + MI latent space ...", not "dem"
    assert saved_figures[0].get_suptitle().startswith(paper_name)


def test_every_mark_of_the_picture_is_explained(saved, saved_figures, tmp_path):
    """The scatter picture's legend names each kind of mark and each component's colour, and draws nothing else;
    the categorical heat map names its rows, variables and colour scale."""
    model_dir, corpus = saved
    assert main(["inspect", str(model_dir), "--dataset", str(corpus), "--output-dir", str(tmp_path),
                 "--max-groups", "2", "--samples-per-component", "10", "--examples", "1"]) == 0
    (figure,) = saved_figures
    config = DEMVAEConfig.from_pretrained(model_dir)
    panels = [axis for axis in figure.axes if axis.axison]
    if config.has_categorical_latent:
        heat_maps, colorbar = panels[:-1], panels[-1]
        assert colorbar.get_ylabel() == "probability of the value"
        assert [tick.get_text() for tick in heat_maps[0].get_yticklabels()] == [
            "component 0", "component 1", "component 2", "component 3", "data: mean q(z|x)"]
        assert [tick.get_text() for tick in heat_maps[0].get_xticklabels()] == ["z0", "z1", "z2"]
        assert "values v = 0 .. 2" in heat_maps[-1].get_xlabel()
        return
    (legend,) = figure.legends
    texts = [text.get_text() for text in legend.get_texts()]
    assert texts[0].startswith("prior samples z ~ p(z|c)") and "(10 per component)" in texts[0]
    assert texts[1].startswith("real sentences: mean of q(z|x)") and "most probable component" in texts[1]
    assert texts[2].startswith("component mean")
    assert texts[3:] == ["component 0", "component 1", "component 2", "component 3"]
    assert [handle.get_marker() for handle in legend.legend_handles[:3]] == ["o", "x", "o"]
    assert len(panels) == 2
    for axis in panels:  # per component: its samples, its sentences and its numbered mean; nothing unexplained
        assert len(axis.collections) == 3 * config.num_components
        assert [text.get_text() for text in axis.texts] == ["0", "1", "2", "3"]
        assert axis.get_xlabel() == "PC1" and axis.get_ylabel() == "PC2"


def test_the_report_states_each_label_s_homogeneity_beside_its_chance_level(saved, tmp_path):
    """The corpus's act and emotion labels against the model's argmax codes: homogeneity, the mean over 20 seeded
    shuffles of the labels (recomputed here with scikit-learn), and the difference."""
    model_dir, corpus = saved
    assert main(["inspect", str(model_dir), "--dataset", str(corpus), "--output-dir", str(tmp_path),
                 "--max-groups", "1", "--samples-per-component", "5", "--examples", "1", "--seed", "2"]) == 0
    section = (tmp_path / "components.md").read_text().split("## Agreement with the labels")[1].split("## Group")[0]
    table = [[cell.strip() for cell in line.strip("|").split("|")] for line in section.splitlines()
             if line.startswith("| ")]
    assert table[0][:4] == ["label", "homogeneity", "chance (labels shuffled)", "above chance"]
    rows = {cells[0]: cells[1:] for cells in table[2:]}
    model = DEMVAEForGeneration.from_pretrained(model_dir).eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    split = data.tokenize_corpus(data.load_corpus(str(corpus))["test"], tokenizer, max_length=12)
    clusters = metrics.combined_cluster_ids(metrics.encode_sentences(model, split["input_ids"]).component_probs)
    assert set(rows) == {"act", "emotion"}
    for label, (homogeneity, chance, above, *_) in rows.items():
        shuffles = np.random.default_rng(2)
        expected = np.mean([homogeneity_score([split[label][i] for i in shuffles.permutation(len(clusters))],
                                              clusters.tolist()) for _ in range(20)])
        raw = homogeneity_score(split[label], clusters.tolist())
        assert (homogeneity, chance, above) == (f"{raw:.3f}", f"{expected:.3f}", f"{raw - expected:.3f}")


def list_items(markdown: str) -> list[str]:
    """The texts of a markdown block's nested list ("  - text" lines)."""
    return [line.removeprefix("  - ") for line in markdown.splitlines() if line.startswith("  - ")]


def test_closest_sentences_are_distinct_and_repeated_samples_counted(saved, tmp_path):
    """A test set repeating its sentences (Penn Treebank's does) must not fill a component's list with one text;
    the tiny untrained model's greedy samples repeat, and each is shown once with its count."""
    model_dir, _ = saved
    sentences = ["the cat sat on a mat", "a big dog ran", "the red rug", "a small cat sat"]
    (tmp_path / "test.txt").write_text("\n".join(sentence for sentence in sentences for _ in range(6)) + "\n")
    assert main(["inspect", str(model_dir), "--test-file", str(tmp_path / "test.txt"), "--output-dir",
                 str(tmp_path / "out"), "--max-groups", "2", "--samples-per-component", "5", "--examples", "3"]) == 0
    report = (tmp_path / "out" / "components.md").read_text()
    assert "Agreement with the labels" not in report  # a text file has no labels
    components = report.split("### Component ")[1:]
    assert len(components) == 2 * 4
    counted_somewhere = False
    for component in components:
        sampled, closest = component.split("- sampled:\n")[1].split("- closest real sentences (distinct):\n")
        closest = list_items(closest)
        assert len(closest) == 3 and len(set(closest)) == 3 and set(closest) <= set(sentences)
        counts = [re.fullmatch(r"(.*?)(?: \(x(\d+)\))?", item).groups() for item in list_items(sampled)]
        assert len({text for text, _ in counts}) == len(counts)  # each sampled text once
        assert sum(int(count or 1) for _, count in counts) == 3  # with its count: all three samples
        counted_somewhere |= any(count for _, count in counts)
    assert counted_somewhere


def test_inspect_rejects_models_without_a_mixture(tmp_path, capsys):
    corpus = write_dialog_corpus(tmp_path / "corpus")
    model_dir = save_tiny_model(tmp_path / "model", corpus, variant="vae")
    assert main(["inspect", str(model_dir), "--dataset", str(corpus)]) == 2
    assert "needs 'dem'" in capsys.readouterr().err


def test_projection_and_characteristic_words_by_hand():
    points = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert torch.equal(project_to_2d(points, points), points)
    line = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])  # all variance along (1,1,1)
    projected = project_to_2d(line, line)
    assert projected[:, 0].abs().tolist() == pytest.approx([3**0.5, 0.0, 3**0.5], abs=1e-5)
    assert projected[:, 1].abs().max() < 1e-5

    class Config:
        bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

    class Tokenizer:
        def convert_ids_to_tokens(self, ids):
            return [f"w{i}" for i in ids]

    sentences = [[1, 5, 6, 2], [1, 7, 6, 2]]
    # weights (1, 0): the component's words are {5: 1/2, 6: 1/2}; overall {5: 1/4, 6: 1/2, 7: 1/4}
    # scores 1/2 log 2 for word 5, 1/2 log 1 = 0 for word 6, and word 7 is absent
    words = characteristic_words(sentences, torch.tensor([1.0, 0.0]), Tokenizer(), Config, top=3)
    assert words == ["w5", "w6"]
