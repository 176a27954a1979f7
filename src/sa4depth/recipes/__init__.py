"""Named training recipes shipped with the package (YAML files beside this module).

`recipe_path("synthetic_cpu")` is the CPU recipe of the demo and the benchmarks; real-data configs live in
the repository's ``configs/`` and keep the paper's settings.
"""

from __future__ import annotations

from pathlib import Path

from sa4depth.errors import InputError

RECIPES_DIR = Path(__file__).resolve().parent


def recipe_path(name: str) -> Path:
    """The YAML file of the packaged recipe ``name`` (e.g. ``"synthetic_cpu"``).

    Example:
        >>> recipe_path("synthetic_cpu").name
        'synthetic_cpu.yaml'
    """
    path = RECIPES_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
        raise InputError(name, f"no such recipe; packaged recipes: {', '.join(known)}")
    return path
