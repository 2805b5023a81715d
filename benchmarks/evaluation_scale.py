"""Evaluation over a large test set (issue 32, item 5): the peak memory and time of `demvae evaluate` with
`--metrics bleu` and with `--metrics homogeneity collapse`, on a tiny model trained briefly on the synthetic corpus
and a test file of 200,000 synthetic sentences with their sentence types as the "mode" label column (.jsonl).

Memory is the peak PSS of the process (`corpus_scale.tree_memory`, polled every 0.05 s) and its anonymous part.
A first evaluation of 30 sentences prepares the test file into the cache, so that the measured ones only read it.

  python benchmarks/evaluation_scale.py                   # writes benchmarks/results/evaluation_scale_cpu_<cpu>.json
  python benchmarks/evaluation_scale.py --sentences 20000 --output /tmp/small.json

To measure another version of the package, put its folders first on PYTHONPATH (modeling_demvae/, and training/
as demvae/) and run the script from outside the repository: `python -m demvae` puts the current folder first on the
path, so from the repository's root this checkout's modeling_demvae would be the one measured.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from corpus_scale import peak_tree_memory, work_folder_and_output

from modeling_demvae.synthetic import generate_sentences

MODEL = ["--embed-size", "32", "--encoder-hidden-size", "32", "--decoder-hidden-size", "32", "--num-groups", "3",
         "--num-components", "5", "--latent-size", "4", "--max-sentence-length", "24", "--batch-size", "32",
         "--max-steps", "1000", "--num-samples", "0", "--report-to", "none", "--mixed-precision", "no"]
RUNS = {"bleu": ["bleu"], "homogeneity": ["homogeneity", "collapse"]}


def write_test_file(path: Path, sentences: int) -> None:
    """`sentences` synthetic sentences, one JSON object a line: {"text": ..., "mode": its sentence type}."""
    texts, modes = generate_sentences(sentences, seed=1234)
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps({"text": text, "mode": mode}) + "\n" for text, mode in zip(texts, modes,
                                                                                                 strict=True))


def demvae(arguments: list[str], env: dict, log: Path) -> dict:
    """Run `demvae ARGUMENTS`, its output into `log`; its peak memory (MB) and seconds."""
    start = time.perf_counter()
    with open(log, "wb") as handle:
        process = subprocess.Popen([sys.executable, "-m", "demvae", *arguments], env=env, stdout=handle,
                                   stderr=subprocess.STDOUT)
        peak = peak_tree_memory(process)
    if process.returncode:
        sys.exit(log.read_text(errors="replace")[-3000:] + f"\ndemvae {' '.join(arguments)} failed with status "
                 f"{process.returncode} (its output: {log})")
    return {**{f"peak_{name.lower()}_mb": round(value / 2**20) for name, value in peak.items()},
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=200_000, help="test sentences (200,000)")
    parser.add_argument("--work-dir", help="Where the model, the test file and the cache go (default: a temporary "
                                           "folder; give the same one to reuse them).")
    parser.add_argument("--output", help="JSON file (default: benchmarks/results/evaluation_scale_cpu_<cpu>.json)")
    args = parser.parse_args()
    work, cpu, output = work_folder_and_output("evaluation_scale", args.work_dir, args.output)
    env = dict(os.environ, DEMVAE_CACHE_DIR=str(work / "cache"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    model, test_file = work / "model", work / f"test-{args.sentences}.jsonl"
    if not (model / "config.json").is_file():
        demvae(["train", "--dataset", "synthetic", "--output-dir", str(model), "--num-threads", "1", *MODEL],
               env, work / "train.log")
    if not test_file.is_file():
        write_test_file(test_file, args.sentences)
    common = [str(model), "--test-file", str(test_file), "--num-threads", "1", "--mixed-precision", "no",
              "--no-progress"]
    demvae(["evaluate", *common, "--metrics", "collapse", "--max-sentences", "30", "--output",
            str(work / "prepare.json")], env, work / "prepare.log")
    results = {"cpu": cpu, "num_threads": 1, "test_sentences": args.sentences, "runs": {}}
    for name, metrics in RUNS.items():
        scores = work / f"{name}.json"
        run = demvae(["evaluate", *common, "--metrics", *metrics, "--output", str(scores)], env,
                     work / f"{name}.log")
        run["results"] = {key: value for key, value in json.loads(scores.read_text()).items() if key != "settings"}
        results["runs"][name] = run
        print(f"--metrics {' '.join(metrics)}: peak PSS {run['peak_pss_mb']} MB ({run['peak_pss_anon_mb']} MB "
              f"anonymous), {run['seconds']} s", flush=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
