"""transformers' own common model tests (`ModelTesterMixin`), taken from the sdist of the installed transformers.

The wheel ships no tests; the sdist on the package index ships `tests/test_modeling_common.py`. It is downloaded once
with pip into a cache folder (`$XDG_CACHE_HOME/demvae`, default `~/.cache/demvae`) and only that file is extracted,
into a package of its own. The two mixins it imports from files the sdist does not ship (`exporters/test_export.py`,
`generation/test_utils.py`) are given as empty classes: this project tests export and generation itself.
"""

import importlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import transformers

PACKAGE = "transformers_sdist_tests"
MISSING_MIXINS = {  # modules the common tests import that the sdist does not ship, and the class each must hold
    "exporters/test_export.py": "ExportTesterMixin",
    "generation/test_utils.py": "GenerationTesterMixin",
}


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "demvae"


def _download_sdist(version: str, folder: Path) -> Path:
    """The transformers sdist of `version`, fetched with pip from the package index into `folder`."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               f"transformers=={version}", "--dest", str(folder), "--quiet", "--disable-pip-version-check"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    archives = sorted(folder.glob(f"transformers-{version}.tar.gz"))
    if result.returncode or not archives:
        reason = (result.stderr.strip().splitlines() or ["no archive written"])[-1]
        raise RuntimeError(f"pip download of the transformers {version} sdist failed: {reason}")
    return archives[0]


def _extract_common_tests(archive: Path, version: str, target: Path) -> None:
    """tests/test_modeling_common.py of the sdist as the package `target`/transformers_sdist_tests, with the
    missing mixins as empty classes."""
    member = f"transformers-{version}/tests/test_modeling_common.py"
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".staging-"))
    try:
        package = staging / PACKAGE
        package.mkdir()
        with tarfile.open(archive) as tar:
            source = tar.extractfile(member)
            if source is None:
                raise RuntimeError(f"{archive.name} holds no {member}")
            (package / "test_modeling_common.py").write_bytes(source.read())
        (package / "__init__.py").write_text("")
        for path, class_name in MISSING_MIXINS.items():
            module = package / path
            module.parent.mkdir(exist_ok=True)
            (module.parent / "__init__.py").write_text("")
            module.write_text(f"class {class_name}:\n    \"\"\"Not in the sdist: an empty mixin.\"\"\"\n")
        staging.rename(target)  # atomic: a half-written cache is never seen
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def common_tests_module():
    """`test_modeling_common` of the installed transformers, downloading and caching it on first use.

    Raises RuntimeError saying why when it cannot be had (no network, no such version on the index)."""
    version = transformers.__version__
    target = cache_dir() / f"transformers-{version}-tests"
    if not (target / PACKAGE / "test_modeling_common.py").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as download:
            archive = _download_sdist(version, Path(download))
            if not target.exists():
                _extract_common_tests(archive, version, target)
    if str(target) not in sys.path:
        sys.path.insert(0, str(target))
    return importlib.import_module(f"{PACKAGE}.test_modeling_common")
