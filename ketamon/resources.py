"""Access to the shipped ``resources/`` folder.

In an installed wheel the top-level ``resources/`` is mapped to ``ketamon/resources`` at build
time; in a source checkout it sits next to the package. Both are read through
:mod:`importlib.resources` traversables.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path


def resources_root() -> Traversable:
    packaged = files("ketamon") / "resources"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parent.parent / "resources"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError("ketamon resources are missing: reinstall the package")


def resource(*parts: str) -> Traversable:
    node = resources_root()
    for p in parts:
        node = node / p
    return node


def read_text(*parts: str) -> str:
    return resource(*parts).read_text(encoding="utf-8")
