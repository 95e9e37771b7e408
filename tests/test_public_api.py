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
    "aioqueue.options": 2,
    "aioqueue.request": 1,
    "aioqueue.retries": 1,
    "aioqueue.ratelimit": 1,
    "aioqueue.beat.schedule": 3,
    "aioqueue.beat.crontab": 3,
    "aioqueue.beat.entry": 4,
    "aioqueue.beat.scheduler": 15,
    "aioqueue.beat": 16,
    "aioqueue.transport.backoff": 1,
    "aioqueue.transport.base": 3,
    "aioqueue.transport.memory": 4,
    "aioqueue.transport.amqp": 4,
    "aioqueue.transport": 5,
    "aioqueue.testing": 5,
    "aioqueue.topology": 6,
    "aioqueue.routing": 7,
    "aioqueue.overview": 7,
    "aioqueue.deadletters": 7,
    "aioqueue.sentevents": 8,
    "aioqueue.results": 7,
    "aioqueue.results.base": 8,
    "aioqueue.result": 9,
    "aioqueue.results.disabled": 10,
    "aioqueue.canvas": 11,
    "aioqueue.task": 12,
    "aioqueue.registry": 13,
    "aioqueue.builtins": 13,
    "aioqueue.broker": 14,
    "aioqueue.control": 15,
    "aioqueue.results.rpc": 14,
    "aioqueue.worker.finished": 2,
    "aioqueue.events": 1,
    "aioqueue.eventstream": 4,
    "aioqueue.worker.events": 4,
    "aioqueue.worker.limits": 15,
    "aioqueue.worker.inspection": 15,
    "aioqueue.worker.commands": 15,
    "aioqueue.worker.pool": 15,
    "aioqueue.worker.retry": 15,
    "aioqueue.worker.timeouts": 15,
    "aioqueue.worker.tasklog": 15,
    "aioqueue.worker.blocking": 16,
    "aioqueue.worker.execute": 16,
    "aioqueue.worker.revocations": 16,
    "aioqueue.worker.pidbox": 17,
    "aioqueue.worker.completion": 17,
    "aioqueue.worker.chord": 17,
    "aioqueue.worker.consumer": 18,
    "aioqueue.worker": 19,
    "aioqueue.app": 20,
    "aioqueue.cli": 21,
    "aioqueue": 22,
}

# The runtimes (and what they are made of) never see the composition root.
RUNTIMES = ("aioqueue.worker", "aioqueue.beat")


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
    return _imports_of_source(
        name, Path(module.__file__).read_text(), module.__file__.endswith("__init__.py")
    )


def _imports_of_source(name: str, source: str, is_package: bool = False) -> set[str]:
    tree = ast.parse(source)
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    # Every import: module level, TYPE_CHECKING blocks and inside functions alike.
    for node in ast.walk(tree):
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


def test_the_walk_sees_imports_inside_functions_and_type_checking_blocks() -> None:
    # The layer test is only as good as its walk: it must see every kind of import.
    assert "aioqueue.app" in _imports_of_source(
        "aioqueue.worker.consumer",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..app import App\n",
    )
    assert "aioqueue.app" in _imports_of_source(
        "aioqueue.worker.consumer", "def f():\n    from aioqueue.app import App\n"
    )


@pytest.mark.parametrize("name", [n for n in RANKS if n.startswith(RUNTIMES)])
def test_runtimes_do_not_depend_on_the_app(name: str) -> None:
    assert "aioqueue.app" not in _closure(name), f"{name} reaches the app"


def _closure(name: str) -> set[str]:
    seen: set[str] = set()
    todo = [name]
    while todo:
        for target in _imports(todo.pop()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


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
