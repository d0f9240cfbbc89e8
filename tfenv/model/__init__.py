"""The declared fleet model: typed host specs loaded from pyinfra data."""

from tfenv.model.load import load
from tfenv.model.problems import Problem, SpecError, format_problems
from tfenv.model.secrets import SecretRef, SecretValue, read_secret
from tfenv.model.spec import NodeSpec

__all__ = [
    "NodeSpec",
    "Problem",
    "SecretRef",
    "SecretValue",
    "SpecError",
    "format_problems",
    "load",
    "read_secret",
]
