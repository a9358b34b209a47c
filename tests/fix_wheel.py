"""The package as a user gets it: `make dist`'s archives, and a fresh venv with the wheel.

``built_dist`` runs ``python -m build`` (what `make dist` runs) once per
session into a temporary directory. ``wheel_venv`` creates a virtualenv with
no access to this checkout and ``pip install``s the built wheel into it, with
the machine's ordinary pip configuration (an index or PyPI for Django,
psycopg and websockets). Tests run its Python from outside the checkout with
a clean environment, so nothing is imported from the working tree.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.django_site import REPO
from tests.timing import scaled


@dataclass(frozen=True)
class Dist:
    """The two archives `make dist` builds."""

    wheel: Path
    sdist: Path


@dataclass(frozen=True)
class WheelVenv:
    """A virtualenv with the built wheel installed, and the environment to run it in."""

    root: Path
    python: Path
    env: dict[str, str]

    def run(self, *args: str, cwd: Path, check: bool = True,
            **extra: str) -> subprocess.CompletedProcess[str]:
        """Run this venv's Python with `args` in `cwd`; stdout and stderr captured."""
        return subprocess.run([str(self.python), *args], cwd=cwd, env={**self.env, **extra},
                              check=check, capture_output=True, text=True,
                              timeout=scaled(180))


def clean_env(**extra: str) -> dict[str, str]:
    """os.environ without what would let a child import the checkout or the suite's venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE", "PYTHONHOME")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def built_dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """`python -m build` of this checkout (the sdist, and the wheel built from it)."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
                   check=True, capture_output=True, timeout=scaled(300))
    wheels, sdists = list(out.glob("*.whl")), list(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in out.iterdir())
    return Dist(wheels[0], sdists[0])


@pytest.fixture(scope="session")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory, built_dist: Dist) -> Iterator[WheelVenv]:
    """A fresh venv (outside the checkout) with the wheel and its dependencies installed."""
    root = tmp_path_factory.mktemp("wheel-venv")
    venv.EnvBuilder(with_pip=True).create(root / "venv")
    python = root / "venv" / "bin" / "python"
    env = clean_env(PATH=f"{root / 'venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(built_dist.wheel)],
                   cwd=root, env=env, check=True, timeout=scaled(600))
    yield WheelVenv(root, python, env)
