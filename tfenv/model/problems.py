"""Problems found in declared data: what, where, and what to do about it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tfenv.errors import TfenvError


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one host's declared data.

    ``got`` is a short rendering of the offending value, or ``None`` where the
    value must not be echoed (anything that could be a secret).
    """

    host: str
    field: str
    expected: str
    got: str | None = None

    def __str__(self) -> str:
        text = f"{self.host}: {self.field}: expected {self.expected}"
        if self.got is not None:
            text += f", got {self.got}"
        return text


class SpecError(TfenvError):
    """Raised when declared data cannot become a NodeSpec; carries every problem."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems = list(problems)
        super().__init__(format_problems(self.problems))


def format_problems(problems: Iterable[Problem], max_hosts: int = 5) -> str:
    """One line per distinct problem; the same problem on many hosts is folded
    into one line that names the first few hosts and counts the rest."""
    grouped: dict[tuple[str, str, str | None], list[str]] = {}
    for problem in problems:
        key = (problem.field, problem.expected, problem.got)
        grouped.setdefault(key, []).append(problem.host)
    lines = []
    for (field, expected, got), hosts in grouped.items():
        shown = ", ".join(hosts[:max_hosts])
        if len(hosts) > max_hosts:
            shown += f" (+{len(hosts) - max_hosts} more)"
        lines.append(str(Problem(shown, field, expected, got)))
    return "\n".join(lines)
