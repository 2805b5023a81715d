"""`demvae inspect`: the latent-space PNG and the per-component report."""

import matplotlib.figure
import matplotlib.image
import pytest
import torch
from conftest import save_tiny_model, write_dialog_corpus
from demvae.cli import main
from demvae.inspect_model import characteristic_words, project_to_2d

from modeling_demvae import DEMVAEConfig

FAMILIES = {"gaussian": {}, "categorical": {"prior_family": "categorical", "categorical_size": 3}}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def saved(tmp_path_factory, request):
    root = tmp_path_factory.mktemp("inspect")
    corpus = write_dialog_corpus(root / "corpus")
    return save_tiny_model(root / "model", corpus, num_groups=4, latent_size=3, **FAMILIES[request.param]), corpus


def test_inspect_writes_the_picture_and_a_report_per_component(saved, tmp_path, capsys, monkeypatch):
    model_dir, corpus = saved
    titles, savefig = [], matplotlib.figure.Figure.savefig

    def titled_savefig(figure, *args, **kwargs):
        titles.append(figure.get_suptitle())
        return savefig(figure, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", titled_savefig)
    assert main(["inspect", str(model_dir), "--dataset", str(corpus), "--output-dir", str(tmp_path),
                 "--max-groups", "3", "--samples-per-component", "20", "--examples", "2"]) == 0
    image = matplotlib.image.imread(tmp_path / "latent_space.png")
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
    assert image[..., :3].std() > 0.01  # not a blank canvas
    report = (tmp_path / "components.md").read_text()
    assert report.count("## Group ") == 3 and report.count("### Component ") == 3 * 4
    for needle in ("share of the data", "characteristic words", "sampled:", "closest real sentences:", "I(x; c)"):
        assert needle in report
    assert "latent_space.png" in capsys.readouterr().out
    paper_name = DEMVAEConfig.from_pretrained(model_dir).paper_name
    assert len(titles) == 1 and titles[0].startswith(paper_name)  # "DGM-VAE + MI latent space: ...", not "dem"


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
