#!/usr/bin/env bash
# The installed package, as a user gets it: build the wheel, install it into a new virtualenv outside the checkout,
# and run the user's commands from an empty folder. Prints the wheel's top-level names, then one line per command.
#
#   bash tests/check_wheel.sh [--isolated]
#
# By default the virtualenv sees this Python's site-packages for the dependencies (torch, transformers, ...), and
# demvae itself only from the wheel (checked). --isolated makes a virtualenv without them and installs the CPU torch
# 2.13.0 and the wheel's dependencies from the package index: slower, and what a user on a new machine does.
# DEMVAE_DATA_DIR (default: ../shared/data beside the checkout) names the corpora folder, given to `reproduce`.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
data_dir=${DEMVAE_DATA_DIR:-$repo/../shared/data}
work=$(mktemp -d "${TMPDIR:-/tmp}/demvae-wheel-XXXXXX")
trap 'rm -rf "$work"' EXIT

# this Python's setuptools when it reads pyproject.toml's license (>= 68), else pip fetches one
isolation=$(python -c 'from importlib.metadata import version; print("--no-build-isolation" if int(version("setuptools").split(".")[0]) >= 68 else "")' 2>/dev/null || true)
# from a copy of the tracked sources: an in-tree build would reuse a stale build/ folder
mkdir "$work/source" && git -C "$repo" ls-files -z | (cd "$repo" && xargs -0 cp --parents -t "$work/source")
python -m pip wheel --quiet --no-deps $isolation --wheel-dir "$work/dist" "$work/source" >/dev/null
wheel=$(ls "$work"/dist/demvae-*.whl)
python - "$wheel" <<'PY'
import sys, zipfile
names = sorted({name.split("/")[0] for name in zipfile.ZipFile(sys.argv[1]).namelist()
                if not name.split("/")[0].endswith((".dist-info", ".data"))})
print("top-level names:", " ".join(names))
PY

if [[ "${1:-}" == "--isolated" ]]; then
    python -m venv "$work/venv"
    "$work/venv/bin/python" -m pip install --quiet torch==2.13.0
    "$work/venv/bin/python" -m pip install --quiet "$wheel"
else
    python -m venv --system-site-packages "$work/venv"
    "$work/venv/bin/python" -m pip install --quiet --no-deps "$wheel"
fi
venv_python="$work/venv/bin/python"
mkdir "$work/empty"
cd "$work/empty"
export PATH="$work/venv/bin:$PATH" HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 TQDM_DISABLE=1
unset PYTHONPATH

"$venv_python" - "$work/venv" <<'PY'
import sys
import demvae, modeling_demvae
for module in (demvae, modeling_demvae):
    assert module.__file__.startswith(sys.argv[1]), f"{module.__name__} comes from {module.__file__}, not the wheel"
print("imports: demvae and modeling_demvae from the wheel")
PY
run() { echo "\$ $*"; "$@" > "$work/log" 2>&1 || { tail -20 "$work/log"; echo "FAILED: $*"; exit 1; }; }
run python -m demvae --help
run accelerate launch --num_processes 1 --cpu -m demvae train --help
run demvae train --max-steps 50 --num-samples 0 --report-to none --output-dir model
run demvae evaluate model --dataset synthetic --max-sentences 50 --nll-samples 5 --rppl-preset smoke \
    --rppl-max-epochs 1 --no-progress --output evaluation.json
run demvae reproduce --budget smoke --tables ptb --runs ptb-gm-vae --data-dir "$data_dir"
test -f benchmarks/results.md && test -f model/config.json && test -f evaluation.json
echo "written in the current folder: $(cd "$work/empty" && find . -maxdepth 2 -name '*.json' -o -maxdepth 2 -name '*.md' | sort | tr '\n' ' ')"
echo "wheel check passed"
