"""CPU threads of a command: --num-threads, else $OMP_NUM_THREADS, else the cores among local processes; the
caller's setting comes back afterwards (tests and notebooks run several commands in one process)."""

import json

import pytest
import torch
from conftest import save_tiny_model, write_dialog_corpus
from demvae.cli import main
from demvae.threads import cpu_threads, default_threads


def test_the_default_is_the_option_then_omp_num_threads_then_the_cores_per_local_process(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_threads() == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "3")
    assert default_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert default_threads() == 5
    assert default_threads(1) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the CPU threads are left alone")
def test_threads_are_set_within_and_restored_after_even_on_an_error():
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with pytest.raises(RuntimeError), cpu_threads(other):
        assert torch.get_num_threads() == other
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the CPU threads are left alone")
def test_evaluate_runs_with_num_threads_and_gives_the_setting_back(tmp_path, monkeypatch):
    corpus = write_dialog_corpus(tmp_path / "corpus")
    model_dir = save_tiny_model(tmp_path / "model", corpus)
    seen, set_threads = [], torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (seen.append(n), set_threads(n)))
    before = torch.get_num_threads()
    output = tmp_path / "eval.json"
    assert main(["evaluate", str(model_dir), "--dataset", str(corpus), "--metrics", "nll", "--nll-samples", "3",
                 "--num-threads", "1", "--output", str(output), "--no-progress"]) == 0
    assert json.loads(output.read_text())["nll"] > 0
    assert seen == [1, before] and torch.get_num_threads() == before
