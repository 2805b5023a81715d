"""What the command line knows of the model package before loading it: its constants and the config's fields, read
from the package's source.

Importing `modeling_demvae` loads torch and transformers, seconds on a small machine; `--help` and the checks that
run before any work must not wait for them. The source stays the one place these names are defined; a test checks
that what is read here equals what the imported package has.
"""

import ast
import importlib.util
from functools import cache
from pathlib import Path

PACKAGE = "modeling_demvae"
CONFIG_CLASS = "DEMVAEConfig"
DIALOG_CONFIG_CLASS = "DEMVAEDialogConfig"
ANNOTATION_NAMES = {"int": int, "float": float, "bool": bool, "str": str, "dict": dict, "list": list, "None": None,
                    CONFIG_CLASS: dict}  # a nested config (the dialog model's response_config): its dict


def package_dir() -> Path:
    """The model package's folder, found without running its `__init__`."""
    spec = importlib.util.find_spec(PACKAGE)
    return Path(next(iter(spec.submodule_search_locations)))


@cache
def _module_body(module: str) -> tuple[ast.stmt, ...]:
    path = package_dir().joinpath(*module.split(".")).with_suffix(".py")
    return tuple(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)).body)


def constant(module: str, name: str):
    """A module-level literal (tuple, dict, number, string) of `modeling_demvae.<module>`."""
    for node in _module_body(module):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise LookupError(f"{PACKAGE}.{module} defines no literal {name}")


def _config_class(module: str = "configuration_demvae", name: str = CONFIG_CLASS) -> ast.ClassDef:
    return next(node for node in _module_body(module) if isinstance(node, ast.ClassDef) and node.name == name)


def _annotation(node: ast.expr):
    """`int`, `float | int`, `int | None`, ... as the types they name."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _annotation(node.left) | _annotation(node.right)
    if isinstance(node, ast.Constant) and node.value is None:
        return type(None)
    name = ANNOTATION_NAMES[node.id]
    return type(None) if name is None else name


def _fields(node: ast.ClassDef) -> dict:
    return {item.target.id: _annotation(item.annotation) for item in node.body if isinstance(item, ast.AnnAssign)}


@cache
def config_fields() -> dict:
    """`DEMVAEConfig`'s fields in order, name -> annotation (the `__annotations__` of the imported class)."""
    return _fields(_config_class())


@cache
def dialog_config_fields() -> dict:
    """`DEMVAEDialogConfig`'s fields in order, name -> annotation (`response_config`'s: `dict`)."""
    return _fields(_config_class("configuration_dialog", DIALOG_CONFIG_CLASS))


def config_docstring() -> str:
    """`DEMVAEConfig.__doc__` (its Args section documents every field)."""
    return ast.get_docstring(_config_class(), clean=False)


def dialog_config_docstring() -> str:
    return ast.get_docstring(_config_class("configuration_dialog", DIALOG_CONFIG_CLASS), clean=False)


__all__ = ["config_docstring", "config_fields", "constant", "dialog_config_docstring", "dialog_config_fields",
           "package_dir"]
