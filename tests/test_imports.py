"""Every tfenv module imports (pyinfra checks facts' and operations' signatures at import)."""

import importlib
import pkgutil

import pytest

import tfenv

MODULES = sorted(m.name for m in pkgutil.walk_packages(tfenv.__path__, "tfenv."))


@pytest.mark.parametrize("module", MODULES)
def test_module_imports(module: str) -> None:
    importlib.import_module(module)
