"""A griffe extension: the docstrings' Sphinx roles become mkdocstrings cross-references.

mkdocstrings' ``sphinx`` docstring style parses the ``:param x:``, ``:raises E:`` and
``:return:`` fields but leaves inline roles (``:class:`~aioqueue.Queue```) as text. Here
each role is resolved the way Sphinx would, within the scope of the documented object:

- a name inside aioqueue that exists becomes an optional cross-reference: a link when the
  page documents the target, plain code when it is internal and undocumented;
- a name inside aioqueue that does not exist (a typo, a renamed object) becomes a
  required cross-reference, so ``mkdocs build --strict`` fails and names it;
- a name outside aioqueue (the standard library, a builtin) stays plain code.

``~`` shortens the title to the last part and ``title <target>`` gives one, as in Sphinx.
The docstrings themselves are not changed; only griffe's copy of them is.
"""

from __future__ import annotations

import builtins
import functools
import importlib.util
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|exc|mod|data|obj|const):`([^`]+)`")
_EXPLICIT = re.compile(r"^(?P<title>.*?)\s*<(?P<target>[^<>]+)>$")


class SphinxRoles(griffe.Extension):
    """Rewrites the roles of every docstring in a package once the package is loaded."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        for obj in _objects(pkg):
            docstring = obj.docstring
            if docstring is not None and ":" in docstring.value:
                docstring.value = _ROLE.sub(
                    functools.partial(_replace, obj=obj, pkg=pkg, loader=loader), docstring.value
                )


def _objects(obj: griffe.Object) -> list[griffe.Object]:
    found = [obj]
    for member in obj.members.values():
        if not member.is_alias:
            found.extend(_objects(member))  # type: ignore[arg-type]
    return found


def _replace(
    match: re.Match[str], *, obj: griffe.Object, pkg: griffe.Module, loader: griffe.GriffeLoader
) -> str:
    return _reference(match[1], obj, pkg, loader)


def _reference(
    text: str, obj: griffe.Object, pkg: griffe.Module, loader: griffe.GriffeLoader
) -> str:
    explicit = _EXPLICIT.match(text)
    if explicit:
        title, target = explicit["title"], explicit["target"]
    else:
        target = text.removeprefix("~")
        title = target.rsplit(".", 1)[-1] if text.startswith("~") else target
    first, _, rest = target.partition(".")
    if first == pkg.name:
        path: str | None = target
    else:
        try:
            path = obj.resolve(first) + (f".{rest}" if rest else "")
        except griffe.NameResolutionError:
            path = None
    if path is None:
        if hasattr(builtins, first) or importlib.util.find_spec(first) is not None:
            return f"`{title}`"  # outside the package: the standard library, a builtin
        return f"[`{title}`][{target}]"  # no such name here: strict mode reports it
    if path.split(".", 1)[0] != pkg.name:
        return f"`{title}`"
    try:
        loader.modules_collection[path]
    except KeyError:
        return f"[`{title}`][{path}]"  # not in the package: strict mode reports it
    return f'<autoref identifier="{path}" optional><code>{title}</code></autoref>'
