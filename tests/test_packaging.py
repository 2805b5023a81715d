"""The installed package: the wheel holds only the project's own import names, and works outside the checkout."""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def build_isolation() -> list[str]:
    """Build with this Python's setuptools when it reads pyproject.toml's license (>= 68), else let pip fetch one."""
    try:
        recent = int(version("setuptools").split(".")[0]) >= 68
    except PackageNotFoundError:
        recent = False
    return ["--no-build-isolation"] if recent else []


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the sources (an in-tree build would reuse a stale build/ folder)."""
    source, folder = tmp_path_factory.mktemp("source") / "demvae", tmp_path_factory.mktemp("dist")
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "runs", "benchmarks", "*.egg-info", "__pycache__", ".*_cache"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", *build_isolation(),
                             "--wheel-dir", str(folder), str(source)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return next(folder.glob("demvae-*.whl"))


def test_the_wheel_installs_only_the_projects_own_names(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith((".dist-info", ".data"))}
    assert top_level == {"demvae", "modeling_demvae"}
    # the presets, the Accelerate config and the card templates travel as package data
    for path in ("demvae/configuration/ptb-dgm-vae-mi.json", "demvae/configuration/accelerate/multi_gpu.yaml",
                 "demvae/model_cards/demvae_card_template.md", "demvae/model_cards/demvae_dialog_card_template.md",
                 "demvae/__main__.py", "demvae/hub.py"):
        assert path in names, path
    assert not any(name.startswith("modeling_demvae/") and name.endswith("hub.py") for name in names)


@pytest.mark.slow
def test_the_installed_command_runs_from_an_empty_folder(wheel, tmp_path):
    """A virtualenv outside the checkout (dependencies from this Python, demvae only from the wheel): the command
    and the module entry point work from an empty folder, and training writes where it is told."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    # this interpreter's packages as plain paths (--system-site-packages reaches the base interpreter's only, not a
    # virtualenv's); their .pth files are not read, so an editable install of the checkout stays out
    here = {sysconfig.get_paths()[kind] for kind in ("purelib", "platlib")}
    there = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           check=True, capture_output=True, text=True).stdout.strip()
    Path(there, "dependencies_of_the_test.pth").write_text("\n".join(sorted(here)) + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)], check=True, timeout=300)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               TQDM_DISABLE="1")

    def run(*command):
        result = subprocess.run(command, capture_output=True, text=True, cwd=empty, env=env, timeout=600)
        assert result.returncode == 0, f"{command}: {result.stderr[-3000:]}"
        return result.stdout

    where = run(str(python), "-c", "import demvae, modeling_demvae; print(demvae.__file__, modeling_demvae.__file__)")
    assert all(path.startswith(str(venv)) for path in where.split()), where
    assert "reproduce" in run(str(python), "-m", "demvae", "--help")
    assert "--init-from" in run(shutil.which("demvae", path=env["PATH"]), "train", "--help")
    run("demvae", "train", "--max-steps", "20", "--eval-every", "10", "--num-samples", "0", "--report-to", "none",
        "--output-dir", "model")
    assert (empty / "model" / "config.json").is_file() and not (empty / "benchmarks").exists()
