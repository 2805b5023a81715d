"""Every command, one line (issue 11): bad options, broken model folders, presets and corpus files across `train`,
`generate`, `evaluate`, `inspect`, `push` and `reproduce` end with a non-zero exit status and one line that names
the problem, never a traceback. Most fail at argument checking, in milliseconds."""

import json
import re
import shutil

import pytest
import torch
from conftest import error_lines
from demvae.cli import main as demvae

from modeling_demvae.synthetic import write_synthetic_corpus

TINY = ["--embed-size", "8", "--encoder-hidden-size", "8", "--decoder-hidden-size", "8", "--num-groups", "2",
        "--num-components", "3", "--max-sentence-length", "12", "--batch-size", "4", "--num-samples", "0",
        "--report-to", "none", "--num-threads", "1", "--max-steps", "4", "--eval-every", "2"]


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def edit_config(**changes):
    def edit(path):
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
    return edit


BROKEN_MODELS = {  # folder name -> (file, how it is broken)
    "no_config": ("config.json", lambda path: path.unlink()),
    "config_not_json": ("config.json", lambda path: path.write_text("{oops")),
    "config_a_list": ("config.json", lambda path: path.write_text("[1, 2]")),
    "config_wrong_type": ("config.json", edit_config(embed_size="32")),
    "config_other_shape": ("config.json", edit_config(num_components=5)),
    "weights_truncated": ("model.safetensors", truncate),
    "no_weights": ("model.safetensors", lambda path: path.unlink()),
    "tokenizer_truncated": ("tokenizer.json", truncate),
    "no_tokenizer": ("tokenizer.json", lambda path: path.unlink()),
    "tokenizer_without_vocabulary": ("tokenizer.json", lambda path: path.write_text("{}")),
}

FILES = {  # name -> content of the bad presets and corpus files
    "list_preset.json": b"[1, 2]",
    "typed_preset.json": b'{"embed_size": "32"}',
    "broken_preset.json": b'{"embed_size": 32,',
    "malformed.jsonl": b'{"text": "a cat sat"}\n{"text": "a dog\n',
    "number.jsonl": b'{"text": "a cat sat"}\n{"text": 42}\n',
    "list_line.jsonl": b'{"text": "a cat sat"}\n["a", "list"]\n',
    "latin1.txt": "the cat sat\nthe caf\u00e9 was open\n".encode("latin-1"),
    "fields.csv": b"text,label\na cat sat,1\na dog, ran,2\n",
    "quotes.csv": b'text,label\n"a cat sat,1\n',
    "a_file": b"not a folder",
}


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, str]:
    """Paths the cases name: a corpus, a trained model with its checkpoints, broken copies of it, bad files."""
    root = tmp_path_factory.mktemp("bad_inputs")
    corpus = write_synthetic_corpus(root / "corpus", num_train=48, num_valid=8, num_test=8)
    model = root / "model"
    assert demvae(["train", "--dataset", str(corpus), *TINY, "--output-dir", str(model)]) == 0
    found = {"corpus": str(corpus), "model": str(model), "missing": str(root / "missing"), "tmp": str(root)}
    for name, (file, damage) in BROKEN_MODELS.items():
        folder = shutil.copytree(model, root / name, ignore=shutil.ignore_patterns("checkpoints"))
        damage(folder / file)
        found[name] = str(folder)
    for name, content in FILES.items():
        (root / name).write_bytes(content)
        found[name.replace(".", "_")] = str(root / name)
    return found


TRAIN = ["train", "--dataset", "{corpus}", *TINY, "--output-dir", "{tmp}/out"]
CASES = [
    # train: numbers, checked before any work
    ("train-max-grad-norm-nan", [*TRAIN, "--max-grad-norm", "nan"], "max_grad_norm must be a positive finite number"),
    ("train-learning-rate-inf", [*TRAIN, "--learning-rate", "inf"], "learning_rate must be a positive finite number"),
    ("train-learning-rate-negative", [*TRAIN, "--learning-rate", "-0.1"], "learning_rate must be a positive"),
    ("train-keep-checkpoints-0", [*TRAIN, "--keep-checkpoints", "0"], "keep_checkpoints must be a positive integer"),
    ("train-keep-checkpoints-negative", [*TRAIN, "--keep-checkpoints", "-2"], "keep_checkpoints must be a positive"),
    ("train-num-threads-negative", [*TRAIN, "--num-threads", "-1"], "--num-threads: must be a positive integer"),
    ("train-num-threads-0", [*TRAIN, "--num-threads", "0"], "--num-threads: must be a positive integer"),
    ("train-lr-decay-0", [*TRAIN, "--lr-decay", "0"], r"lr_decay must be a number in \(0, 1\]"),
    ("train-lr-decay-above-1", [*TRAIN, "--lr-decay", "1.5"], r"lr_decay must be a number in \(0, 1\]"),
    ("train-lr-decay-patience-0", [*TRAIN, "--lr-decay-patience", "0"], "lr_decay_patience must be a positive"),
    ("train-early-stopping-negative", [*TRAIN, "--early-stopping-patience", "-1"],
     "early_stopping_patience must be a non-negative integer"),
    ("train-checkpoint-every-0", [*TRAIN, "--checkpoint-every", "0"], "checkpoint_every must be a positive integer"),
    ("train-batch-size-0", [*TRAIN, "--batch-size", "0"], "batch_size must be a positive integer"),
    ("train-max-steps-0", [*TRAIN, "--max-steps", "0"], "max_steps must be a positive integer"),
    ("train-seed-too-large", [*TRAIN, "--seed", str(2**32)], r"seed must be an integer in \[0, 4294967295\]"),
    ("train-validation-fraction-1.5", [*TRAIN, "--validation-fraction", "1.5"],
     r"validation_fraction must be a number in \(0, 1\)"),
    ("train-validation-fraction-nan", [*TRAIN, "--validation-fraction", "nan"], "validation_fraction must be"),
    ("train-min-frequency-0", [*TRAIN, "--min-frequency", "0"], "min_frequency must be a positive integer"),
    ("train-num-samples-negative", [*TRAIN, "--num-samples", "-1"], "--num-samples: must be a non-negative integer"),
    ("train-dispersion-weight-nan", [*TRAIN, "--dispersion-weight", "nan"], "dispersion_weight must be a finite"),
    ("train-kl-slope-inf", [*TRAIN, "--kl-annealing-slope", "inf"], "kl_annealing_slope must be a finite number"),
    ("train-dropout-1", [*TRAIN, "--dropout", "1"], r"dropout must lie in \[0, 1\)"),
    ("train-categorical-size-1", [*TRAIN, "--prior-family", "categorical", "--categorical-size", "1"],
     r"categorical_size \(V\) must be an integer >= 2, got 1"),
    ("train-categorical-not-dem", [*TRAIN, "--prior-family", "categorical", "--variant", "semi"],
     "prior_family='categorical' is a mixture prior: it needs variant='dem', got variant='semi'"),
    ("train-prior-family-unknown", [*TRAIN, "--prior-family", "poisson"],
     r"--prior-family: invalid choice: 'poisson' \(choose from 'gaussian', 'categorical'\)"),
    ("train-not-a-number", [*TRAIN, "--learning-rate", "fast"], "--learning-rate: invalid float value: 'fast'"),
    ("train-fp16-on-a-cpu", [*TRAIN, "--mixed-precision", "fp16"], "mixed_precision='fp16' needs a CUDA GPU"),
    ("train-resume-and-overwrite", [*TRAIN, "--resume", "--overwrite"], "resume and overwrite exclude each other"),
    # train: presets
    ("preset-a-list", [*TRAIN, "--config", "{list_preset_json}"], "holds a JSON list; a preset is one object"),
    ("preset-wrong-type", ["train", "--config", "{typed_preset_json}"],
     "setting 'embed_size' in preset .* must be an integer, got '32'"),
    ("preset-not-json", [*TRAIN, "--config", "{broken_preset_json}"], "is not valid JSON"),
    # train: output folders
    ("train-output-is-a-file", [*TRAIN[:-2], "--output-dir", "{a_file}"], "is a file, not a folder"),
    ("train-output-below-a-file", [*TRAIN[:-2], "--output-dir", "{a_file}/out"], "a_file is a file, not a folder"),
    ("train-over-a-model", [*TRAIN[:-2], "--output-dir", "{model}"],
     "already holds a model and checkpoints of an earlier run; --resume continues it, --overwrite replaces it"),
    ("train-resume-other-settings", [*TRAIN[:-2], "--output-dir", "{model}", "--resume", "--learning-rate", "0.5"],
     "belongs to a run with other settings .*learning_rate 0.001 -> 0.5"),
    # train: corpus files name the file and the line
    ("corpus-malformed-jsonl", [*TRAIN, "--dataset", "{malformed_jsonl}"], r"malformed.jsonl, line 2: not valid JSON"),
    ("corpus-text-a-number", [*TRAIN, "--dataset", "{number_jsonl}"], "number.jsonl, line 2: 'text' holds int 42"),
    ("corpus-line-a-list", [*TRAIN, "--dataset", "{list_line_jsonl}"], "list_line.jsonl, line 2: a JSON list"),
    ("corpus-not-utf8", [*TRAIN, "--train-file", "{latin1_txt}"], r"latin1.txt, line 2: not UTF-8 text \(byte 0xe9"),
    ("corpus-csv-extra-field", [*TRAIN, "--dataset", "{fields_csv}"], "fields.csv, line 3: 3 fields where the header"),
    ("corpus-csv-bad-quotes", [*TRAIN, "--dataset", "{quotes_csv}"], "quotes.csv, line 2: not valid CSV"),
    # train --init-from a broken model
    ("init-from-missing", [*TRAIN, "--init-from", "{missing}"], "no model at .*missing: there is no such folder"),
    ("init-from-truncated", [*TRAIN, "--init-from", "{weights_truncated}"],
     "cannot load the model at .*weights_truncated: model.safetensors is damaged or truncated"),
    ("init-from-no-tokenizer", [*TRAIN, "--init-from", "{no_tokenizer}"], "no tokenizer.json beside the model at"),
    # generate: numbers and model folders
    ("generate-top-p-0", ["generate", "{model}", "--do-sample", "--top-p", "0"],
     r"--top-p: must be a number in \(0, 1\]"),
    ("generate-top-p-1.5", ["generate", "{model}", "--do-sample", "--top-p", "1.5"], r"--top-p: must be a number in"),
    ("generate-temperature-nan", ["generate", "{model}", "--temperature", "nan"],
     "--temperature: must be a positive finite number, got nan"),
    ("generate-top-k-0", ["generate", "{model}", "--top-k", "0"], "--top-k: must be a positive integer"),
    ("generate-num-beams-0", ["generate", "{model}", "--num-beams", "0"], "--num-beams: must be a positive integer"),
    ("generate-max-new-tokens-0", ["generate", "{model}", "--max-new-tokens", "0"], "--max-new-tokens: must be a pos"),
    ("generate-num-samples-0", ["generate", "{model}", "--num-samples", "0"], "--num-samples: must be a positive"),
    ("generate-seed-negative", ["generate", "{model}", "--seed", "-1"], "--seed: must be a non-negative integer"),
    ("generate-component-out-of-range", ["generate", "{model}", "--component", "7,0"],
     r"component indices must lie in \[0, 3\), got \[0, 7\]"),
    ("generate-missing", ["generate", "{missing}"], "no model at .*missing: there is no such folder"),
    ("generate-no-config", ["generate", "{no_config}"], "no model found at .*no_config: expected a folder with config"),
    ("generate-config-not-json", ["generate", "{config_not_json}"], "config_not_json: config.json is not valid JSON"),
    ("generate-config-a-list", ["generate", "{config_a_list}"], "config_a_list: config.json holds a JSON list"),
    ("generate-config-wrong-type", ["generate", "{config_wrong_type}"], "field 'embed_size'.* expected int, got str"),
    ("generate-config-other-shape", ["generate", "{config_other_shape}"],
     "model.safetensors does not fit config.json: .* has shape"),
    ("generate-weights-truncated", ["generate", "{weights_truncated}"],
     "weights_truncated: model.safetensors is damaged or truncated"),
    ("generate-no-weights", ["generate", "{no_weights}"], "no_weights: .*no file named model.safetensors"),
    ("generate-tokenizer-truncated", ["generate", "{tokenizer_truncated}"], "tokenizer.json is not valid JSON"),
    ("generate-no-tokenizer", ["generate", "{no_tokenizer}"], "no tokenizer.json beside the model at .*no_tokenizer"),
    ("generate-tokenizer-without-vocabulary", ["generate", "{tokenizer_without_vocabulary}"],
     "no usable tokenizer beside the model at .*an entry 'added_tokens' is missing"),
    # evaluate
    ("evaluate-output-is-config", ["evaluate", "{model}", "--dataset", "{corpus}", "--output", "{model}/config.json"],
     "config.json is a file of the model saved in"),
    ("evaluate-output-is-a-folder", ["evaluate", "{model}", "--dataset", "{corpus}", "--output", "{tmp}"],
     "is a folder; give a file path"),
    ("evaluate-nll-samples-0", ["evaluate", "{model}", "--nll-samples", "0"], "--nll-samples: must be a positive"),
    ("evaluate-num-threads-0", ["evaluate", "{model}", "--num-threads", "0"], "--num-threads: must be a positive"),
    ("evaluate-max-sentences-negative", ["evaluate", "{model}", "--max-sentences", "-3"], "--max-sentences: must be"),
    ("evaluate-no-such-device", ["evaluate", "{model}", "--device", "banana"], "--device: not a torch device"),
    ("evaluate-weights-truncated", ["evaluate", "{weights_truncated}", "--dataset", "{corpus}", "--output",
                                    "{tmp}/e.json"], "cannot load the model at .*weights_truncated"),
    ("evaluate-malformed-corpus", ["evaluate", "{model}", "--dataset", "{malformed_jsonl}", "--output",
                                   "{tmp}/e.json"], "malformed.jsonl, line 2: not valid JSON"),
    # inspect
    ("inspect-output-is-a-file", ["inspect", "{model}", "--dataset", "{corpus}", "--output-dir", "{a_file}"],
     "is a file, not a folder"),
    ("inspect-max-groups-0", ["inspect", "{model}", "--max-groups", "0"], "--max-groups: must be a positive integer"),
    ("inspect-gpu-that-is-not-there", ["inspect", "{model}", "--device", "cuda:7"], "--device: 'cuda:7': this machine"),
    ("inspect-config-a-list", ["inspect", "{config_a_list}", "--dataset", "{corpus}", "--output-dir", "{tmp}/i"],
     "config.json holds a JSON list"),
    # push: the folder is checked before the Hub is asked
    ("push-config-not-json", ["push", "{config_not_json}", "me/model"], "config.json is not valid JSON"),
    ("push-weights-truncated", ["push", "{weights_truncated}", "me/model"], "model.safetensors is damaged"),
    ("push-no-config", ["push", "{no_config}", "me/model"], "no model found at .*no_config: expected a folder"),
    # reproduce
    ("reproduce-jobs-0", ["reproduce", "--jobs", "0"], "--jobs: must be a positive integer"),
    ("reproduce-report-over-a-model", ["reproduce", "--report", "{model}/tokenizer.json"],
     "tokenizer.json is a file of the model saved in"),
]


@pytest.mark.parametrize("argv, expected", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_one_line_naming_the_problem(places, capsys, argv, expected):
    if "fp16" in argv and torch.cuda.is_available():
        pytest.skip("fp16 runs on a GPU")
    argv = [part.format(**places) for part in argv]
    capsys.readouterr()
    try:
        status = demvae(argv)
    except SystemExit as exit_:  # argparse's own checks
        status = exit_.code
    err = capsys.readouterr().err
    lines = error_lines(err)
    assert status != 0 and "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith(f"demvae {argv[0]}: error: "), lines
    assert re.search(expected, lines[0]), lines[0]


def test_the_table_is_wide():
    assert len(CASES) >= 40 and len({case[0] for case in CASES}) == len(CASES)
    assert {case[1][0] for case in CASES} == {"train", "generate", "evaluate", "inspect", "push", "reproduce"}
