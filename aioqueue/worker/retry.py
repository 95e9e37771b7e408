"""How often, and how long apart, the worker tries again to publish an outcome (pure).

A task's outcome (its result, the next step of its chain, its links, its chord part)
may fail to publish on a healthy connection: a link names a missing exchange, a queue
was deleted, a chord's commit was refused. Such a failure is retried with exponential
backoff a bounded number of times; after the last attempt the worker dead-letters the
message with the reason, so it neither holds a prefetch slot nor loops forever.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ("Backoff",)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: ``first``, then doubling, at most ``longest`` seconds.

    :param attempts: tries in all (the first included).
    """

    attempts: int = 4
    first: float = 0.05
    longest: float = 2.0

    def delays(self) -> list[float]:
        """The pauses between the tries (one fewer than ``attempts``).

        >>> Backoff(attempts=4, first=0.1, longest=0.3).delays()
        [0.1, 0.2, 0.3]
        """
        return [min(self.first * 2**i, self.longest) for i in range(self.attempts - 1)]
