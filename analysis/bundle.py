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
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

import pandas as pd

from analysis import data as adata
from analysis.lagged import LagOptions

__all__ = ["BUNDLE_FORMAT", "Bundle", "is_bundle", "make_bundle", "read_bundle"]

BUNDLE_FORMAT = "alliance-dashboard-bundle/1"
DATA_NAME = "data.csv"
_MAX_BYTES = 500 * 1024 * 1024  # uncompressed size limit when reading (zip-bomb guard)
CANONICAL = ("study", "patient", "session", "alliance", "symptoms", "therapist_alliance", "therapist")


@dataclass(frozen=True)
class Bundle:
    """A read bundle: ``data`` (canonical frame), ``name``, ``mapping``,
    ``options`` (:class:`LagOptions`), ``page_options`` (dict), ``manifest``."""

    data: pd.DataFrame
    name: str
    mapping: dict
    options: LagOptions
    page_options: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """One row per file listed in the manifest (name, bytes, sha256)."""
        return pd.DataFrame(self.manifest.get("files", []), columns=["name", "bytes", "sha256"])

    def summary(self) -> str:
        fp = self.manifest.get("data", {})
        return (f"Bundle '{self.name}': {fp.get('rows', len(self.data))} rows, data fingerprint "
                f"{str(fp.get('sha256', ''))[:12]}, created {self.manifest.get('created', 'unknown')}.")


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def data_csv(df: pd.DataFrame) -> bytes:
    """The canonical frame as UTF-8 CSV (floats written to round-trip exactly)."""
    return df.to_csv(index=False).encode("utf-8")


def _json_value(v):
    if isinstance(v, tuple):
        return [_json_value(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _options_from(d: Mapping) -> LagOptions:
    names = {f.name for f in fields(LagOptions)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"The bundle's options.json has option(s) this version does not know: {', '.join(unknown)}.")
    kw = dict(d)
    if kw.get("sessions") is not None:
        kw["sessions"] = tuple(kw["sessions"])
    if "directions" in kw:
        kw["directions"] = tuple(kw["directions"])
    return LagOptions(**kw)


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
    files: dict[str, bytes] = {DATA_NAME: csv}
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
    except zipfile.BadZipFile:
        return False


def read_bundle(content: bytes) -> Bundle:
    """Read a bundle made by :func:`make_bundle`; every file's SHA-256 is checked.

    The data go through the same intake as an upload (``data.load`` and
    ``data.to_canonical`` with the identity mapping of the canonical file).
    Raises :class:`analysis.data.DataError` for a file that is not a bundle, a
    changed file (checksum mismatch) or an unknown option.
    """
    try:
        z = zipfile.ZipFile(io.BytesIO(content))
    except zipfile.BadZipFile:
        raise adata.DataError("This file is not a zip file, so it is not a reproducibility bundle.") from None
    with z:
        names = set(z.namelist())
        if "manifest.json" not in names:
            raise adata.DataError("This zip file has no manifest.json, so it is not a reproducibility bundle.")
        if sum(i.file_size for i in z.infolist()) > _MAX_BYTES:
            raise adata.DataError("The bundle is too large to read (over 500 MB uncompressed).")
        try:
            manifest = json.loads(z.read("manifest.json").decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise adata.DataError("The bundle's manifest.json cannot be read.") from None
        if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
            raise adata.DataError(f"Unknown bundle format (expected {BUNDLE_FORMAT}).")
        listed = {f.get("name"): f.get("sha256") for f in manifest.get("files", []) if isinstance(f, dict)}
        for n in (DATA_NAME, "options.json"):
            if n not in names or n not in listed:
                raise adata.DataError(f"The bundle lacks {n}.")
        blobs = {}
        for n, sha in listed.items():
            if n not in names:
                raise adata.DataError(f"The bundle lacks {n}, which its manifest lists.")
            b = z.read(n)
            if _sha(b) != sha:
                raise adata.DataError(f"{n} in the bundle was changed after the bundle was made (checksum differs).")
            blobs[n] = b
    if manifest.get("data", {}).get("sha256") != _sha(blobs[DATA_NAME]):
        raise adata.DataError("The data fingerprint in manifest.json does not match data.csv.")
    try:
        opts_doc = json.loads(blobs["options.json"].decode("utf-8"))
        mapping = json.loads(blobs["mapping.json"].decode("utf-8")) if "mapping.json" in blobs else {}
        options = _options_from(opts_doc.get("lag_options", {}))
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError, TypeError) as exc:
        raise adata.DataError(f"The bundle's options cannot be read: {exc}") from None
    except ValueError as exc:
        raise adata.DataError(str(exc)) from None
    raw = adata.load(blobs[DATA_NAME], filename=DATA_NAME)
    identity = {c: c for c in CANONICAL if c in raw.columns}
    df = adata.to_canonical(raw, identity)
    return Bundle(data=df, name=str(manifest.get("name", "bundle")), mapping=dict(mapping), options=options,
                  page_options=dict(opts_doc.get("page_options") or {}), manifest=manifest)
