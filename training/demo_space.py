"""A folder that runs the demo as a Hugging Face Space (sdk: gradio): app.py loads the model by its Hub id and the
sentences placed here, once, so the Space starts without the corpus. The Space carries this package's source
(`demvae/` and `modeling_demvae/`), which is not on PyPI, and requirements.txt lists what the package needs."""

import importlib.metadata
import importlib.resources
import shutil
import sys
from pathlib import Path

from .demo_placement import Placement

PLACEMENT_FILE = "placed_sentences.safetensors"
SPACE_FILES = ("app.py", "requirements.txt", "README.md", PLACEMENT_FILE)
SOURCE_SUFFIXES = {".py", ".json", ".yaml", ".md"}

APP = '''"""The DEM-VAE component explorer for {model_id}, written by `demvae demo --space-dir`."""

from demvae.demo_app import space_app

space_app("{model_id}", "{placement}").launch()
'''


def requirements() -> list[str]:
    """The package's own requirements and its `demo` extra's (Gradio), as installed here."""
    lines = []
    for requirement in importlib.metadata.requires("demvae") or []:
        name, _, marker = requirement.partition(";")
        if not marker or marker.strip().replace(" ", "") in ('extra=="demo"', "extra=='demo'"):
            lines.append(name.strip())
    return lines


def space_readme(model_id: str) -> str:
    """The Space's README: the metadata the Hub reads (sdk, app_file, the model it shows) and a line on what it is."""
    import gradio  # the installed version is the one the Space asks for

    return "\n".join([
        "---",
        f"title: DEM-VAE explorer {model_id.split('/')[-1]}"[:60],
        "emoji: 🧭",
        "colorFrom: indigo",
        "colorTo: green",
        "sdk: gradio",
        f"sdk_version: {gradio.__version__}",
        f"python_version: '{sys.version_info.major}.{sys.version_info.minor}'",
        "app_file: app.py",
        "models:",
        f"- {model_id}",
        "short_description: Pick a mixture component and see what it generates",
        "pinned: false",
        "---",
        "",
        f"# DEM-VAE component explorer: [{model_id}](https://huggingface.co/{model_id})",
        "",
        "Each mixture component of this DEM-VAE is a kind of sentence: pick one (or a label) and generate from it, "
        "read a sentence of your own, or decode the line between two sentences. Written by `demvae demo "
        f"--space-dir`; `{PLACEMENT_FILE}` holds the real sentences placed in the latent space (test sentences of "
        "the model's corpus: check that corpus's license before making the Space public).",
        "",
    ])


def copy_sources(space: Path) -> None:
    """`demvae/` (the application, its configuration and card templates) and `modeling_demvae/` into the Space."""
    trees = {"demvae": importlib.resources.files("demvae"), "modeling_demvae": importlib.resources.files(
        "modeling_demvae")}
    for sub in ("configuration", "model_cards"):
        trees[f"demvae/{sub}"] = importlib.resources.files(f"demvae.{sub}")
    for target in ("demvae", "modeling_demvae"):
        shutil.rmtree(space / target, ignore_errors=True)
    for target, source in trees.items():
        for path in Path(str(source)).rglob("*"):
            if path.is_file() and path.suffix in SOURCE_SUFFIXES and "__pycache__" not in path.parts:
                destination = space / target / path.relative_to(Path(str(source)))
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, destination)


def write_space(space: Path, model_id: str, placement: Placement) -> list[Path]:
    """The Space's files in `space` (created when missing); returns them."""
    space.mkdir(parents=True, exist_ok=True)
    (space / "app.py").write_text(APP.format(model_id=model_id, placement=PLACEMENT_FILE), encoding="utf-8")
    (space / "requirements.txt").write_text("\n".join(requirements()) + "\n", encoding="utf-8")
    (space / "README.md").write_text(space_readme(model_id), encoding="utf-8")
    placement.save(space / PLACEMENT_FILE)
    copy_sources(space)
    return sorted(path for path in space.rglob("*") if path.is_file())


__all__ = ["PLACEMENT_FILE", "SPACE_FILES", "write_space"]
