"""Options declared once (analysis.options): messages, cleaning of raw values, constraints, and the round trip
of every declared option through widget value → URL text → options → script arguments."""

import itertools
from dataclasses import dataclass, fields

import pytest

from analysis import lagged, meta, report, rscript
from analysis.lagged import LagOptions
from analysis.meta import PoolOptions
from analysis.options import Constraint, Declared, Option, clean, declared, impossible, option, script_args
from analysis.simulate import simulate_collection
from tests.tabs_util import open_with_link
from ui import declared as udecl
from ui import options as uopts

#: every options class and the values its round trip should try for options without a list of values
OPTION_CLASSES = (LagOptions, PoolOptions)
EXTRA = {"sessions": [None, (2, 6), (1, 1)], "covariates": [(), ("treatment",)]}


@dataclass(frozen=True)
class _Toy(Declared):
    kind: str = option("choice", "a", choices=("a", "b", "c"), label="Kind", url="k", labels={"c": "see"})
    on: bool = option("flag", False, label="On", url="on")
    n: int = option("int", 2, lo=1, hi=5, label="N", url="n")
    x: float = option("float", 0.5, lo=0.0, hi=1.0, label="X", url="x")
    win: tuple | None = option("range", None, lo=1, label="Window", url="w")
    many: tuple = option("choices", ("a",), choices=("a", "b"), label="Many", url="m")
    cols: tuple = option("columns", (), label="Columns", reserved=("study",), reserved_reason="it is a core column")

    CONSTRAINTS = (Constraint(("on", "kind"), lambda o: o.on and o.kind == "c", "on needs kind 'a' or 'b'."),)


def test_every_kind_checks_and_normalises():
    import numpy as np

    t = _Toy(kind="b", on=np.bool_(True), n=np.int64(3), x=1, win=[2, 4], many=["b", "a"], cols="age")
    assert (t.kind, t.on, t.n, t.x, t.win, t.many, t.cols) == ("b", True, 3, 1.0, (2, 4), ("a", "b"), ("age",))
    assert type(t.on) is bool and type(t.n) is int and type(t.x) is float
    bad = [({"kind": "d"}, "kind must be one of 'a', 'b', 'c'; got 'd'."),
           ({"on": "yes"}, "on must be True or False; got 'yes'."),
           ({"n": 6}, "n must be a whole number from 1 to 5; got 6."),
           ({"n": 2.5}, "n must be a whole number from 1 to 5; got 2.5."),
           ({"n": True}, "n must be a whole number"),
           ({"x": float("nan")}, "x must be a number from 0 to 1; got nan."),
           ({"win": (4, 2)}, "win must be None or (first, last): two whole numbers ≥ 1 with first ≤ last"),
           ({"win": (0, 2)}, "≥ 1"),
           ({"many": ()}, "many must name at least one of 'a', 'b'."),
           ({"many": ("a", "z")}, "each of many must be one of 'a', 'b'; got 'z'."),
           ({"many": ("a", "a")}, "many must not repeat a value."),
           ({"cols": ("study",)}, "'study' cannot be in cols: it is a core column."),
           ({"cols": (3,)}, "cols must be column names (text); got 3."),
           ({"on": True, "kind": "c"}, "on needs kind 'a' or 'b'.")]
    for kw, msg in bad:
        with pytest.raises(ValueError) as exc:
            _Toy(**kw)
        assert msg in str(exc.value), (kw, str(exc.value))


def test_clean_keeps_good_values_and_names_each_dropped_one():
    good, msgs = clean(_Toy, {"k": "b", "on": "1", "n": "9", "x": "0.25", "w": "3-1", "m": "b,a", "zz": "1"},
                       text=True)
    assert good == {"kind": "b", "on": True, "x": 0.25, "many": ("a", "b")}
    assert len(msgs) == 3 and any("n='9'" in m for m in msgs) and any("w='3-1'" in m for m in msgs)
    assert any("unknown option 'zz'" in m for m in msgs)
    # a combination no model can fit: the dependent option (the constraint's first) is dropped, with the reason
    good, msgs = clean(_Toy, {"kind": "c", "on": True})
    assert good == {"kind": "c"} and msgs == ["Ignored on=True: on needs kind 'a' or 'b'."]
    # column names never come from a link
    good, msgs = clean(_Toy, {"cols": "age"}, text=True)
    assert good == {} and "column names" in msgs[0]
    # a bundle's JSON (lists, not tuples)
    assert clean(_Toy, {"win": [1, 3], "cols": ["age"]}) == ({"win": (1, 3), "cols": ("age",)}, [])


def test_impossible_choices_name_the_reason():
    assert impossible(_Toy, {"kind": "c"}, "on") == {True: "on needs kind 'a' or 'b'."}
    assert impossible(_Toy, {"kind": "a"}, "on") == {}
    assert impossible(LagOptions, {"estimator": "fixed_effects"}, "df_method") == {
        "satterthwaite": "df_method='satterthwaite' needs estimator='mixed' (fixed effects use t(G − 1))."}
    assert set(impossible(LagOptions, {"centering": "none"}, "outcome_moderator")) == {True}
    assert impossible(LagOptions, {"time_trend": "fixed_random"}, "estimator") == {}  # the trend depends on it


def test_declarations_are_complete():
    for cls in OPTION_CLASSES:
        decl = declared(cls)
        assert [o.name for o in decl] == [f.name for f in fields(cls)]
        assert len({o.url for o in decl if o.url}) == sum(1 for o in decl if o.url)  # URL names unique
        for o in decl:
            assert o.label and o.help and o.methods, o.name
            assert o.check(o.default) == o.default
            if o.labels:
                assert set(o.labels) == set(o.choices), o.name
            if o.kind == "columns":
                assert o.url is None  # user column names never go into a link


def _values(o: Option):
    if o.kind in ("choice", "flag"):
        return list(o.values)
    if o.kind == "choices":
        return [c for r in range(1, len(o.choices) + 1) for c in itertools.combinations(o.choices, r)]
    return EXTRA[o.name]


def _valid_lag_options(name, value):
    """A LagOptions with ``name=value``, other options changed as little as its constraints need."""
    fixes = [{}, {"directions": ("symptoms_to_alliance",)}, {"centering": "person_mean"},
             {"control_prior_outcome": True, "centering": "person_mean"}, {"estimator": "mixed"},
             {"lag": 1}]
    for fix in fixes:
        try:
            return LagOptions(**{**fix, name: value})
        except ValueError:
            continue
    raise AssertionError(f"no valid LagOptions with {name}={value!r}")


def test_every_lag_option_round_trips_widget_url_options_script():
    df = simulate_collection(k=2, n_patients=12, seed=3).data.assign(
        treatment=lambda d: (d["patient"].astype(str).str[-1] < "5").map({True: "CBT", False: "PDT"}))
    bounds = uopts.session_bounds(df)
    spec = {p.key: (url, p) for url, p in {**uopts.url_spec(df), **uopts.POOL_URL}.items()}
    n = 0
    for o in declared(LagOptions):
        for value in _values(o):
            opts = _valid_lag_options(o.name, value)
            # options → widget values (as the panel stores them) → URL text → widget values → options
            widgets = {k: v for k, v in uopts._defaults(df).items()}
            for p in declared(LagOptions):
                widgets[uopts._store_key(p.name)] = udecl.widget_value(p, getattr(opts, p.name), bounds)
            back, url_text = dict(widgets), {}
            for key, (url, param) in spec.items():
                store = key.removeprefix("opt_")
                url_text[url] = param.encode(widgets[store])
                back[store] = param.decode(url_text[url])
                assert back[store] is not None, (url, url_text[url])
            # the same text through the declarations' own cleaner (what a shared link or a bundle goes through)
            good, msgs = clean(LagOptions, url_text, text=True)
            assert not msgs, msgs
            full = {k: v for k, v in opts.to_dict().items() if k != "covariates"}
            if opts.sessions is None:
                full["sessions"] = bounds
            assert good == full
            back["_bounds"] = bounds
            assert uopts.to_lag_options(back, df) == opts, (o.name, value)
            # options → script arguments (Python always; R for the values it reproduces)
            args = script_args(opts)
            assert args[o.name] == getattr(opts, o.name)
            assert f"    {o.name}={getattr(opts, o.name)!r}" in report.reproduction_script("d.csv", opts)
            if o.name in rscript.R_SUPPORTED_OPTIONS and (not o.r_values or value in o.r_values):
                assert f"  {o.name} = {rscript._r_value(getattr(opts, o.name))}" in rscript.r_script("d.csv", opts)
            n += 1
    assert n >= 40


def declared_opt(store_key: str) -> Option:
    name = {v: k for k, v in uopts._KEYS.items()}.get(store_key, store_key)
    return udecl.find(LagOptions, name)


def test_pool_options_share_the_lag_declarations():
    assert PoolOptions().method == LagOptions().pooling_method and PoolOptions().test == LagOptions().test
    assert udecl.find(LagOptions, "pooling_method").choices == meta.METHODS
    for m in meta.METHODS:
        assert PoolOptions(method=m.lower()).method == m
    with pytest.raises(ValueError, match="method must be one of"):
        meta.random_effects([0.1, 0.2], [0.01, 0.02], method="XYZ")


def test_ui_vocabularies_come_from_the_declarations():
    assert list(uopts.DIRECTIONS) == list(lagged.DIRECTIONS)
    assert set(uopts.CENTERING) == set(lagged.CENTERINGS)
    assert list(uopts.CENTERING)[0] == LagOptions().centering  # the default first on the widget
    assert set(uopts.TIME_TREND) == set(lagged.TIME_TRENDS)
    assert udecl.help_text(udecl.find(LagOptions, "lag")).endswith("[Methods §4](/methods#4-lags)")


def test_a_link_with_every_option_sets_every_widget_and_is_written_back():
    """AppTest: the real widgets take every URL option of a non-default LagOptions, the page analyses exactly
    those options, and the URL written back is the same text."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    want = LagOptions(centering="detrended", lag=2, pairing="next_observed", directions=("symptoms_to_alliance",),
                      control_prior_outcome=True, standardize=True, sessions=(2, 6), time_trend="fixed",
                      cross_level=True, estimator="mixed", pooling_method="DL", test="knha",
                      outcome_moderator=True, standardize_by="within", df_method="z")
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=180)
    at.run()
    df = at.session_state["dataset"]["df"]
    bounds = uopts.session_bounds(df)
    query = {}
    for url, p in {**uopts.url_spec(df), **uopts.POOL_URL}.items():
        o = declared_opt(p.key.removeprefix("opt_"))
        query[url] = p.encode(udecl.widget_value(o, getattr(want, o.name), bounds))
    at = open_with_link("app_pages/pooled.py", query)
    assert uopts.to_lag_options(at.session_state["lag_options"], df) == want
    written = {k: at.query_params[k] for k in query}
    assert {k: (v[0] if isinstance(v, list) else v) for k, v in written.items()} == query


def _page_classes():
    from analysis import bayes_meta
    from analysis import convergence as conv
    from analysis import events as ev
    from analysis.convergence.options import ConvergenceOptions
    from analysis.events import options as evo

    # options class → the analysis entry its options are the keyword arguments of
    return {ConvergenceOptions: conv.growth_models, evo.RuptureOptions: ev.rupture_analysis,
            evo.GainOptions: ev.gain_analysis, evo.ReliableChangeOptions: ev.reliable_change_analysis,
            evo.OutcomeOptions: ev.outcome_by_pattern, evo.DropoutOptions: ev.dropout_models,
            bayes_meta.SmallKOptions: bayes_meta.bayes_random_effects}


#: options that only say how a page asks for an input (not a keyword of the analysis entry)
PAGE_ONLY = {"cutoff_mode", "one_stage"}


def test_every_page_option_round_trips_url_options_entry():
    """Convergence and Ruptures & gains: every declared value goes URL text → Param (the page's widget key) →
    clean() → the options class → keyword arguments its analysis entry accepts."""
    import inspect

    from ui import persist

    specs = {**persist.CONVERGENCE, **persist.EVENTS, **persist.SMALL_K}
    n = 0
    for cls, entry in _page_classes().items():
        params = inspect.signature(entry).parameters
        for o in declared(cls):
            assert o.label and o.help and o.methods, (cls.__name__, o.name)
            assert o.name in params or o.name in PAGE_ONLY, (cls.__name__, o.name)
            values = ([(), ("age",)] if o.kind == "columns" else [o.lo, o.default, o.hi] if o.kind == "float"
                      else _values(o))
            for v in values:
                try:
                    opts = cls(**{o.name: v})
                except ValueError:  # a combination no model can fit (checked below for each constraint)
                    fix = next(c for c in cls.CONSTRAINTS if o.name in c.names)
                    other = next(n for n in fix.names if n != o.name)
                    good = next(w for w in _values(udecl.find(cls, other))
                                if not fix.when(type("O", (), {**cls().to_dict(), o.name: v, other: w})))
                    opts = cls(**{o.name: v, other: good})
                if o.url:
                    p = specs[o.url]
                    text = p.encode(getattr(opts, o.name))
                    dec = p.decode(text)
                    assert (tuple(dec) if isinstance(dec, list) else dec) == getattr(opts, o.name), (o.url, text)
                    link = {q.url: specs[q.url].encode(getattr(opts, q.name)) for q in declared(cls) if q.url}
                    good, msgs = clean(cls, link, text=True)
                    assert not msgs and good[o.name] == getattr(opts, o.name), (o.url, text, msgs)
                inspect.signature(entry).bind_partial(None, **{k: v for k, v in opts.to_dict().items() if k in params})
                n += 1
    assert n >= 40
    # the page's URL parameters are exactly the declared ones (plus the convergence preset)
    urls = {o.url for cls in _page_classes() for o in declared(cls) if o.url}
    assert set(specs) - {"preset"} == urls


def _entry_classes():
    """Options classes whose method has a ``run(df, options)`` entry, and no URL parameters of their own."""
    from analysis import decomposition, dynamics, estimator_check, onestage, screening
    from analysis.convergence import congruence

    return {decomposition.DecompositionOptions: decomposition.run, screening.Thresholds: screening.run,
            congruence.CongruenceOptions: congruence.run, dynamics.DynamicOptions: dynamics.run,
            estimator_check.EstimatorCheckOptions: estimator_check.run, onestage.OneStageOptions: onestage.run}


#: the values the other options keep while one is tried (the estimator check: its cheapest estimator, fewest data sets)
ENTRY_BASE = {"EstimatorCheckOptions": {"estimators": ("person_mean",), "n_sim": 20}}


def _entry_values(o: Option) -> list:
    if o.kind == "choices" and len(o.choices) > 3:  # each choice alone, and all of them
        return [(c,) for c in o.choices] + [tuple(o.choices)]
    return ([o.lo, o.lo + 2] if o.kind == "int" else [None, (2, 6)] if o.kind == "range"
            else [o.default, o.hi if o.hi is not None else o.lo + 3] if o.kind == "float" else _values(o))


def _dynamic_result_follows(res, o) -> None:
    """Each declared option of ``analysis.dynamics.DynamicOptions`` reached the fits."""
    import numpy as np

    for per in res.fits.values():
        assert tuple(per) == o.directions
        for d, r in per.items():
            assert r.ok, r.messages
            dpm = f"DPM ({'symptoms' if d == 'alliance_to_symptoms' else 'alliance'})"
            ri = "RI-CLPM" if o.time_invariant else "RI-CLPM (time-varying lags)"
            assert r.model == (ri if o.estimator == "RI-CLPM" else dpm), (r.model, o)
            assert (r.fit is not None) == o.fit_indices and bool(r.standardized) == o.standardized
            assert (r.lr_test is not None) == (not o.time_invariant)
            assert r.waves == (tuple(range(2, 7)) if o.sessions else tuple(range(1, 8)))
    frame = res.to_frame()
    assert set(frame["direction"]) == set(o.directions) and np.isfinite(frame["estimate"]).all()


def _entry_result_follows(res, opts) -> None:
    """The options reached the result (real values: a dropped or ignored option fails here)."""
    import numpy as np

    name = type(opts).__name__
    if name == "DecompositionOptions":
        assert (res.direction, res.lag, res.standardize, res.sessions) == (
            opts.direction, opts.lag, opts.standardize, opts.sessions)
    elif name == "EstimatorCheckOptions":
        assert (res.n_sim, res.seed) == (opts.n_sim, opts.seed)
        assert tuple(dict.fromkeys(res.table["estimator"])) == opts.estimators
        assert (res.table["n_sim"] > 0).all()
    elif name == "OneStageOptions":
        for f in res.fits.values():
            assert f.level == opts.level and bool(np.isfinite(f.tau_ci_high)) == opts.profile
            crit = (f.ci_high - f.estimate) / f.se
            assert crit == pytest.approx(__import__("scipy").stats.t.ppf(0.5 + opts.level / 2, f.df))
    elif name == "DynamicOptions":
        _dynamic_result_follows(res, opts)


def test_every_method_option_round_trips_widget_options_run_script():
    """Methods without URL parameters of their own (their window and lag travel with the Lagged options, the
    latent-centred models' and the estimator check's are not in links): every declared value goes widget value →
    options → the method's ``run`` entry (called, and the result checked for it) → script arguments."""
    import re
    from pathlib import Path

    from analysis.simulate import simulate_study

    methods = (Path(__file__).resolve().parents[1] / "docs" / "METHODS.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^##+ ([0-9]+[a-z]?)\. ", methods, flags=re.M))
    from analysis.simulate import simulate_dyads
    from ui import persist

    sem = simulate_study(60, range(1, 8), seed=4).data
    data = {"CongruenceOptions": simulate_dyads(24, seed=2).data, "DynamicOptions": sem,
            "EstimatorCheckOptions": simulate_study(40, range(1, 6), seed=4).data,
            "OneStageOptions": simulate_collection(k=2, n_patients=12, seed=3).data}
    df = simulate_study(12, range(1, 8), seed=4).data
    n = {}
    for cls, run in _entry_classes().items():
        for o in declared(cls):
            assert o.label and o.help and o.methods.split("-", 1)[0] in sections, (cls.__name__, o.name)
            for v in _entry_values(o):
                opts = cls(**{**ENTRY_BASE.get(cls.__name__, {}), o.name: v})
                widget = udecl.widget_value(o, getattr(opts, o.name), (1, 7))
                back = cls(**{**opts.to_dict(), o.name: udecl.option_value(o, widget, (1, 7))})
                assert back == opts, (o.name, v)
                if o.url:  # its URL parameter, made from the declaration
                    p = persist.param(o, "k")
                    assert p.decode(p.encode(getattr(opts, o.name))) == getattr(opts, o.name), (o.name, v)
                    assert clean(cls, {o.url: p.encode(getattr(opts, o.name))}, text=True) == ({o.name: back.to_dict()[o.name]}, [])
                res = run(data.get(cls.__name__, df), opts)
                _entry_result_follows(res, opts)
                assert res is not None and script_args(opts)[o.name] == getattr(opts, o.name)
                n[cls.__name__] = n.get(cls.__name__, 0) + 1
    assert sum(n.values()) >= 58
    assert (n["DynamicOptions"], n["EstimatorCheckOptions"], n["OneStageOptions"]) == (13, 9, 4)


def test_teaching_options_round_trip_url_options_simulation():
    """The Teaching page's scenario (analysis.teaching.TeachingParams): every declared value the page's slider
    range allows goes options → URL text (ui.persist.TEACHING, made from the declarations) → clean() → options
    → the page's entry ``teaching.run`` (called on a small sample: each setting reaches the simulated data, the
    truth or the models) → script arguments."""
    import numpy as np

    from analysis import teaching as tg
    from ui import persist

    spec = persist.TEACHING
    assert {o.url for o in declared(tg.TeachingParams) if o.url} == set(spec) - {"missing", "present"}
    base = tg.TeachingParams(n_patients=20, n_sessions=4, missing=0.0, control_prior=False)
    ref = tg.run(base)
    n = 0
    for o in declared(tg.TeachingParams):
        assert o.label and o.help and o.methods, o.name
        lo, hi = persist.TEACH_SLIDERS.get(o.name, (o.lo, o.hi))
        for v in ([lo, o.default, hi] if o.kind in ("int", "float") else _values(o)):
            opts = tg.TeachingParams(**{o.name: v})
            sample = tg.run(small := base.replace(**{o.name: v}))
            assert sample.params == small and sample.estimates.truth.within_direct == small.within_effect
            assert np.isfinite(sample.estimates.prior_within) == small.control_prior
            assert sample.estimates.truth.between == (0.0 if small.control_prior else small.between_corr)
            if o.name != "control_prior" and v != getattr(base, o.name):  # a setting of the simulation
                assert not sample.data.equals(ref.data), (o.name, v)
            if o.url:
                text = spec[o.url].encode(getattr(opts, o.name))
                assert spec[o.url].decode(text) == getattr(opts, o.name), (o.url, text)
                link = {q.url: spec[q.url].encode(getattr(opts, q.name)) for q in declared(opts) if q.url}
                good, msgs = clean(tg.TeachingParams, link, text=True)
                assert not msgs and tg.TeachingParams(**{**opts.to_dict(), **good}) == opts
            assert script_args(opts)[o.name] == getattr(opts, o.name)
            n += 1
    with pytest.raises(ValueError, match="n_sessions must be a whole number from 3 to 60"):
        tg.TeachingParams(n_sessions=2)
    small = tg.TeachingParams(n_patients=20, n_sessions=4, missing=0.0)
    assert tg.simulate(small).data["patient"].nunique() == 20
    assert n >= 20


def test_every_declared_options_class_is_round_tripped():
    """Every options class in ``analysis`` (each subclass of Declared) is in one of the round-trip tests above:
    a method whose options are declared is covered as soon as it exists, or this test names it."""
    import importlib
    import pkgutil

    import analysis
    from analysis import teaching

    for m in pkgutil.walk_packages(analysis.__path__, "analysis."):
        if not m.name.endswith("__main__"):
            importlib.import_module(m.name)

    def subclasses(c):
        for s in c.__subclasses__():
            yield s
            yield from subclasses(s)

    found = {c for c in subclasses(Declared) if c.__module__.startswith("analysis.")}
    covered = {*OPTION_CLASSES, *_page_classes(), *_entry_classes(), teaching.TeachingParams}
    assert sorted(c.__qualname__ for c in found - covered) == []
    assert len(found) >= 16
