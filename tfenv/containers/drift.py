"""The declared container against the running one, option by option.

Every row of the option table (:mod:`tfenv.containers.options`) is compared,
declared against observed, in the same form. A difference is data,
:class:`Drift`, so the operation, ``--dry`` and reports all say exactly which
field changed.

Environment variables and labels come partly from the image, so only the
names tfenv set (recorded in a label on the container) are compared: a
variable removed from the data is drift too. Secrets are compared by their
seals' digest, never by value.
"""

from __future__ import annotations

from dataclasses import dataclass

from tfenv.containers.desired import DesiredContainer
from tfenv.containers.options import OPTIONS
from tfenv.facts.tf_node import ObservedContainer


@dataclass(frozen=True)
class Drift:
    field: str
    declared: str
    observed: str

    def __str__(self) -> str:
        return f"{self.field} (declared {self.declared}, running {self.observed})"


def _show(value: object) -> str:
    """A value for people: ``{k=v}``, ``[a, b]``, and a record (a list in a list) as ``a:b:c``."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={v}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(":".join(str(p) for p in v) if isinstance(v, list | tuple)
                               else str(v) for v in value) + "]"  # fmt: skip
    return str(value)


def _plain(values: dict, key: str, _words: str) -> object:
    return values.get(key, "(unset)")


def _masked(values: dict, key: str, words: str) -> str:
    """Name the variable, never its value: an environment value may be a secret
    someone pasted there (secrets belong in files: see ``secrets``)."""
    return f"({words})" if key in values else "(unset)"


def drift(desired: DesiredContainer, observed: ObservedContainer) -> list[Drift]:
    """Every option whose running value differs from the declared one, in table order."""
    found = []
    for option in OPTIONS:
        declared, current = option.declared(desired), option.observed_value(observed, desired)
        if declared == current:
            continue
        if option.secret:
            found.append(Drift(option.field, "a new value", "the previous value"))
        elif isinstance(declared, dict) and isinstance(current, dict):
            keys = sorted(k for k in set(declared) | set(current)
                          if declared.get(k) != current.get(k))  # fmt: skip
            shown = _masked if option.hide_values else _plain
            found.append(Drift(
                f"{option.field}: {', '.join(keys)}",
                _show({k: shown(declared, k, "a new value") for k in keys}),
                _show({k: shown(current, k, "another value") for k in keys}),
            ))  # fmt: skip
        else:
            found.append(Drift(option.field, _show(declared), _show(current)))
    return found
