"""Corpora of any size (issue 32): `demvae train --max-steps 20` on synthetic corpora of 1M and 10M sentences
(5-30 words each, Zipf-distributed over 50,000 words: about 100 bytes a sentence, as in the issue's report).

For each size, two starts of the same command in fresh output folders: the first prepares the corpus into an empty
cache, the second reuses it. Recorded per start: the peak resident memory of the whole process tree (the command
and the processes that tokenize for it, polled every 0.05 s), the seconds until the training loop began ("Training
on ..."; on the first start, that is the preparation with the start-up) and until its first step. The model is the
default one; the validation share is 0.1% and no samples are printed, so that 20 steps and one validation on two
cores take a few minutes rather than the hour a 5% validation of 10M sentences would.

  python benchmarks/corpus_scale.py                       # 1M and 10M; prints a table, writes
                                                          # benchmarks/results/corpus_scale_cpu_<cpu>.json
  python benchmarks/corpus_scale.py --sentences 1000000   # one size
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from demvae.precision import cpu_model_name

REPO = Path(__file__).resolve().parents[1]
VOCABULARY = 50_000
COMMAND = ["--max-steps", "20", "--validation-fraction", "0.001", "--num-samples", "0", "--report-to", "none"]


def write_corpus(path: Path, sentences: int, seed: int = 0) -> int:
    """`sentences` lines of 5-30 words drawn from a Zipf law over VOCABULARY made-up words; the file's bytes."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = np.array(["".join(rng.choice(letters, size=rng.integers(2, 9))) for _ in range(VOCABULARY)])
    weights = 1 / np.arange(1, VOCABULARY + 1)
    weights /= weights.sum()
    with open(path, "w", encoding="utf-8") as handle:
        for start in range(0, sentences, 100_000):
            count = min(100_000, sentences - start)
            lengths = rng.integers(5, 31, size=count)
            drawn = words[rng.choice(VOCABULARY, size=int(lengths.sum()), p=weights)]
            ends = np.cumsum(lengths)
            handle.write("".join(" ".join(drawn[end - length:end]) + "\n" for end, length in zip(ends, lengths,
                                                                                                  strict=True)))
    return path.stat().st_size


MEMORY_FIELDS = ("Rss", "Pss", "Pss_Anon", "Pss_File")


def tree_memory(pid: int) -> dict[str, int]:
    """Resident (Rss) and proportional (Pss: shared pages divided among their sharers) bytes of a process and all its
    descendants, and Pss split into anonymous memory and file pages (the memory-mapped corpus and libraries, which
    the kernel can drop and read again). The processes that `datasets` forks to tokenize share the parent's pages,
    which the sum of their Rss counts once per process."""
    total, stack = dict.fromkeys(MEMORY_FIELDS, 0), [pid]
    while stack:
        current = stack.pop()
        try:
            rollup = Path(f"/proc/{current}/smaps_rollup").read_text()
            for name in MEMORY_FIELDS:
                total[name] += int(re.search(rf"^{name}:\s+(\d+) kB", rollup, re.M).group(1)) * 1024
            stack += [int(child) for task in Path(f"/proc/{current}/task").iterdir()
                      for child in (task / "children").read_text().split()]
        except (OSError, AttributeError):  # the process ended meanwhile
            continue
    return total


def peak_tree_memory(process: subprocess.Popen, every: float = 0.05) -> dict[str, int]:
    """The peak of each `tree_memory` field of a running process, polled every `every` seconds until it ends."""
    peak = dict.fromkeys(MEMORY_FIELDS, 0)
    while process.poll() is None:
        peak = {name: max(peak[name], value) for name, value in tree_memory(process.pid).items()}
        time.sleep(every)
    return peak


def tree_cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process so far (its ended children's included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def timed_start(argv: list[str], env: dict) -> dict:
    """Run one start; its peak tree RSS and when it began training and finished its first step."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    marks, log = {}, []

    def read():
        buffer = b""
        while chunk := os.read(process.stdout.fileno(), 65536):
            buffer += chunk
            *lines, buffer = re.split(rb"[\r\n]", buffer)
            for line in lines:
                text = line.decode(errors="replace")
                log.append(text)
                if text.startswith("Training on") and "training" not in marks:
                    marks["training"] = time.perf_counter() - start
                if re.match(r"Training:\s+\d+%.*\| *1/\d+", text) and "first_step" not in marks:
                    marks["first_step"] = time.perf_counter() - start
                    marks["first_step_cpu"] = tree_cpu_seconds(process.pid)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    peak = peak_tree_memory(process)
    reader.join()
    if process.returncode:
        sys.exit("\n".join(log[-30:]) + f"\nthe command failed with status {process.returncode}")
    return {**{f"peak_{name.lower()}_mb": round(value / 2**20) for name, value in peak.items()},
            "seconds_to_training": round(marks.get("training", -1), 1),
            "seconds_to_first_step": round(marks.get("first_step", -1), 1),
            "cpu_seconds_to_first_step": round(marks.get("first_step_cpu", -1), 1),
            "seconds_total": round(time.perf_counter() - start, 1),
            "reused": [line for line in log if line.startswith("Reusing the")]}


def work_folder_and_output(benchmark: str, work_dir: str | None, output: str | None) -> tuple[Path, str, Path]:
    """A benchmark's work folder (a new temporary one unless given), the CPU's name and the results file (unless
    given: benchmarks/results/BENCHMARK_cpu_<cpu>.json)."""
    work = Path(work_dir or tempfile.mkdtemp(prefix=f"{benchmark.replace('_', '-')}-"))
    work.mkdir(parents=True, exist_ok=True)
    cpu = cpu_model_name()
    slug = re.sub(r"[^a-z0-9]+", "_", cpu.lower()).strip("_")
    return work, cpu, Path(output or REPO / "benchmarks" / "results" / f"{benchmark}_cpu_{slug}.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--num-threads", type=int, default=1, help="--num-threads of the training command")
    parser.add_argument("--work-dir", help="Where the corpora, caches and models go (default: a temporary folder).")
    parser.add_argument("--output", help="JSON file (default: benchmarks/results/corpus_scale_cpu_<cpu>.json)")
    args = parser.parse_args()
    work, cpu, output = work_folder_and_output("corpus_scale", args.work_dir, args.output)
    results = {"cpu": cpu, "cores": os.cpu_count(), "num_threads": args.num_threads,
               "command": "demvae train --train-file CORPUS " + " ".join(COMMAND), "sizes": {}}
    for sentences in args.sentences:
        corpus = work / f"corpus-{sentences}.txt"
        if not corpus.is_file():
            write_corpus(corpus, sentences)
        env = dict(os.environ, DEMVAE_CACHE_DIR=str(work / f"cache-{sentences}"), HF_HUB_OFFLINE="1",
                   PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(args.num_threads))
        argv = [sys.executable, "-m", "demvae", "train", "--train-file", str(corpus), *COMMAND,
                "--num-threads", str(args.num_threads)]
        row = results["sizes"][str(sentences)] = {"corpus_mb": round(corpus.stat().st_size / 2**20)}
        for start in ("first_start", "second_start"):  # each start's numbers written as soon as they exist
            row[start] = timed_start([*argv, "--output-dir", str(work / f"{start}-{sentences}")], env)
            print(f"{sentences:>11,} sentences, {start.replace('_', ' ')}: {json.dumps(row[start])}", flush=True)
            output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{cpu}, {os.cpu_count()} cores, --num-threads {args.num_threads}; memory: peak PSS of the process tree "
          "(its anonymous part, without the file pages)")
    print(f"{'sentences':>11} {'first start: memory':>24} {'training after':>15} {'second start: memory':>24} "
          f"{'first step after':>17} {'(CPU s)':>8}")
    for sentences, row in results["sizes"].items():
        first, second = row["first_start"], row["second_start"]
        print(f"{int(sentences):>11,} {first['peak_pss_mb']:>8} MB ({first['peak_pss_anon_mb']:>6} MB) "
              f"{first['seconds_to_training']:>13} s "
              f"{second['peak_pss_mb']:>8} MB ({second['peak_pss_anon_mb']:>6} MB) "
              f"{second['seconds_to_first_step']:>15} s {second['cpu_seconds_to_first_step']:>8}")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
