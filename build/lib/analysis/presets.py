""""Reproduce a paper" presets: which demo to load and every option the paper set (issue 11 §5).

A :class:`Preset` is pure data: the demo file, the options per page (a dict per page key, e.g.
``{"lagged": {...}}`` with the keys of the Lagged/Pooled option panel, ``ui/options.py``) and a
checklist of what was set and why, quoting the paper. The papers' presets are data, in
``resources/presets.toml``; :data:`PRESETS` is the registry they are loaded into, :func:`register`
adds one, :func:`get` looks one up.
:meth:`Preset.lag_options` turns the ``"lagged"`` options into :class:`analysis.lagged.LagOptions`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from analysis.lagged import LagOptions

__all__ = ["PRESETS", "Preset", "get", "page_presets", "register"]


def _freeze(d: dict):
    return MappingProxyType({k: (_freeze(v) if isinstance(v, dict) else v) for k, v in d.items()})


@dataclass(frozen=True)
class Preset:
    """One paper's analysis: ``options`` maps a page key to that page's option dict; ``checklist`` is a
    tuple of ``(setting, value, why)`` rows shown to the user."""

    key: str
    title: str
    seed: str
    demo_file: str
    options: MappingProxyType
    checklist: tuple
    expected: str = ""

    def __post_init__(self):
        object.__setattr__(self, "options", _freeze(dict(self.options)))
        object.__setattr__(self, "checklist", tuple(tuple(r) for r in self.checklist))
        for row in self.checklist:
            if len(row) != 3:
                raise ValueError("Each checklist row must be (setting, value, why).")

    def page_options(self, page: str) -> dict:
        """A mutable copy of the options for one page (empty when the preset sets none there)."""
        return dict(self.options.get(page, {}))

    def lag_options(self) -> LagOptions:
        """The ``"lagged"`` options as :class:`LagOptions` (window → ``sessions``)."""
        o = self.page_options("lagged")
        window = o.pop("window", None)
        o["directions"] = tuple(o.get("directions", LagOptions().directions))
        fields = set(LagOptions().to_dict())
        return LagOptions(sessions=tuple(window) if window else None, **{k: v for k, v in o.items() if k in fields})

    def checklist_frame(self):
        import pandas as pd

        return pd.DataFrame(list(self.checklist), columns=["setting", "value", "why"])


PRESETS: dict[str, Preset] = {}
_FILE = Path(__file__).parent / "resources" / "presets.toml"


def register(preset: Preset) -> Preset:
    """Add a preset to the registry (a key may be registered once)."""
    if preset.key in PRESETS:
        raise ValueError(f"A preset with key {preset.key!r} is already registered.")
    PRESETS[preset.key] = preset
    return preset


def get(key: str) -> Preset:
    try:
        return PRESETS[key]
    except KeyError:
        raise ValueError(f"Unknown preset {key!r}; known: {', '.join(PRESETS)}.") from None


def _load(path: Path = _FILE) -> None:
    """Register the presets of ``resources/presets.toml`` (TOML arrays become tuples, except the lagged
    ``directions`` list; a convergence preset's ``rules`` table becomes a SampleRules)."""
    from analysis.convergence import SampleRules

    def tuples(d):
        return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}

    for p in tomllib.loads(path.read_text(encoding="utf-8"))["preset"]:
        options = {}
        for page, o in p.pop("options").items():
            if page == "lagged":
                o = {**o, "window": tuple(o["window"])} if "window" in o else o
            elif page == "convergence":
                o = {**o, "rules": SampleRules(**tuples(o.get("rules", {}))), "options": tuples(o.get("options", {}))}
            options[page] = o
        register(Preset(options=options, **p))


_load()


def page_presets(page: str) -> dict[str, Preset]:
    """The presets that set options on one page (e.g. ``"convergence"``), by key."""
    return {k: p for k, p in PRESETS.items() if page in p.options}
