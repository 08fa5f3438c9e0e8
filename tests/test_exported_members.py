"""The public surface is exactly what __all__ says, and every private module declares its own."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import watchtower_refresh


def test_all_is_exactly_the_public_surface() -> None:
    public = {name for name in dir(watchtower_refresh) if not name.startswith("_")}
    public -= {module.name for module in pkgutil.iter_modules(watchtower_refresh.__path__)}
    assert set(watchtower_refresh.__all__) - {"__version__"} == public


def test_every_module_declares_all_and_its_names_exist() -> None:
    for module_info in pkgutil.walk_packages(watchtower_refresh.__path__, "watchtower_refresh."):
        if module_info.name.endswith("__main__"):
            continue
        module = importlib.import_module(module_info.name)
        assert isinstance(module.__all__, list), module_info.name
        for name in module.__all__:
            assert hasattr(module, name), f"{module_info.name}.{name}"


def test_the_testing_module_is_imported_by_name_only() -> None:
    # watchtower_refresh.testing needs moto; the package itself must not pull it in.
    assert "testing" not in watchtower_refresh.__all__
    code = "import sys, watchtower_refresh; print('moto' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "False"
