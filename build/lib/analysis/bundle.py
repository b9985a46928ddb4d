"""Reproducibility bundle: one zip that holds everything needed to redo an analysis.

:func:`make_bundle` writes, into one zip file,

* ``data.csv`` — the canonical long data (METHODS §1) exactly as analysed;
* ``mapping.json`` — the column mapping from the user's file to the canonical names;
* ``options.json`` — every :class:`analysis.lagged.LagOptions` field and any
  page options (e.g. the teaching scenario);
* ``manifest.json`` — format version, data set name, the data fingerprint
  (SHA-256 of ``data.csv``, rows, columns), package versions, seeds and the
  SHA-256 of every file in the bundle;
* ``reproduce_analysis.py`` and ``reproduce_analysis.R`` — the Python and R
  scripts (:func:`analysis.report.reproduction_script`, :func:`analysis.report.r_script`);
* ``reproduce_decomposition.R`` — the R script of the total/within/between trio of
  one study (:func:`analysis.rscript_models.r_decomposition_script`) when given;
* ``growth/growth_model_data.csv`` and ``growth/reproduce_growth_models.R`` — the
  convergence growth models' rows and R script
  (:func:`analysis.rscript_models.r_growth_script`) when a growth result is given;
* ``report.html`` and ``figures/*.svg`` when given;
* ``README.txt`` — how to run the scripts.

:func:`read_bundle` reads it back (checking every fingerprint) into a
:class:`Bundle` whose ``data`` is the same canonical frame, so results are
identical. Nothing in a bundle is executed when it is read.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import math
import re
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from analysis import data as adata
from analysis.export import CSV_ENCODING, csv_bytes, unneutralize_frame
from analysis.lagged import LagOptions

__all__ = ["BUNDLE_FORMAT", "Bundle", "is_bundle", "make_bundle", "read_bundle"]

BUNDLE_FORMAT = "alliance-dashboard-bundle/1"
DATA_NAME = "data.csv"
PARQUET_NAME = "data.parquet"
#: Uncompressed size limit when reading: the same as an uploaded file's (``server.maxUploadSize``, MB).
MAX_BYTES = 200 * 1024 * 1024
MAX_MEMBERS = 200
CANONICAL = ("study", "patient", "session", "alliance", "symptoms", "therapist_alliance", "therapist")


@dataclass(frozen=True)
class Bundle:
    """A read bundle: ``data`` (canonical frame), ``name``, ``mapping``,
    ``options`` (:class:`LagOptions`), ``page_options`` (dict), ``manifest``, ``messages``
    (the options the reader dropped, each named)."""

    data: pd.DataFrame
    name: str
    mapping: dict
    options: LagOptions
    page_options: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)
    messages: tuple = ()

    def to_frame(self) -> pd.DataFrame:
        """One row per file listed in the manifest (name, bytes, sha256)."""
        return pd.DataFrame(self.manifest.get("files", []), columns=["name", "bytes", "sha256"])

    def summary(self) -> str:
        fp = self.manifest.get("data") if isinstance(self.manifest.get("data"), dict) else {}
        return (f"Bundle '{self.name}': {fp.get('rows', len(self.data))} rows, data fingerprint "
                f"{str(fp.get('sha256', ''))[:12]}, created {self.manifest.get('created', 'unknown')}.")


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def data_csv(df: pd.DataFrame) -> bytes:
    """The canonical frame as UTF-8 CSV for people and scripts: floats written to round-trip exactly,
    text cells a spreadsheet would run neutralised reversibly (:func:`analysis.export.csv_bytes`,
    ``csv_encoding`` = :data:`analysis.export.CSV_ENCODING`; the scripts undo it)."""
    return csv_bytes(df)


def data_parquet(df: pd.DataFrame) -> bytes:
    """The canonical frame as Parquet: the exact, machine-readable copy the bundle loader reads."""
    out = df.copy(deep=False)
    out.attrs = {}
    buf = io.BytesIO()
    out.to_parquet(buf, index=False)
    return buf.getvalue()


def _json_value(v):
    if isinstance(v, tuple):
        return [_json_value(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _safe_name(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("._") or "figure"
    return s[:80]


def make_bundle(
    df: pd.DataFrame,
    options: LagOptions,
    name: str,
    mapping: Mapping | None = None,
    page_options: Mapping | None = None,
    seeds: Mapping | None = None,
    report_html: str | bytes | None = None,
    figures: Mapping | None = None,
    created: _dt.datetime | None = None,
    decomposition: Mapping | None = None,
    growth=None,
) -> bytes:
    """The reproducibility bundle (zip bytes) of ``df`` analysed with ``options``.

    ``mapping`` (``{canonical: column}``, or one such dict per uploaded file)
    defaults to ``df.attrs["mapping"]`` or the identity of the canonical
    columns present. ``figures`` maps a name to a plotly figure
    (rendered to SVG with kaleido) or to ready SVG bytes/text. The R script is
    included when :func:`analysis.report.r_script` supports the options;
    otherwise README.txt says which option it cannot reproduce. ``decomposition``
    (``{"study": …, "direction": …}``) adds the R script of that study's
    total/within/between trio with the options' lag, standardization and window;
    ``growth`` (a :class:`analysis.convergence.GrowthResult` of these data) adds
    its model rows and R script under ``growth/``.
    """
    from analysis.report import package_versions, r_script, reproduction_script

    if not isinstance(options, LagOptions):
        raise ValueError("options must be analysis.lagged.LagOptions.")
    created = created or _dt.datetime.now(_dt.UTC)
    csv = data_csv(df)
    if mapping is None:
        mapping = df.attrs.get("mapping") or {c: c for c in CANONICAL if c in df.columns}
    files: dict[str, bytes] = {DATA_NAME: csv, PARQUET_NAME: data_parquet(df)}
    files["mapping.json"] = json.dumps(dict(mapping), indent=2, ensure_ascii=False, default=str).encode("utf-8")
    opts = {k: _json_value(v) for k, v in options.to_dict().items()}
    files["options.json"] = json.dumps({"lag_options": opts, "page_options": dict(page_options or {})},
                                       indent=2, ensure_ascii=False, default=str).encode("utf-8")
    files["reproduce_analysis.py"] = reproduction_script(DATA_NAME, options.to_dict()).encode("utf-8")
    r_note = ""
    try:
        files["reproduce_analysis.R"] = r_script(DATA_NAME, options, data=df).encode("utf-8")
    except ValueError as exc:
        r_note = f"No R script: {exc}"
    notes = [r_note] if r_note else []
    if decomposition is not None:
        from analysis.rscript_models import r_decomposition_script

        try:
            files["reproduce_decomposition.R"] = r_decomposition_script(
                DATA_NAME, decomposition["study"], decomposition["direction"], options.lag, options.standardize,
                options.sessions).encode("utf-8")
        except ValueError as exc:
            notes.append(f"No R script of the total/within/between models: {exc}")
    if growth is not None:
        from analysis.rscript_models import r_growth_script

        files["growth/growth_model_data.csv"] = data_csv(growth.model_data())
        files["growth/reproduce_growth_models.R"] = r_growth_script("growth_model_data.csv", growth).encode("utf-8")
    if report_html is not None:
        files["report.html"] = report_html.encode("utf-8") if isinstance(report_html, str) else bytes(report_html)
    for fname, svg in _svgs(figures or {}).items():
        files[f"figures/{_safe_name(fname)}.svg"] = svg
    files["README.txt"] = _readme(name, "\n".join(notes)).encode("utf-8")
    manifest = {
        "format": BUNDLE_FORMAT,
        "name": str(name),
        "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": {"file": DATA_NAME, "sha256": _sha(csv), "rows": int(len(df)), "columns": [str(c) for c in df.columns]},
        "csv_encoding": CSV_ENCODING,
        "packages": package_versions(),
        "seeds": dict(seeds or {}),
        "files": [{"name": n, "bytes": len(b), "sha256": _sha(b)} for n, b in files.items()],
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False, default=str))
        for n, b in files.items():
            z.writestr(n, b)
    return buf.getvalue()


def _svgs(figures: Mapping) -> dict:
    """name → SVG bytes; plotly figures are rendered with kaleido in one batch (one browser start for all,
    about 0.7 s per figure instead of 4 s each)."""
    import os
    import tempfile

    out, plots = {}, {}
    for name, fig in figures.items():
        if isinstance(fig, bytes):
            out[name] = fig
        elif isinstance(fig, str):
            out[name] = fig.encode("utf-8")
        else:
            plots[name] = fig
    if plots:
        import plotly.io as pio

        with tempfile.TemporaryDirectory() as td:
            paths = [os.path.join(td, f"{i}.svg") for i in range(len(plots))]
            figs = list(plots.values())
            pio.write_images(figs, paths, format="svg", width=1100,
                             height=[max(500, int(f.layout.height or 500)) for f in figs])
            for name, path in zip(plots, paths):
                with open(path, "rb") as fh:
                    out[name] = fh.read()
    return {n: out[n] for n in figures}


def _readme(name: str, r_note: str) -> str:
    return f"""Reproducibility bundle of the Alliance <-> Symptoms dashboard
Data set: {name}

data.csv                 the canonical long data exactly as analysed (METHODS section 1)
mapping.json             which column of the original file became which canonical column
options.json             every analysis option
manifest.json            data fingerprint (SHA-256), package versions, seeds, file checksums
reproduce_analysis.py    Python: pip install the dashboard's project folder once, then
                         python reproduce_analysis.py   (from any folder)
reproduce_analysis.R     R (lme4 + metafor): Rscript reproduce_analysis.R   (in this folder)
reproduce_decomposition.R  the total/within/between models of one study (lme4 + lmerTest), when included
growth/                  the convergence growth models' rows and R script (run Rscript in growth/), when included
report.html, figures/    the report and the figures (SVG), when included

Load the whole zip on the dashboard's Data page to restore data, mapping and options.
{r_note}
"""


def is_bundle(content: bytes) -> bool:
    """True when ``content`` is a zip with a bundle manifest."""
    if not content[:4] == b"PK\x03\x04":
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as z:
            return "manifest.json" in z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError, NotImplementedError):
        return False


def _fail(msg: str):
    raise adata.DataError(msg)


# what reading a zip member can raise for a damaged or crafted file: a bad CRC or a lying size
# (BadZipFile), an encrypted member (RuntimeError), an unknown compression method
# (NotImplementedError), a corrupt deflate stream (zlib.error), a truncated file (EOFError, OSError)
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, NotImplementedError, zlib.error, EOFError,
               OSError, ValueError, KeyError, OverflowError, IndexError, TypeError)


def _open_zip(content: bytes) -> zipfile.ZipFile:
    if isinstance(content, (bytes, bytearray, memoryview)):
        content = io.BytesIO(content)
    elif not (hasattr(content, "read") and hasattr(content, "seek")):
        _fail("A reproducibility bundle is a zip file's bytes.")
    try:
        content.seek(0)
        z = zipfile.ZipFile(content)  # a file object (an upload) is read in place, not copied
        infos = z.infolist()
    except _ZIP_ERRORS:
        _fail("This file is not a readable zip file, so it is not a reproducibility bundle.")
    if len(infos) > MAX_MEMBERS:
        _fail(f"The bundle holds {len(infos):,} files; a bundle made by this app holds at most {MAX_MEMBERS}.")
    total = sum(max(int(i.file_size), 0) for i in infos)
    if total > MAX_BYTES:
        _fail(f"The bundle is too large to read: {total / 1e6:,.0f} MB uncompressed; the limit is "
              f"{MAX_BYTES // (1024 * 1024)} MB, the same as for an uploaded file.")
    return z


def _member(z: zipfile.ZipFile, name: str, budget: list[int], keep: bool = True) -> bytes | str:
    """One member's bytes, read in chunks: never more than its stated size or the bundle's budget
    (a member whose header understates its size is refused, not read to the end). ``keep=False``:
    only its SHA-256 (hex), so a large member is checked without being held in memory."""
    try:
        info = z.getinfo(name)
        if info.flag_bits & 0x1:
            _fail(f"{name} in the bundle is encrypted; bundles made by this app are not.")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            _fail(f"{name} in the bundle uses a compression method (number {info.compress_type}) this app does "
                  "not read; bundles made by this app use deflate.")
        chunks, n, sha = [], 0, hashlib.sha256()
        with z.open(info) as fh:
            while True:
                chunk = fh.read(1 << 20)
                if not chunk:
                    break
                n += len(chunk)
                if n > info.file_size or n > budget[0]:
                    _fail(f"{name} in the bundle is larger than its zip header says; the bundle is damaged.")
                if keep:
                    chunks.append(chunk)
                else:
                    sha.update(chunk)
        budget[0] -= n
        return b"".join(chunks) if keep else sha.hexdigest()
    except adata.DataError:
        raise
    except _ZIP_ERRORS as exc:
        _fail(f"{name} in the bundle cannot be read: the zip file is damaged ({type(exc).__name__}).")


def _json(b: bytes, name: str):
    def no_constant(c):
        raise ValueError(c)

    try:
        return json.loads(b.decode("utf-8"), parse_constant=no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        _fail(f"The bundle's {name} is not valid JSON.")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_manifest(m) -> dict:
    """Every field the reader uses, with its type; raises DataError naming the first wrong one."""
    if not isinstance(m, dict) or m.get("format") != BUNDLE_FORMAT:
        _fail(f"Unknown bundle format (expected {BUNDLE_FORMAT}).")
    if not isinstance(m.get("name", ""), str):
        _fail("The bundle's manifest.json: 'name' must be text.")
    if not isinstance(m.get("created", ""), str):
        _fail("The bundle's manifest.json: 'created' must be text.")
    d = m.get("data")
    if not isinstance(d, dict) or not isinstance(d.get("sha256"), str):
        _fail("The bundle's manifest.json: 'data' must hold the data file's 'sha256' (text).")
    if "rows" in d and not (_is_int(d["rows"]) and d["rows"] >= 0):
        _fail("The bundle's manifest.json: 'data.rows' must be a whole number.")
    if "columns" in d and not (isinstance(d["columns"], list) and all(isinstance(c, str) for c in d["columns"])):
        _fail("The bundle's manifest.json: 'data.columns' must be a list of names.")
    files = m.get("files")
    if not isinstance(files, list) or not files:
        _fail("The bundle's manifest.json: 'files' must be a list of files.")
    for f in files:
        if not (isinstance(f, dict) and isinstance(f.get("name"), str) and isinstance(f.get("sha256"), str)
                and _is_int(f.get("bytes", 0))):
            _fail("The bundle's manifest.json: every entry of 'files' needs a 'name' and a 'sha256' (text) "
                  "and 'bytes' (a whole number).")
    for key in ("seeds", "packages"):
        if not isinstance(m.get(key, {}), dict):
            _fail(f"The bundle's manifest.json: '{key}' must be a mapping.")
    if not isinstance(m.get("csv_encoding", ""), str):
        _fail("The bundle's manifest.json: 'csv_encoding' must be text.")
    return m


def _lag_options(raw, df: pd.DataFrame) -> tuple[LagOptions, list[str]]:
    """The bundle's lag options through the options' declarations (:func:`analysis.options.clean`: the
    same checks as the widgets and links, impossible combinations included) and against these data
    (window inside the data's sessions, covariates that are columns). A bad value is dropped (its
    default used) with a message that names it. Never raises."""
    from analysis.options import clean

    if not isinstance(raw, dict):
        return LagOptions(), ["Ignored the bundle's lag options: they are not a mapping of names to values."]
    notes: list[str] = []
    good: dict = {}
    for key, value in raw.items():
        shown = str(value)[:60]
        try:
            ok, msgs = clean(LagOptions, {str(key): value})
            notes += [m[:300] for m in msgs]
            if key not in ok:
                continue
            v = ok[key]
            if key == "covariates" and any(c not in df.columns for c in v):
                raise ValueError("not a column of the data.")
            if key == "sessions" and v is not None:
                lo, hi = int(df["session"].min()), int(df["session"].max())
                if not lo <= v[0] <= v[1] <= hi:
                    raise ValueError(f"the window must lie within the data's sessions {lo}–{hi}.")
            good[key] = v
        except (ValueError, TypeError, OverflowError, AttributeError, KeyError) as exc:
            notes.append(f"Ignored {str(key)[:60]} = {shown}: {str(exc)[:200]}")
    ok, msgs = clean(LagOptions, good)
    notes += msgs
    while True:
        try:
            return LagOptions(**ok), notes
        except (ValueError, TypeError, OverflowError) as exc:  # a combination the declarations missed
            key = next(iter(ok))
            notes.append(f"Ignored {key} = {str(ok.pop(key))[:60]}: {str(exc)[:200]}")


def read_bundle(content) -> Bundle:
    """Read a bundle made by :func:`make_bundle`: an untrusted file, checked before anything is used.
    ``content``: the zip's bytes or a seekable binary file object (read in place).

    The zip (at most :data:`MAX_BYTES` uncompressed, the upload limit, and
    :data:`MAX_MEMBERS` files; no encryption; stored or deflated members, each
    read no further than its stated size), every manifest field's type, every
    file's SHA-256 and the data fingerprint are checked; any failure raises
    :class:`analysis.data.DataError` with a plain message (never another
    exception). The data come from ``data.parquet`` (an exact copy) when present,
    else ``data.csv`` through the same intake as an upload. Lag options are
    checked value by value: a bad one is dropped (its default kept) and named in
    ``Bundle.messages``. Page options must be a mapping of names to JSON values;
    the app checks each against its widget's declaration when it restores them.
    """
    budget = [MAX_BYTES]
    with _open_zip(content) as z:
        names = set(z.namelist())
        if "manifest.json" not in names:
            _fail("This zip file has no manifest.json, so it is not a reproducibility bundle.")
        manifest = _check_manifest(_json(_member(z, "manifest.json", budget), "manifest.json"))
        listed = {f["name"]: f["sha256"] for f in manifest["files"]}
        for n in (DATA_NAME, "options.json"):
            if n not in names or n not in listed:
                _fail(f"The bundle lacks {n}.")
        wanted = [n for n in (PARQUET_NAME, DATA_NAME, "options.json", "mapping.json") if n in listed]
        blobs, shas = {}, {}
        for n in wanted:
            if n not in names:
                _fail(f"The bundle lacks {n}, which its manifest lists.")
            # with a Parquet copy the CSV is only checked (streamed through SHA-256), never held
            keep = not (n == DATA_NAME and PARQUET_NAME in listed)
            b = _member(z, n, budget, keep=keep)
            shas[n] = _sha(b) if keep else b
            if shas[n] != listed[n]:
                _fail(f"{n} in the bundle was changed after the bundle was made (checksum differs).")
            if keep:
                blobs[n] = b
        for n in listed:  # the other files are for people (scripts, report); they must be there
            if n not in names:
                _fail(f"The bundle lacks {n}, which its manifest lists.")
    if manifest["data"]["sha256"] != shas[DATA_NAME]:
        _fail("The data fingerprint in manifest.json does not match data.csv.")
    opts_doc = _json(blobs["options.json"], "options.json")
    if not isinstance(opts_doc, dict):
        _fail("The bundle's options.json is not a mapping.")
    mapping = _json(blobs["mapping.json"], "mapping.json") if "mapping.json" in blobs else {}
    if not isinstance(mapping, (dict, list)):
        _fail("The bundle's mapping.json is not a mapping.")
    page_options = opts_doc.get("page_options") or {}
    df = _bundle_data(blobs, manifest)
    del blobs
    options, notes = _lag_options(opts_doc.get("lag_options", {}), df)
    if not isinstance(page_options, dict):
        notes.append("Ignored the page options: they are not a mapping of names to values.")
        page_options = {}
    return Bundle(data=df, name=str(manifest.get("name") or "bundle"), mapping=dict(mapping) if isinstance(
        mapping, dict) else {"files": mapping}, options=options, page_options=dict(page_options),
        manifest=manifest, messages=tuple(notes))


def _bundle_data(blobs: dict, manifest: dict) -> pd.DataFrame:
    """The canonical frame: the Parquet copy when the bundle has one (exact), else data.csv (the same
    intake as an upload; a neutralised CSV, ``csv_encoding`` = :data:`CSV_ENCODING`, is decoded)."""
    if PARQUET_NAME in blobs:
        try:
            raw = pd.read_parquet(io.BytesIO(blobs.pop(PARQUET_NAME)))
        except Exception:  # noqa: BLE001 - pyarrow raises many types for a damaged file
            _fail(f"{PARQUET_NAME} in the bundle cannot be read.")
    else:
        raw = adata.load(blobs[DATA_NAME], filename=DATA_NAME)
        if manifest.get("csv_encoding") == CSV_ENCODING:
            raw = unneutralize_frame(raw)
    identity = {c: c for c in CANONICAL if c in raw.columns}
    try:
        return adata.to_canonical(raw, identity)
    except adata.DataError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        _fail(f"The bundle's data cannot be read: {str(exc)[:300]}")
