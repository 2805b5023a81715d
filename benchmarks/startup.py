"""How long a user waits for the `demvae` command: `--help` of every subcommand, and the first line of every command
of the README's command table, against a model trained like the Quickstart's (fewer steps: the wait for the first
line does not depend on them); `demvae train` in an empty folder.

Each is timed in a fresh process, the median of --repeats; the first line is the first line on stdout or stderr,
after which the command is stopped. The same run times the baseline a command would pay if it loaded its libraries
before saying anything (`python -c "import torch, transformers, modeling_demvae"`) and a bare interpreter.

  python benchmarks/startup.py                  # prints a table, writes benchmarks/results/startup_cpu_<cpu>.json
"""

import argparse
import json
import os
import re
import select
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from demvae.cli import COMMANDS
from demvae.precision import cpu_model_name

REPO = Path(__file__).resolve().parents[1]
TABLE_ROW = re.compile(r"^\| `(demvae [^`]+)`")  # the README's command table: | `demvae ...` | what |


def readme_commands() -> list[str]:
    """The commands of the README's command table, as written there."""
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    return [match.group(1) for line in lines if (match := TABLE_ROW.match(line))]


def first_line_seconds(argv: list[str], cwd: Path, env: dict) -> tuple[float, str]:
    """Seconds until the process prints its first line (stdout or stderr), and that line; then it is stopped."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        line = b""
        while not line.endswith((b"\n", b"\r")):
            ready, _, _ = select.select([process.stdout], [], [], 120)
            chunk = os.read(process.stdout.fileno(), 1) if ready else b""
            if not chunk:
                break
            line += chunk
        return time.perf_counter() - start, line.decode(errors="replace").strip()
    finally:
        process.kill()
        process.wait()


def median_seconds(argv, cwd, env, repeats: int) -> tuple[float, str]:
    runs = [first_line_seconds(argv, cwd, env) for _ in range(repeats)]
    return statistics.median(seconds for seconds, _ in runs), runs[0][1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TQDM_DISABLE="1")
    demvae = [sys.executable, "-m", "demvae"]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        subprocess.run([*demvae, "train", "--max-steps", "30", "--eval-every", "15", "--num-samples", "0"],
                       cwd=folder, env=env, check=True, capture_output=True)
        baselines = {"python (bare interpreter)": [sys.executable, "-c", "print()"],
                     "import torch, transformers, modeling_demvae": [
                         sys.executable, "-c", "import torch, transformers, modeling_demvae; print()"]}
        for name, argv in baselines.items():
            seconds, _ = median_seconds(argv, folder, env, args.repeats)
            rows.append({"what": name, "kind": "baseline", "seconds": seconds})
        for name in ["", *COMMANDS]:
            argv = [*demvae, *([name] if name else []), "--help"]
            rows.append({"what": f"demvae {name} --help".replace("  ", " "), "kind": "help",
                         "seconds": median_seconds(argv, folder, env, args.repeats)[0]})
        fresh = folder / "fresh"  # `demvae train` starts in a folder without a model
        fresh.mkdir()
        for command in readme_commands():
            argv = shlex.split(command)
            cwd = fresh if argv[1] == "train" else folder
            seconds, line = median_seconds([*demvae, *argv[1:]], cwd, env, args.repeats)
            rows.append({"what": command, "kind": "first line", "seconds": seconds, "line": line[:100]})
    cpu = cpu_model_name()
    print(f"CPU: {cpu}, {os.cpu_count()} cores; median of {args.repeats} fresh processes each\n")
    width = max(len(row["what"]) for row in rows)
    print(f"{'what':<{width}}  {'kind':<10}  seconds  first line")
    for row in rows:
        print(f"{row['what']:<{width}}  {row['kind']:<10}  {row['seconds']:7.2f}  {row.get('line', '')}")
    output = args.output or REPO / "benchmarks" / "results" / (
        "startup_cpu_" + re.sub(r"[^a-z0-9]+", "_", cpu.lower()).strip("_") + ".json")
    output.write_text(json.dumps({"cpu": cpu, "cores": os.cpu_count(), "repeats": args.repeats, "rows": rows},
                                 indent=2) + "\n")
    print(f"\nwrote {output}")


if __name__ == "__main__":
    main()
