"""`--mixed-precision auto`: bf16 where the CPU reports bf16 instructions (or the GPU has bf16 arithmetic), float32
elsewhere, as `demvae train` and `demvae evaluate` resolve it and record it. The CPU is made to report what a test
needs through a stand-in for /proc/cpuinfo."""

import json

import pytest
import torch
from accelerate.state import AcceleratorState
from conftest import error_lines, save_tiny_model, write_dialog_corpus
from demvae import precision
from demvae.cli import main as demvae
from demvae.model_card import recorded_training_settings

AVX2_ONLY = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx avx2 fma\n"
AMX = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8481C\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.fixture
def cpu_reports(tmp_path, monkeypatch):
    """Make the CPU report the given /proc/cpuinfo text (None: no such file)."""
    def report(text):
        path = tmp_path / "cpuinfo"
        if text is not None:
            path.write_text(text)
        monkeypatch.setattr(precision, "CPUINFO", path)
    return report


@pytest.mark.parametrize("cpuinfo, flags", [
    (AVX2_ONLY, []), (AMX, ["amx_bf16", "avx512_bf16"]), (ARM, ["bf16"]), (None, []),
], ids=["avx2", "amx", "arm", "no-cpuinfo"])
def test_auto_is_bf16_exactly_where_the_cpu_reports_bf16_instructions(cpu_reports, cpuinfo, flags):
    cpu_reports(cpuinfo)
    assert precision.cpu_bf16_flags() == flags
    assert precision.resolve_mixed_precision("auto", "cpu") == ("bf16" if flags else "no")
    for forced in ("no", "bf16"):  # forcing is allowed anywhere: on a CPU without bf16 units it is only slow
        assert precision.resolve_mixed_precision(forced, "cpu") == forced


def test_this_machine_resolves_auto_from_its_own_flags():
    """auto follows the CPU's own flags: bf16 with AMX or AVX-512 bf16 units, float32 on an AVX2-only CPU."""
    text = precision.CPUINFO.read_text() if precision.CPUINFO.is_file() else ""
    reported = set(text.split())
    assert precision.resolve_mixed_precision("auto", "cpu") == (
        "bf16" if reported & {"amx_bf16", "avx512_bf16", "bf16"} else "no")


def test_a_gpu_counts_only_bf16_without_emulation(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert not precision.has_fast_bf16("cuda")  # emulated bf16 (a pre-Ampere GPU) does not count
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert precision.resolve_mixed_precision("auto", "cuda") == "bf16"
    assert precision.resolve_mixed_precision("fp16", "cuda") == "fp16"


def test_fp16_on_a_cpu_and_unknown_values_are_one_line_errors():
    with pytest.raises(ValueError, match=r"fp16' needs a CUDA GPU.*use auto, bf16 or no"):
        precision.resolve_mixed_precision("fp16", "cpu")
    with pytest.raises(ValueError, match=r"must be one of \('auto', 'no', 'bf16', 'fp16'\), got 'fp32'"):
        precision.resolve_mixed_precision("fp32", "cpu")


@pytest.mark.parametrize("cpuinfo, expected", [(AVX2_ONLY, "no"), (AMX, "bf16")], ids=["avx2", "amx"])
def test_train_resolves_auto_and_records_what_ran(cpu_reports, tmp_path, capsys, cpuinfo,
                                                  expected):
    cpu_reports(cpuinfo)
    text = tmp_path / "train.txt"
    text.write_text("".join(f"the {w} sat on the mat .\na {w} ran home .\n" for w in "cat dog bird cow".split()))
    out = tmp_path / "out"
    assert demvae(["train", "--train-file", str(text), "--validation-fraction", "0.25", "--output-dir", str(out),
                   "--embed-size", "8", "--encoder-hidden-size", "8", "--decoder-hidden-size", "8", "--num-groups",
                   "2", "--num-components", "3", "--batch-size", "4", "--max-steps", "2", "--eval-every", "2",
                   "--num-samples", "0", "--report-to", "none", "--num-threads", "1"]) == 0
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["training_arguments"]["mixed_precision"] == "auto"  # asked for
    assert summary["ran"]["mixed_precision"] == expected
    assert recorded_training_settings(out)["mixed_precision"] == expected  # what a pushed model's card shows
    assert f"mixed precision {expected}" in capsys.readouterr().out


def test_train_refuses_fp16_on_a_cpu_in_one_line(tmp_path, capsys):
    text = tmp_path / "train.txt"
    text.write_text("the cat sat .\na dog ran .\n" * 4)
    assert demvae(["train", "--train-file", str(text), "--validation-fraction", "0.25", "--output-dir",
                   str(tmp_path / "out"), "--batch-size", "2", "--mixed-precision", "fp16"]) == 2
    assert error_lines(capsys.readouterr().err) == [  # after the status line
        "demvae train: error: mixed_precision='fp16' needs a CUDA GPU: a CPU has no fp16 autocast with loss scaling; "
        "use auto, bf16 or no."]


def test_resume_compares_the_precision_that_ran_not_the_one_asked_for(cpu_reports, tmp_path,
                                                                      capsys):
    """A run trained in float32 resumes under auto where auto is float32 (an AVX2-only CPU), and is refused, naming
    the change, where auto would be bf16: the trajectory depends on what runs."""
    text = tmp_path / "train.txt"
    text.write_text("".join(f"the {w} sat on the mat .\na {w} ran home .\n" for w in "cat dog bird cow".split()))
    out = tmp_path / "out"
    run = ["train", "--train-file", str(text), "--validation-fraction", "0.25", "--output-dir", str(out),
           "--embed-size", "8", "--encoder-hidden-size", "8", "--decoder-hidden-size", "8", "--batch-size", "4",
           "--eval-every", "2", "--num-samples", "0", "--report-to", "none", "--num-threads", "1"]
    cpu_reports(AVX2_ONLY)
    assert demvae([*run, "--max-steps", "2", "--mixed-precision", "no"]) == 0
    AcceleratorState._reset_state(reset_partial_state=True)
    cpu_reports(AMX)
    capsys.readouterr()
    assert demvae([*run, "--max-steps", "4", "--resume"]) == 2
    assert "mixed_precision 'no' -> 'bf16'" in capsys.readouterr().err
    AcceleratorState._reset_state(reset_partial_state=True)
    cpu_reports(AVX2_ONLY)
    assert demvae([*run, "--max-steps", "4", "--resume"]) == 0
    assert json.loads((out / "training_summary.json").read_text())["step"] == 4


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("precision")
    corpus = write_dialog_corpus(root / "corpus")
    return save_tiny_model(root / "model", corpus), corpus


def test_evaluate_resolves_auto_and_records_what_ran(cpu_reports, saved, tmp_path, capsys):
    """On an AVX2-only CPU auto is float32: the same NLL as --mixed-precision no. Where the CPU reports bf16 units it
    is bf16: a different NLL (its products were rounded), within 0.1 nats per sentence."""
    model_dir, corpus = saved
    results = {}
    for cpuinfo, option in ((AVX2_ONLY, "auto"), (AVX2_ONLY, "no"), (AMX, "auto")):
        cpu_reports(cpuinfo)
        output = tmp_path / f"{option}-{len(cpuinfo)}.json"
        assert demvae(["evaluate", str(model_dir), "--dataset", str(corpus), "--metrics", "nll", "rppl",
                       "--nll-samples", "5", "--rppl-samples", "30", "--rppl-max-epochs", "1", "--mixed-precision",
                       option, "--output", str(output), "--no-progress"]) == 0
        results[cpuinfo, option] = json.loads(output.read_text())
    float32, auto_on_avx2, auto_with_amx = results[AVX2_ONLY, "no"], results[AVX2_ONLY, "auto"], results[AMX, "auto"]
    assert float32["settings"]["mixed_precision"] == auto_on_avx2["settings"]["mixed_precision"] == "no"
    assert auto_with_amx["settings"]["mixed_precision"] == "bf16"
    assert auto_on_avx2["nll"] == float32["nll"] and auto_on_avx2["rppl"] == float32["rppl"]
    assert auto_with_amx["nll"] != float32["nll"] and abs(auto_with_amx["nll"] - float32["nll"]) < 0.1
    assert demvae(["evaluate", str(model_dir), "--dataset", str(corpus), "--mixed-precision", "fp16"]) == 2
    assert "fp16' needs a CUDA GPU" in capsys.readouterr().err
