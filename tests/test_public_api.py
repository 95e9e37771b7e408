"""The public surface is explicit, and imports point down the layers."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import aioqueue

PACKAGE = Path(aioqueue.__file__).parent

# Lower layers first; a module may import only modules of a lower rank.
RANKS = {
    "aioqueue._version": 0,
    "aioqueue.exceptions": 0,
    "aioqueue.message": 1,
    "aioqueue.serialization": 1,
    "aioqueue.config": 1,
    "aioqueue.transport.base": 2,
    "aioqueue.transport.memory": 3,
    "aioqueue.transport.amqp": 3,
    "aioqueue.transport": 4,
    "aioqueue.testing": 4,
    "aioqueue.routing": 5,
    "aioqueue.options": 5,
    "aioqueue.result": 6,
    "aioqueue.results": 7,
    "aioqueue.results.rpc": 7,
    "aioqueue.results.disabled": 7,
    "aioqueue.canvas": 8,
    "aioqueue.task": 9,
    "aioqueue.builtins": 10,
    "aioqueue.app": 11,
    "aioqueue.worker.execute": 12,
    "aioqueue.worker.completion": 13,
    "aioqueue.worker.chord": 13,
    "aioqueue.worker.consumer": 14,
    "aioqueue.worker": 15,
    "aioqueue.cli": 16,
    "aioqueue": 17,
}


def _modules() -> list[str]:
    names = ["aioqueue"]
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="aioqueue."):
        names.append(info.name)
    return names


def test_every_module_has_a_rank() -> None:
    assert sorted(_modules()) == sorted(RANKS)


def _imports(name: str) -> set[str]:
    module = importlib.import_module(name)
    assert module.__file__ is not None
    tree = ast.parse(Path(module.__file__).read_text())
    package = name if module.__file__.endswith("__init__.py") else name.rpartition(".")[0]
    found: set[str] = set()
    for node in tree.body:  # module level only: TYPE_CHECKING blocks are skipped
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.startswith("aioqueue"):
                # "from . import execute" names a submodule.
                for alias in node.names:
                    candidate = f"{target}.{alias.name}"
                    found.add(candidate if candidate in RANKS else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("aioqueue"))
    return found


@pytest.mark.parametrize("name", sorted(RANKS))
def test_imports_point_down(name: str) -> None:
    for target in _imports(name):
        assert RANKS[target] < RANKS[name], f"{name} imports {target}"


def test_all_lists_exactly_the_public_names() -> None:
    # Submodules appear as attributes once imported; `annotations` is the __future__ one.
    modules = {n for n, v in vars(aioqueue).items() if type(v).__name__ == "module"}
    public = {n for n in vars(aioqueue) if not n.startswith("_")} - modules - {"annotations"}
    assert set(aioqueue.__all__) - {"__version__"} == public
    assert list(aioqueue.__all__) == sorted(aioqueue.__all__, key=lambda n: (n.islower(), n))


def test_public_names_are_documented() -> None:
    for name in aioqueue.__all__:
        obj = getattr(aioqueue, name)
        if callable(obj):
            assert obj.__doc__, f"aioqueue.{name} has no docstring"
