"""What tfenv's wide facts share: one script printing marked sections, parsed apart,
and a state object that fixture tests inject as JSON."""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

MARK = "### tfenv:"


def split_sections(lines: list[str], names: tuple[str, ...]) -> dict[str, list[str]]:
    """Lines under each ``### tfenv:NAME`` marker; every name in ``names`` present."""
    out: dict[str, list[str]] = {name: [] for name in names}
    current = None
    for line in lines:
        if line.startswith(MARK):
            current = line[len(MARK) :].strip()
            out.setdefault(current, [])
        elif current is not None:
            out[current].append(line)
    return out


class FromJson(Protocol):
    @classmethod
    def from_json(cls, data: dict) -> Any: ...


S = TypeVar("S", bound=FromJson)


def read_state(host, fact, state_type: type[S], **arguments: Any) -> S:
    """``host``'s ``fact`` as a ``state_type`` (fixture tests inject it as JSON)."""
    data = host.get_fact(fact, **arguments)
    return data if isinstance(data, state_type) else state_type.from_json(data)
