"""The one `diffvm` namespace: nothing imports a top-level folder as a bare package."""

import ast
import importlib
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL = ("interp", "memory", "programs", "tasks", "controllers")


def _python_files():
    for folder in (*TOP_LEVEL, "tests", "benchmarks", "scripts"):
        yield from (ROOT / folder).rglob("*.py")


@pytest.mark.parametrize("path", sorted(_python_files()), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_bare_top_level_imports(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            assert name.split(".")[0] not in TOP_LEVEL, (
                f"{path.relative_to(ROOT)}:{node.lineno} imports {name!r}; write diffvm.{name}"
            )


@pytest.mark.parametrize("package", TOP_LEVEL)
def test_each_folder_is_a_diffvm_subpackage_with_a_public_api(package):
    module = importlib.import_module(f"diffvm.{package}")
    assert Path(module.__file__).parent.name == package
    assert isinstance(module.__all__, list)
    for name in module.__all__:
        assert hasattr(module, name), f"diffvm.{package}.__all__ names missing {name!r}"


def test_diffvm_is_a_namespace_without_a_root_folder():
    import diffvm

    assert getattr(diffvm, "__file__", None) is None
    assert version("diffvm")
