"""The performance targets (issue 14) and the check of a run's figures against them."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Target:
    """``measure`` of case ``case`` (``"ratio"``: aioqueue's first figure over the
    ceiling's; else one of aioqueue's own figures) must be ``op`` ``bound``."""

    case: str
    measure: str
    op: str
    bound: float

    @property
    def text(self) -> str:
        what = "ratio" if self.measure == "ratio" else self.measure
        return f"{self.case} {what} {self.op} {self.bound:g}" + ("x" if what == "ratio" else "")


@dataclass(frozen=True, slots=True)
class Verdict:
    target: Target
    value: float
    met: bool


_OPS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le}

TARGETS = [
    *(
        Target(f"{w} -c {c}", "ratio", ">=", 0.9)
        for w in ("W1", "W2", "W3", "W7")
        for c in (100, 1000)
    ),
    Target("W4 -c 100", "ratio", "<=", 1.1),
    Target("W6 -c 100", "ratio", ">=", 0.8),
    Target("W5 -c 1000", "idle RSS MiB", "<=", 35.0),
]


def check(ratios: Mapping[str, float], figures: Mapping[str, Mapping[str, float]]) -> list[Verdict]:
    """The verdict on each target whose case ran: ``ratios`` by case, and aioqueue's
    ``figures`` by case."""
    verdicts = []
    for target in TARGETS:
        if target.measure == "ratio":
            value = ratios.get(target.case)
        else:
            value = figures.get(target.case, {}).get(target.measure)
        if value is not None:
            verdicts.append(Verdict(target, value, _OPS[target.op](value, target.bound)))
    return verdicts
