"""PEP 517 build backend: setuptools' own, leaving nothing behind in the project folder.

setuptools builds a wheel in the source tree (``build/`` and ``alliance_dashboard.egg-info/``), so
``pip install .`` used to leave both in the user's folder. This wrapper (pyproject.toml ``[build-system]``,
``backend-path``) runs setuptools' hooks unchanged and removes what they created that was not there before.
Editable installs keep setuptools' behaviour (a developer's checkout).
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (every hook; the non-editable ones are wrapped below)

_LEFT_BEHIND = ("build", "alliance_dashboard.egg-info")


def _tidy(hook):
    @functools.wraps(hook)
    def run(*args, **kwargs):
        fresh = [p for p in map(Path, _LEFT_BEHIND) if not p.exists()]
        try:
            return hook(*args, **kwargs)
        finally:
            for p in fresh:
                shutil.rmtree(p, ignore_errors=True)

    return run


build_wheel = _tidy(_setuptools.build_wheel)
build_sdist = _tidy(_setuptools.build_sdist)
prepare_metadata_for_build_wheel = _tidy(_setuptools.prepare_metadata_for_build_wheel)
get_requires_for_build_wheel = _tidy(_setuptools.get_requires_for_build_wheel)
get_requires_for_build_sdist = _tidy(_setuptools.get_requires_for_build_sdist)
