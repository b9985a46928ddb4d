"""Cached calls into ``analysis`` (keyed on the data and the options).

Pages call these instead of the analysis functions so that switching pages or
changing an unrelated widget never refits a model. The data part of each cache
key is a fingerprint of the frame (:func:`data_key`): for the loaded data set it
is computed once when the data are set (``ui.state``), so a rerun does not
re-hash 35,000 rows for every cached call.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
from pathlib import Path

import pandas as pd
import plotly.io as pio
import streamlit as st

from analysis import columns, lagged, meta, pipeline, plots_data, plots_lagged, plots_meta, screening
from analysis import data as adata
from analysis.lagged import LagOptions
from ui import declared
from ui.safe import esc, safe_figure

DEMO_DIR = Path(__file__).resolve().parents[1] / "demo_data"

#: LagOptions (a frozen dataclass of plain values) hashed by its repr: Streamlit's generic hashing walked it
#: field by field on every cached call of every rerun (issue 16, a class of 30)
OPTIONS_HASH = {LagOptions: repr}

# --------------------------------------------------------------------------- methods with declared options


@st.cache_data(show_spinner=False, max_entries=64, ttl="1h")
def _run_declared(key: str, _df: pd.DataFrame, entry: str, options_key: str, _options, extra: tuple):
    module, name = entry.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)(_df, _options, **dict(extra))


def run_declared(df: pd.DataFrame, run, options, key: str | None = None, **extra):
    """The one cached-call pattern for a method whose options are declared (:mod:`analysis.options`):
    ``run(df, options, **extra)`` cached on the data fingerprint, the entry's name and the options' repr —
    complete because every declared field is in it. ``extra``: plain keyword values (e.g. the study)."""
    entry = f"{run.__module__}.{run.__qualname__}"
    return _run_declared(key or data_key(df), df, entry, repr(options), options, tuple(sorted(extra.items())))


# --------------------------------------------------------------------------- file intake (Data, Screening)
# Bounded: an uploaded file's parsed frame can be several times its size, so few entries are kept and
# they expire; the preview holds only the head of a file.
FILE_TTL = 3600
#: rows read for the preview and the column mapping (the rest of the file is not parsed until used)
PREVIEW_ROWS = 2000


@st.cache_data(show_spinner=False, max_entries=16, ttl=FILE_TTL)
def file_sheets(content: bytes, name: str) -> list[str]:
    """Sheet names of an uploaded workbook (empty for formats without sheets)."""
    return adata.list_sheets(content, filename=name)


@st.cache_data(show_spinner=False, max_entries=4, ttl=FILE_TTL)
def load_file(content: bytes, name: str, sheet) -> pd.DataFrame:
    """An uploaded file read by :func:`analysis.data.load` (cached on its bytes)."""
    return adata.load(content, filename=name, sheet=sheet)


@st.cache_data(show_spinner=False, max_entries=16, ttl=FILE_TTL)
def preview_file(content: bytes, name: str, sheet) -> pd.DataFrame:
    """The first :data:`PREVIEW_ROWS` rows of an uploaded file (``load(..., nrows=...)``)."""
    return adata.load(content, filename=name, sheet=sheet, nrows=PREVIEW_ROWS)


@st.cache_data(show_spinner=False, max_entries=4, ttl=FILE_TTL, hash_funcs={"ui.mapping.Choice": lambda c: c.key()})
def canonical_file(content: bytes, choice) -> pd.DataFrame:
    """The whole file, reshaped when wide, in the canonical format (choices of ``ui.mapping.form``)."""
    return _convert(load_file(content, choice.name, choice.sheet), choice)


def _convert(raw: pd.DataFrame, choice) -> pd.DataFrame:
    """A file's frame reshaped (when wide) and converted with the form's choices."""
    if choice.stubs:
        raw = adata.wide_to_long(raw, id_col=choice.id_col, stubs=choice.stubs, study_col=choice.site_col)
    return adata.to_canonical(raw, choice.mapping, study=choice.label,
                              symptoms_higher_is_worse=not choice.higher_better)


def read_canonical(content: bytes, choice) -> pd.DataFrame:
    """:func:`canonical_file` without the caches, for a read that is used once (the Data page's "Use these
    files"): the file's raw frame is dropped as soon as it is converted, and no pickled copy of either frame
    is kept in the shared cache (a 5-million-row file: about 0.5 GB less at the peak; issue 16, memory)."""
    return _convert(adata.load(content, filename=choice.name, sheet=choice.sheet), choice)


@st.cache_data(show_spinner=False, max_entries=8, ttl=FILE_TTL)
def summary_and_report(key: str, _df: pd.DataFrame, _report=None):
    """The Data page's summary and data check of the loaded data set (keyed on its fingerprint); ``_report``:
    the check already made when the data set was loaded (not repeated on a large file)."""
    return adata.summarize(_df), (_report if _report is not None else adata.validate(_df))


def data_figure(which: str, key: str, df: pd.DataFrame):
    """A Data page figure of the loaded data set: "missingness", "patients_per_study" or "sessions_per_patient"
    (shared read-only, :func:`figure`)."""
    return figure({"missingness": plots_data.missingness_figure, "patients_per_study": plots_data.patients_per_study_figure,
                   "sessions_per_patient": plots_data.sessions_per_patient_figure}[which], (key,), df)


@st.cache_data(show_spinner=False, max_entries=16, ttl=FILE_TTL)
def _screen(key: str, _study_df: pd.DataFrame, options: LagOptions):
    fits, error = {}, None
    for d in options.directions:
        try:
            fits[d] = lagged.fit_study(_study_df, options, d)
        except ValueError as e:
            error = str(e)
            fits = {}
            break
    return fits, screening.screen_study(_study_df, options, fits or None), error


def screen(study_df: pd.DataFrame, options: LagOptions):
    """Screening page: stage-1 fits of one study (every chosen direction), its checklist and the fit error."""
    return _screen(fingerprint(study_df), study_df, options)


# --------------------------------------------------------------------------- data fingerprint


def fingerprint(df: pd.DataFrame) -> str:
    """A content hash of a data frame (values, index, column names and dtypes)."""
    h = hashlib.sha1()
    h.update(repr([(str(c), str(t)) for c, t in df.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(df, index=True).to_numpy().tobytes())
    return h.hexdigest()


@st.cache_resource(show_spinner=False, max_entries=8, ttl="1h")
def load_demo(filename: str) -> pd.DataFrame:
    """Read a demo file through the same intake path as an upload, once per server: every session shares the
    one frame, read-only (a class opening the app at once parses the default demo once, and no session pays
    for a copy of it: ~7 ms of a new session's first run, issue 24). No session changes its data set in place:
    every cached result is keyed on the fingerprint taken when it was loaded (ui.state.set_dataset)."""
    raw = adata.load(DEMO_DIR / filename, filename=filename)
    mapping = adata.suggest_mapping(raw)
    return adata.to_canonical(raw, mapping)


def data_key(df: pd.DataFrame) -> str:
    """The loaded data set's stored fingerprint when ``df`` is that very object, else a fresh one."""
    ds = st.session_state.get("dataset")
    if ds is not None and ds.get("df") is df and ds.get("key"):
        return ds["key"]
    return fingerprint(df)


@st.cache_data(show_spinner=False, max_entries=96, ttl="1h", hash_funcs=OPTIONS_HASH)
def _on_data(target: str, _func, key: str, _df: pd.DataFrame, options: LagOptions):
    """``_func(_df, options)`` cached on ``target`` (the function's qualified name: st.cache_data keys on this
    wrapper's source, so the name keeps the entries of different functions apart), the data fingerprint and
    the options; neither the function nor the frame is hashed."""
    return _func(_df, options)


def _data_call(func, df: pd.DataFrame, options: LagOptions, key: str | None = None):
    """One cached ``func(df, options)`` call (func: an analysis function taking the frame and LagOptions).
    ``key``: the data fingerprint when the caller has it (a download's callable runs off the script thread,
    where :func:`data_key` cannot read the session)."""
    return _on_data(f"{func.__module__}.{func.__qualname__}", func, key or data_key(df), df, options)


#: a larger data set is not fitted before a page asks for it (memory: a 5-million-row upload, issue 16)
PREFIT_MAX_ROWS = 250_000


#: a server for a class (``make serve`` sets ``ALLIANCE_CLASS=1``): a newly loaded data set is also fitted with
#: every centering × lag × estimator in the background (:func:`class_grid`), so students who each pick other
#: options find their first result cached (issue 24)
CLASS_MODE = os.environ.get("ALLIANCE_CLASS") == "1"


def class_grid() -> list[LagOptions]:
    """The default options with each centering × lag × estimator (METHODS §5; lag 0 is for symptoms →
    alliance only, as the option panel sets it): the analyses a class that starts from shared links or changes
    one option asks for. 4 × 4 × 2 = 32 two-stage fits, ~0.2 s of CPU each on the 17-study demo."""
    base = LagOptions()
    return [base.replace(centering=c, lag=lag, estimator=e,
                         directions=("symptoms_to_alliance",) if lag == 0 else base.directions)
            for c in lagged.CENTERINGS for lag in (1, 2, 3, 0) for e in lagged.ESTIMATORS]


def prefit(df: pd.DataFrame, key: str) -> None:
    """Start the default analysis of a newly loaded data set (the two-stage fit every Lagged and Pooled page
    opens with) in the background (ui/jobs.py): the first visit finds it cached (issue 24). A page that asks
    for it while it runs waits for this computation instead of starting another (one per cache key). Not for
    data sets above :data:`PREFIT_MAX_ROWS` rows. On a class server (:data:`CLASS_MODE`) the fits of
    :func:`class_grid` follow, one after another on the low-priority pool."""
    from ui import jobs

    if len(df) > PREFIT_MAX_ROWS:
        return
    jobs.submit(_prefit, key=key, label="Fitting the study models", data=key, _df=df, grid=CLASS_MODE)


def _prefit(data: str, df: pd.DataFrame, grid: bool = False) -> None:
    _fit(data, df, LagOptions())
    names = declared.labels(LagOptions, "directions")
    for options in class_grid() if grid else ():
        res = _fit(data, df, options)
        if res is None or not res.pooled:
            continue
        # ... and what the Lagged and Pooled pages draw from it (a class's page runs then only lay them out)
        pooled_tables(df, options, names)
        pooled_forest(df, options, *pooled_forest_inputs(res, options))
        for d in {dn for (_s, dn) in res.fits} & set(options.directions):
            lagged_figure("coefficients", df, options, d)
            lagged_table(df, options, d)


def _fit(data: str, df: pd.DataFrame, options: LagOptions) -> pipeline.TwoStageResult | None:
    """The cached two-stage fit (the pages' own cache entry), or None where it cannot be fitted (the page shows
    why when it asks: a failure is not cached, so it is tried there again)."""
    try:
        return _on_data(f"{pipeline.two_stage.__module__}.{pipeline.two_stage.__qualname__}", pipeline.two_stage,
                        data, df, options)
    except ValueError:
        return None


def pooled_forest_inputs(res: pipeline.TwoStageResult, options: LagOptions) -> tuple[tuple, str]:
    """The Pooled page forest's panel titles (the pooled directions) and x-axis label."""
    names = declared.labels(LagOptions, "directions")
    effect = res.per_study["effect"].iloc[0] if len(res.per_study) else "within-patient"
    xlabel = ("Within-patient lagged coefficient" if effect == "within-patient" else "Total lagged coefficient") + (
        " (SD units)" if options.standardize else " (raw units)")
    return tuple(names[d] for d in options.directions if d in res.pooled), xlabel


@st.cache_resource(show_spinner=False, max_entries=64, ttl="1h", hash_funcs=OPTIONS_HASH)
def _two_stage_shared(key: str, _df: pd.DataFrame, options: LagOptions) -> pipeline.TwoStageResult:
    return _data_call(pipeline.two_stage, _df, options, key)


def two_stage(df: pd.DataFrame, options: LagOptions) -> pipeline.TwoStageResult:
    """:func:`analysis.pipeline.two_stage`, cached (its ``st.cache_data`` entry is the one the background fit
    fills, :func:`prefit`) and shared read-only by every session: a page run gets the result object itself,
    not an unpickled copy (~10 ms a run, issue 24). A failure (ValueError) is not cached: the page says why.
    Nobody changes a result in place."""
    return _two_stage_shared(data_key(df), df, options)


def two_stage_or_stop(df: pd.DataFrame, options: LagOptions, spinner: str) -> pipeline.TwoStageResult:
    """Run (or fetch) the two-stage analysis for a page; on bad options show why and stop the page."""
    try:
        with st.spinner(spinner):
            res = two_stage(df, options)
    except ValueError as e:
        st.error(f"The models could not be run with these options: {esc(e, limit=None)}")
        st.stop()
    for m in res.messages:
        st.info(esc(m, limit=None))
    return res


def multiverse(df: pd.DataFrame, options: LagOptions, key: str | None = None) -> pd.DataFrame:
    return _data_call(pipeline.multiverse, df, options, key)


@st.cache_data(show_spinner=False, max_entries=64, ttl="1h", hash_funcs=OPTIONS_HASH)
def _prepare(key: str, study: str, _df: pd.DataFrame, options: LagOptions, direction: str) -> pd.DataFrame:
    return lagged.prepare(_df[_df["study"].astype(str) == study], options, direction)


def prepare(df: pd.DataFrame, study: str, options: LagOptions, direction: str) -> pd.DataFrame:
    """One study's model rows (:func:`analysis.lagged.prepare`), keyed on the data fingerprint and the study:
    the study's rows are not hashed on every rerun (issue 24)."""
    return _prepare(data_key(df), str(study), df, options, direction)


@st.cache_data(show_spinner=False, max_entries=64, ttl="1h", hash_funcs=OPTIONS_HASH)
def _collection_reference(key: str, _df: pd.DataFrame, options: LagOptions, direction: str, exclude):
    pooled = two_stage(_df, options).pooled.get(direction)
    return screening.collection_reference(pooled, exclude=exclude) if pooled is not None else None


def collection_reference(df: pd.DataFrame, options: LagOptions, direction: str, exclude: str | None = None):
    """Screening's reference: the collection pooled in ``direction``, without ``exclude``
    (:func:`analysis.screening.collection_reference`), cached instead of re-pooled on every rerun."""
    return _collection_reference(data_key(df), df, options, direction, exclude)


def pairing_counts(df: pd.DataFrame, options: LagOptions) -> pd.DataFrame:
    return _data_call(lagged.pairing_counts, df, options)


@st.cache_data(show_spinner=False, max_entries=64, ttl="1h")
def leave_one_out(yi, vi, labels, method: str, test: str) -> pd.DataFrame:
    return meta.leave_one_out(yi, vi, labels=labels, method=method, test=test)


@st.cache_data(show_spinner=False, max_entries=64, ttl="1h")
def egger(yi, vi, method: str, test: str):
    return meta.egger_test(yi, vi, method=method, test=test)


@st.cache_data(show_spinner=False, max_entries=64, ttl="1h")
def meta_regression(yi, vi, moderators: pd.DataFrame, method: str, test: str, labels):
    return meta.meta_regression(yi, vi, moderators, method=method, test=test, labels=labels)


# cache_resource, not cache_data: every session gets the same figure object, already made safe, instead of
# unpickling (= re-validating) a plotly figure on every rerun of every session (0.14 s of CPU each; with a
# class of 30 on one 2-core server that was the largest share of a page run). Nobody changes it in place:
# safe_figure() finds nothing left to change, st.plotly_chart and the report only read it.
@st.cache_resource(show_spinner=False, max_entries=64, ttl="1h", hash_funcs=OPTIONS_HASH)
def _pooled_forest(key: str, _df: pd.DataFrame, options: LagOptions, titles: tuple, xlabel: str):
    res = two_stage(_df, options)
    dirs = [d for d in options.directions if d in res.pooled]
    if len(dirs) == 2:
        fig = plots_meta.paired_forest_figure(res.pooled[dirs[0]], res.pooled[dirs[1]], titles=list(titles),
                                              xlabel=xlabel)
    else:
        fig = plots_meta.forest_figure(res.pooled[dirs[0]], title=titles[0], xlabel=xlabel)
    return _shared_figure(safe_figure(fig))


def _shared_figure(fig):
    """``fig`` whose ``to_dict()`` is read back from its JSON, made once: ``st.plotly_chart`` calls
    ``to_dict()`` on every run of every session, and plotly's deep copy and array walk cost ~8 ms each time
    (json.loads: under 1 ms). Each call still returns a new dict, so no caller can change another's.
    A shared figure is read-only: to restyle one, copy it first (``go.Figure(fig.to_dict())``)."""
    spec = pio.to_json(fig, validate=False)
    fig.to_dict = lambda: json.loads(spec)
    return fig


@st.cache_resource(show_spinner=False, max_entries=256, ttl="1h")
def _figure(key: tuple, _build, _args: tuple, _kwargs: dict):
    return _shared_figure(safe_figure(_build(*_args, **_kwargs)))


def figure(func, key: tuple, *args, **kwargs):
    """``func(*args, **kwargs)`` (a figure builder of ``analysis``), built once per ``key`` and shared read-only
    by every session and rerun (issue 24: a cached figure read back with ``st.cache_data`` is unpickled, and
    plotly re-validates every property of it, on every run; a figure built on every run pays the same).
    ``key`` must identify every input: the data fingerprint, the study, the options that made the result
    drawn. Not for figures a page changes afterwards (copy a shared figure before restyling it)."""
    return _figure((func.__module__, func.__qualname__, *key), func, args, kwargs)


@st.cache_resource(show_spinner=False, max_entries=128, ttl="1h", hash_funcs=OPTIONS_HASH)
def _lagged_figure(which: str, key: str, _df: pd.DataFrame, options: LagOptions, direction: str, study, patient):
    if which == "coefficients":
        fig = plots_lagged.study_coefficients_figure(two_stage(_df, options), direction)
    else:
        view = lagged.patient_view(_df[_df["study"].astype(str) == study], options, direction, patient, study)
        fig = plots_lagged.patient_series_figure(view)
    return _shared_figure(safe_figure(fig))


def lagged_figure(which: str, df: pd.DataFrame, options: LagOptions, direction: str, study=None, patient=None):
    """A Lagged page figure, built once per data set and options and shared read-only by every session
    (issue 24: a rerun that changes nothing it shows does not rebuild it): "coefficients" (the per-study
    coefficients of ``direction``) or "patient" (``patient`` of ``study``: what went into the model)."""
    return _lagged_figure(which, data_key(df), df, options, direction,
                          None if study is None else str(study), None if patient is None else str(patient))


def pooled_forest(df: pd.DataFrame, options: LagOptions, titles: tuple, xlabel: str):
    """The Pooled page's forest figure (paired when both directions are chosen), cached with its inputs,
    shared read-only by every session."""
    return _pooled_forest(data_key(df), df, options, titles, xlabel)


@dataclasses.dataclass(frozen=True)
class DirectionTable:
    """What the Lagged page shows of one direction's per-study coefficients: the table (readers' columns), the
    CSV (every column of the result), and the counts its sentences and headings use."""

    table: pd.DataFrame
    csv: pd.DataFrame
    effect: str
    n_ok: int
    n_sig: int
    n_failed: int
    n_warn: int


@st.cache_resource(show_spinner=False, max_entries=128, ttl="1h", hash_funcs=OPTIONS_HASH)
def _lagged_table(key: str, _df: pd.DataFrame, options: LagOptions, direction: str) -> DirectionTable:
    res = two_stage(_df, options)
    ps = res.per_study
    d = ps[(ps["term"] == "within") & (ps["direction"] == direction)]
    ok = d[d["status"] != "failed"]
    table = d[["study", "effect", "estimate", "se", "ci_low", "ci_high", "pvalue", "n_patients", "n_pairs",
               "status"]].rename(columns={"ci_low": "CI low", "ci_high": "CI high", "pvalue": "p",
                                          "n_patients": "N patients", "n_pairs": "N pairs"})
    if options.df_method == "satterthwaite":  # the t tests' Satterthwaite df, as fitted per study
        table.insert(4, "df", [res.fits[(s, direction)].coef("within")["df"] if st_ != "failed" else float("nan")
                               for s, st_ in zip(d["study"], d["status"])])
    # "warning" fits are valid estimates with notes (e.g. a zero random-intercept variance); say so plainly
    table["status"] = table["status"].map({"ok": "ok", "warning": "ok (see notes)", "failed": "failed"})
    return DirectionTable(table=table, csv=d, effect=d["effect"].iloc[0] if len(d) else "within-patient",
                          n_ok=len(ok), n_sig=int(((ok["ci_low"] > 0) | (ok["ci_high"] < 0)).sum()),
                          n_failed=int((d["status"] == "failed").sum()), n_warn=int((d["status"] != "ok").sum()))


def lagged_table(df: pd.DataFrame, options: LagOptions, direction: str) -> DirectionTable:
    """The Lagged page's per-study table of ``direction`` and its counts, made once per data set, options and
    direction and shared read-only by every session (issue 24: a class's reruns neither rebuild nor re-format
    it; ui.tables formats a frame object once). Nobody changes its frames in place."""
    return _lagged_table(data_key(df), df, options, direction)


# ----------------------------------------------------------------------------------------------
# Per-run work of the shell and the Pooled page, computed once per data set / options (issue 16: a class
# of 30 on one 2-core server; every session's rerun pays only for what is drawn)


@st.cache_data(show_spinner=False, max_entries=16, ttl="1h")
def _patient_level_columns(key: str, _df: pd.DataFrame) -> list[str]:
    return columns.patient_level_columns(_df)


def patient_level_columns(df: pd.DataFrame) -> list[str]:
    """:func:`analysis.columns.patient_level_columns`, once per data set (a groupby per extra column)."""
    return _patient_level_columns(data_key(df), df)


@st.cache_data(show_spinner=False, max_entries=16, ttl="1h")
def _study_level_columns(key: str, _df: pd.DataFrame) -> list[str]:
    return columns.study_level_columns(_df)


def study_level_columns(df: pd.DataFrame) -> list[str]:
    """:func:`analysis.columns.study_level_columns`, once per data set."""
    return _study_level_columns(data_key(df), df)


@st.cache_resource(show_spinner=False, max_entries=64, ttl="1h", hash_funcs=OPTIONS_HASH)
def _pooled_tables(key: str, _df: pd.DataFrame, options: LagOptions, names: tuple):
    res = two_stage(_df, options)
    pooled = {d: res.pooled[d] for d in options.directions if d in res.pooled}
    shown = meta.results_table(pooled, dict(names))
    table = pd.concat([m.to_frame().assign(direction=d) for d, m in pooled.items()], ignore_index=True)
    return shown, table[["direction", *table.columns.drop("direction")]]


def pooled_tables(df: pd.DataFrame, options: LagOptions, names: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The Pooled page's results table (formatted for readers) and its download (the numbers), made once and
    shared read-only by every session (the same frame objects on every run: ui.tables formats them once)."""
    return _pooled_tables(data_key(df), df, options, tuple(names.items()))


# ----------------------------------------------------------------------------------------------
# Within/between decomposition, early alliance, per-session descriptives (issue 11 §1, §3, §5)


def decomposition(df: pd.DataFrame, direction: str, lag: int, standardize: bool, study: str, sessions=None,
                  key: str | None = None):
    """Seed 004's total/within/between trio for one study (:func:`run_declared`)."""
    from analysis import decomposition as dec

    opts = dec.DecompositionOptions(direction=direction, lag=int(lag), standardize=bool(standardize),
                                    sessions=None if sessions is None else tuple(int(s) for s in sessions))
    return run_declared(df, dec.run, opts, key=key, study=str(study))


@st.cache_data(show_spinner=False, max_entries=32, ttl="1h")
def _session_descriptives(key: str, _df: pd.DataFrame, study: str, sessions):
    from analysis import descriptives

    d = _df
    if sessions is not None:
        d = d[(d["session"] >= sessions[0]) & (d["session"] <= sessions[1])]
    tab = descriptives.session_descriptives(d, study=study)
    try:
        dd = descriptives.pre_post_d(d, "symptoms", study=study)
    except ValueError:
        dd = None
    return tab, dd


def session_descriptives(df: pd.DataFrame, study: str, sessions=None):
    """(per-session table, pre–post d of symptoms or None) for one study in the window, cached."""
    return _session_descriptives(data_key(df), df, str(study),
                                 None if sessions is None else tuple(int(s) for s in sessions))


@st.cache_data(show_spinner=False, max_entries=16, ttl="1h")
def _early_outcome(key: str, _df: pd.DataFrame, options: LagOptions, early_window, outcome: str,
                   outcome_session, outcome_column):
    from analysis import early

    return early.early_outcome(_df, options=options, early_window=early_window, outcome=outcome,
                               outcome_session=outcome_session, outcome_column=outcome_column)


def early_outcome(df: pd.DataFrame, options: LagOptions, early_window=None, outcome: str = "last",
                  outcome_session=None, outcome_column=None, key: str | None = None):
    """Early alliance → outcome with its own early window and outcome (analysis.early), cached."""
    return _early_outcome(key or data_key(df), df, options, early_window, outcome, outcome_session, outcome_column)


# --------------------------------------------------------------------------- teaching (simulation only; no data key)
NICKELL_PATIENTS = 800
NICKELL_SESSIONS = range(3, 16)
#: samples the Teaching page simulates with other seeds (chance or systematic miss); run by ui/jobs.py
TEACHING_REPLICATIONS = 20


@st.cache_data(show_spinner=False, max_entries=64, ttl=3600)
def teaching_sample(params):
    """One simulated teaching sample, its three estimates and the scatter summary (analysis.teaching.run)."""
    from analysis import teaching

    return teaching.run(params)


# ----------------------------------------------------------------------------
# Convergence page (analysis.convergence, METHODS §8). Every wrapper is keyed on the data fingerprint;
# the frame is passed as ``_df`` so it is never re-hashed.

from analysis import convergence as conv  # noqa: E402


@st.cache_resource(show_spinner=False, max_entries=8, ttl="1h")
def conv_demo(filename: str) -> tuple[pd.DataFrame, str]:
    """A dyadic demo read through the intake path, with its fingerprint: the shared read-only frame of
    :func:`load_demo`, not a copy unpickled on every run of the Convergence page."""
    df = load_demo(filename)
    return df, fingerprint(df)


@st.cache_data(show_spinner=False, max_entries=16, ttl="1h")
def conv_sample(key: str, _df: pd.DataFrame, rules: conv.SampleRules) -> conv.SampleResult:
    return conv.apply_sample_rules(_df, rules)


@st.cache_data(show_spinner=False, max_entries=16, ttl="1h")
def conv_trajectories(key: str, _df: pd.DataFrame) -> pd.DataFrame:
    return conv.trajectories(_df)


@st.cache_data(show_spinner=False, max_entries=16, ttl="1h")
def conv_scores(key: str, _df: pd.DataFrame, discrepancy: str, transform: str, method: str) -> conv.DyadScores:
    return conv.dyad_scores(_df, discrepancy=discrepancy, transform=transform, method=method)


@st.cache_data(show_spinner=False, max_entries=16, ttl="1h")
def conv_growth(key: str, _df: pd.DataFrame, _scores: conv.DyadScores, scores_key: tuple, options: tuple):
    return conv.growth_models(_df, scores=_scores, **dict(options))


@st.cache_data(show_spinner=False, max_entries=16, ttl="1h")
def conv_dyadic(key: str, _df: pd.DataFrame):
    return conv.dyadic_model(_df)


@st.cache_data(show_spinner=False, max_entries=16, ttl="1h")
def conv_rsa(key: str, _df: pd.DataFrame, control_initial: bool):
    return conv.response_surface(_df, control_initial=control_initial)


@st.cache_data(show_spinner=False, max_entries=16, ttl="1h")
def conv_apim(key: str, _df: pd.DataFrame, lag: int, control_prior: bool):
    return conv.apim(_df, lag=lag, control_prior=control_prior)


@st.cache_data(show_spinner=False, max_entries=16, ttl="1h")
def conv_shape(key: str, _df: pd.DataFrame, time: str):
    return conv.trajectory_shape(_df, time=time)


@st.cache_data(show_spinner=False, max_entries=8, ttl="1h")
def conv_pooled(key: str, _df: pd.DataFrame, discrepancy: str, transform: str, time: str):
    return conv.pooled_convergence(_df, model=2, discrepancy=discrepancy, transform=transform, time=time)


def conv_figure(name: str, cache_key: tuple, _args: tuple, _kwargs: dict):
    """A convergence figure (``analysis.plots_convergence.<name>``), built once per ``cache_key`` and shared
    (:func:`figure`): the caller passes a key that identifies every input (data fingerprint, study, rules,
    options)."""
    from analysis import plots_convergence

    return figure(getattr(plots_convergence, name), cache_key, *_args, **_kwargs)


# ============================================================================ events (Ruptures & gains page)
# Keyed on the stored data fingerprint; the frame is passed as ``_df`` and never hashed.


@st.cache_data(show_spinner=False, max_entries=96, ttl="1h")
def _event_result(key: str, _df: pd.DataFrame, func: str, options: tuple):
    """One of analysis.events' result builders (rupture_analysis, gain_analysis, ...), cached."""
    from analysis import events

    return getattr(events, func)(_df, **_thaw(options))


@st.cache_resource(show_spinner=False, max_entries=96, ttl="1h")
def _event_ruptures(key: str, _df: pd.DataFrame, options: tuple):
    options = _thaw(options)
    if options.get("item") is not None:
        return _event_result(key, _df, "rupture_analysis", freeze(options))
    ra = _event_result(key, _df, "rupture_analysis", freeze({**options, "chance": False}))
    curve_opts = {k: options[k] for k in ("criterion", "sd", "detrend", "rater") if k in options}
    curve = _event_result(key, _df, "rupture_chance_curve", freeze(curve_opts))
    return dataclasses.replace(ra, chance=curve.at(options.get("k")))


def event_ruptures(df: pd.DataFrame, **options):
    """`analysis.events.rupture_analysis`, cached on the data fingerprint and the options, one result shared
    read-only by every session and rerun (its tables and sentences are then made once: issue 24).

    The chance simulation is cached on the options it depends on only (criterion, SD,
    detrending, rater: `rupture_chance_curve`), so changing k, the repair rule or the level
    does not re-simulate it; k only reads the cached curve.
    """
    return _event_ruptures(data_key(df), df, freeze(options))


def event_dropout(df: pd.DataFrame, **options):
    """`analysis.events.dropout_models` (logistic + Cox, METHODS §9a), cached on the data and the options."""
    return _event_result(data_key(df), df, "dropout_models", freeze(options))


def event_gains(df: pd.DataFrame, **options):
    """`analysis.events.gain_analysis`, cached (mappings passed as sorted tuples)."""
    return _event_result(data_key(df), df, "gain_analysis", freeze(options))


def event_reliable_change(df: pd.DataFrame, **options):
    """`analysis.events.reliable_change_analysis`, cached."""
    return _event_result(data_key(df), df, "reliable_change_analysis", freeze(options))


@st.cache_data(show_spinner=False, max_entries=32, ttl="1h")
def _event_around(key: str, _df: pd.DataFrame, gain_options: tuple, rater: str, standardize: bool):
    from analysis import events

    gains = _event_result(key, _df, "gain_analysis", gain_options).gains
    col = "alliance" if rater == "patient" else "therapist_alliance"
    data = events.standardize_within_study(_df, [col]) if standardize else _df
    around = events.alliance_around_gains(data, gains, rater=rater)
    around = dataclasses.replace(around, messages=(*data.attrs.get("messages", ()), *around.messages))
    return around, events.alliance_trajectory(data, gains, rater=rater)


def event_around(df: pd.DataFrame, gain_options: dict, rater: str, standardize: bool):
    """Alliance around gains and the alliance trajectory, cached."""
    return _event_around(data_key(df), df, freeze(gain_options), rater, standardize)


@st.cache_data(show_spinner=False, max_entries=32, ttl="1h")
def _event_outcome(key: str, _df: pd.DataFrame, event: str, measure: str, rupture_options: tuple,
                   gain_options: tuple):
    from analysis import events

    if event == "gain":
        gains = _event_result(key, _df, "gain_analysis", gain_options).gains
        return events.outcome_by_pattern(_df, gains, measure=measure)
    ra = _event_result(key, _df, "rupture_analysis", freeze({**_thaw(rupture_options), "chance": False}))
    if event == "repair_groups":
        return events.outcome_by_repair(_df, ra.flags, rule=ra.rule, measure=measure)
    return events.outcome_by_pattern(_df, ra.flags, event=event, measure=measure, rule=ra.rule)


def event_outcome(df: pd.DataFrame, event: str, measure: str, rupture_options: dict, gain_options: dict):
    """Relation of a rupture or gain pattern to outcome, cached with the pattern's options."""
    return _event_outcome(data_key(df), df, event, measure, freeze(rupture_options), freeze(gain_options))


@st.cache_data(show_spinner=False, max_entries=8, ttl="1h")
def _event_baseline(key: str, _df: pd.DataFrame) -> dict:
    from analysis import events

    b = events.baseline_sd(_df, "symptoms")
    return dict(zip(b["study"], b["baseline_sd"].astype(float)))


def event_baseline(df: pd.DataFrame) -> dict:
    """Each study's baseline symptom SD (study → SD), cached."""
    return _event_baseline(data_key(df), df)


def freeze(options: dict) -> tuple:
    """Options as a hashable tuple (dict values become sorted item tuples, lists tuples)."""
    out = []
    for k, v in sorted(options.items()):
        if isinstance(v, dict):
            v = ("__dict__", tuple(sorted(v.items())))
        elif isinstance(v, list):
            v = ("__list__", tuple(v))
        out.append((k, v))
    return tuple(out)


def _thaw(options: tuple) -> dict:
    out = {}
    for k, v in options:
        if isinstance(v, tuple) and len(v) == 2 and v[0] == "__dict__":
            v = dict(v[1])
        elif isinstance(v, tuple) and len(v) == 2 and v[0] == "__list__":
            v = list(v[1])
        out[k] = v
    return out


# --------------------------------------------------------------------------- few studies (issue 21)


def one_stage(df: pd.DataFrame, options: LagOptions, key: str | None = None):
    """:func:`analysis.onestage.one_stage` (both directions of ``options``), cached on the data and options."""
    from analysis import onestage

    return _data_call(onestage.one_stage, df, options, key)


@st.cache_data(show_spinner=False, max_entries=64, ttl="1h")
def bayes_pool(yi, vi, prior_scale: float, level: float):
    from analysis import bayes_meta

    return bayes_meta.bayes_random_effects(yi, vi, prior_scale=prior_scale, level=level)
