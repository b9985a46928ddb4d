"""The column-mapping form: one uploaded file → sheet, wide reshape, column choices (METHODS §1).

Used by the Data page (every uploaded file) and the Screening page (the study to screen), so
both pages ask the same questions in the same words. The form reads only the head of the file
(:func:`ui.compute.preview_file`), so it appears quickly for any file under the upload limit;
the whole file is read once the choices are used (:func:`canonical`).

Widget keys come from the page: ``key(kind, default, options=None, field="")`` returns the key of
a widget after putting ``default`` into ``st.session_state`` when the key has no valid value yet
(the pages differ only in how they name and persist keys). The widgets are therefore created
without ``index=``/``value=``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import streamlit as st

from analysis import data as adata
from ui import compute
from ui.safe import Markup, esc, md

CANONICAL = {
    "study": "Study or site (optional)",
    "patient": "Patient id (required)",
    "session": "Session or week number (required)",
    "alliance": "Patient-rated alliance (required)",
    "symptoms": "Symptom score (required)",
    "therapist_alliance": "Therapist-rated alliance (optional)",
    "therapist": "Therapist id (optional)",
}
REQUIRED = ("patient", "session", "alliance", "symptoms")
NONE = "— not in this file —"
FILE_TYPES = ["csv", "tsv", "txt", "xlsx", "xls", "sav", "dta", "parquet"]
HELP = {"study": "Several studies or sites in one file. Patient ids may then restart in each study or site: the "
                 "study and the patient id together identify a patient. Without it, the file is one study."}
SHOWN_ROWS = 8
SHOWN_COLUMNS = 40

KeyFn = Callable[..., str]


@dataclass(frozen=True)
class Choice:
    """Everything the form asked about one file; :func:`canonical` applies it to the whole file."""

    name: str
    sheet: str | None
    stubs: dict | None
    id_col: str | None
    site_col: str | None
    mapping: dict = field(default_factory=dict)
    label: str = ""
    higher_better: bool = False

    @property
    def missing(self) -> list[str]:
        """Required canonical columns that are not chosen."""
        return [f for f in REQUIRED if not self.mapping.get(f)]

    def key(self) -> tuple:
        """Hashable form of the choices (a cache key)."""
        return (self.name, self.sheet, tuple((self.stubs or {}).items()), self.id_col, self.site_col,
                tuple(sorted(self.mapping.items())), self.label, self.higher_better)


def plain_keys(prefix: str, suffix: str) -> KeyFn:
    """Keys ``{kind}_{prefix}_{field}_{suffix}`` whose defaults are set on first use (Data page)."""

    def key(kind: str, default, options=None, field: str = "") -> str:
        k = f"{kind}_{prefix}_{field + '_' if field else ''}{suffix}"
        if k not in st.session_state or (options is not None and st.session_state[k] not in options):
            st.session_state[k] = default
        return k

    return key


def _sheet(name: str, content: bytes, key: KeyFn) -> tuple[bool, str | None]:
    if not name.lower().endswith((".xlsx", ".xls")):
        return True, None
    try:
        sheets = compute.file_sheets(content, name)
    except adata.DataError as e:
        st.error(f"{esc(name)}: {esc(e, limit=600)}")
        return False, None
    if not sheets:
        return True, None
    return True, st.selectbox("Sheet", sheets, key=key("sheet", sheets[0], sheets))


def _show_head(name: str, head: pd.DataFrame) -> None:
    rows = f"{len(head):,} rows" if head.attrs.get("complete", True) else f"the first {len(head):,} rows"
    more = f" (the first {SHOWN_COLUMNS} are shown)" if head.shape[1] > SHOWN_COLUMNS else ""
    st.caption(md("{name}: {rows} read for this preview, {cols:,} columns{more}.", name=esc(name), rows=rows,
                  cols=head.shape[1], more=more))
    st.dataframe(head.iloc[:SHOWN_ROWS, :SHOWN_COLUMNS], width="stretch")


def _reshape(raw: pd.DataFrame, key: KeyFn):
    """Wide file controls; returns (long frame, stubs, id column, site column) or None on an error."""
    try:
        wide = adata.detect_wide(raw)
    except adata.DataError:
        wide = None
    if not wide or not st.checkbox("This file has one column per session: reshape to long",
                                   key=key("wide", True)):
        return raw, None, None, None
    stub_re = re.compile("|".join(rf"{re.escape(s.lower())}[_.\- ]?[0-9]+" for s in wide))
    stub_cols = {str(c) for c in raw.columns if stub_re.fullmatch(str(c).strip().lower())}
    cols = [str(c) for c in raw.columns if str(c) not in stub_cols] or [str(c) for c in raw.columns]
    guess = adata.suggest_mapping(raw)
    id_default = str(guess.get("patient")) if str(guess.get("patient")) in cols else cols[0]
    c1, c2 = st.columns(2)
    id_col = c1.selectbox("Patient id column", cols, key=key("wideid", id_default, cols))
    sites = [NONE] + [c for c in cols if c != id_col]
    groups = [g for g in adata.grouping_columns(raw, patient=id_col) if str(g.column) in sites]
    site_default = next((str(g.column) for g in groups if g.ids_repeat), None)
    if site_default is None and guess.get("study") is not None and str(guess["study"]) in sites:
        site_default = str(guess["study"])
    site = c2.selectbox("Site or study column (part of the patient key)", sites,
                        key=key("widesite", site_default or NONE, sites),
                        help="Choose it when patient ids restart at 1 in each site: patient 1 of site A and "
                             "patient 1 of site B are then two patients.")
    site_col = None if site == NONE else site
    try:
        long = adata.wide_to_long(raw, id_col=id_col, stubs=wide, study_col=site_col)
    except adata.DataError as e:
        st.error(esc(e, limit=600))
        return None
    return long, wide, id_col, site_col


def _grouping_warning(raw: pd.DataFrame, mapping: dict) -> None:
    if mapping.get("study") or not mapping.get("patient"):
        return
    try:
        groups = adata.grouping_columns(raw, patient=mapping["patient"], session=mapping.get("session"),
                                        exclude=[c for c in mapping.values() if c])
    except adata.DataError:
        return
    if groups:
        st.warning(esc(groups[0].message, limit=None))


def form(name: str, content: bytes, key: KeyFn) -> Choice | None:
    """Draw the form for one uploaded file; None when the file (or its head) cannot be read."""
    ok, sheet = _sheet(name, content, key)
    if not ok:
        return None
    try:
        head = compute.preview_file(content, name, sheet)
    except adata.DataError as e:
        st.error(f"{esc(name)}: {esc(e, limit=600)}")
        return None
    _show_head(name, head)
    reshaped = _reshape(head, key)
    if reshaped is None:
        return None
    raw, stubs, id_col, site_col = reshaped
    try:
        suggestion = adata.suggest_mapping(raw)
    except adata.DataError:
        suggestion = {}
    if site_col:
        suggestion["study"] = site_col
    cols = [NONE] + [str(c) for c in raw.columns]
    var_labels = adata.column_labels(head)  # SPSS/Stata variable labels: shown beside each column, used above

    def shown(c: str) -> str:
        return f"{c} — {var_labels[c]}" if c in var_labels else c

    if var_labels:
        st.caption("Variable labels from the file: " + esc("; ".join(f"{c} = {v}" for c, v in var_labels.items()),
                                                          limit=600))
    mapping: dict = {}
    mcols = st.columns(4)
    for j, (fld, label) in enumerate(CANONICAL.items()):
        guess = suggestion.get(fld)
        default = str(guess) if guess is not None and str(guess) in cols else NONE
        sel = mcols[j % 4].selectbox(label, cols, key=key("map", default, cols, field=fld), help=HELP.get(fld),
                                     format_func=shown)
        mapping[fld] = None if sel == NONE else sel
    stem = name.rsplit(".", 1)[0] if "." in name else name
    label = st.text_input("Study label (used when no study column is mapped)", key=key("label", stem))
    hib = False
    if mapping["symptoms"]:
        try:
            hib = bool(adata.suggest_higher_is_better(mapping["symptoms"], raw))
        except adata.DataError:
            hib = False
    higher_better = st.checkbox("Higher symptom scores mean *better* (e.g. ORS): flip so that higher = more severe",
                                key=key("flip", hib, field=str(mapping["symptoms"] or "")))
    _grouping_warning(raw, mapping)
    return Choice(name, sheet, dict(stubs) if stubs else None, id_col, site_col, mapping, label or stem,
                  bool(higher_better))


def summary(choice: Choice) -> str:
    """'patient ← ID · session ← week …' (column names escaped) for a caption."""
    return Markup(" · ".join(md("{f} ← {c}", f=f, c=esc(choice.mapping[f])) for f in CANONICAL
                             if choice.mapping.get(f)))


def canonical(content: bytes, choice: Choice, cached: bool = True) -> pd.DataFrame:
    """The whole file read and converted with the form's choices (raises DataError); ``cached=False`` for
    a read used once (the Data page keeps the result in the session, not in the shared cache)."""
    return compute.canonical_file(content, choice) if cached else compute.read_canonical(content, choice)


def kept_upload(store: dict, label: str, key: str, forget_key: str):
    """A one-file uploader whose file survives a visit to another page: ``(name, bytes)`` or None.

    The file is kept in ``store`` (a plain dict in the session state); when the uploader is
    drawn again empty after a page switch, the kept file is offered with a "Forget" button.
    """
    fresh = key not in st.session_state  # the uploader is new on this run (first visit or back from a page)
    up = st.file_uploader(
        label, type=FILE_TYPES, key=key,
        help="One row per patient × session (long) or one column per session (wide: wai_1 … wai_12). "
             "CSV, TSV, Excel, SPSS, Stata or Parquet.",
    )
    if up is not None:
        store["file"] = (up.name, up.getvalue())
        store["file_seen"] = up.file_id
        return store["file"]
    if not fresh and store.get("file_seen"):  # the user removed the file from the uploader
        store.pop("file", None)
        store["file_seen"] = None
        return None
    store["file_seen"] = None
    if "file" in store:
        c1, c2 = st.columns([5, 1])
        c1.caption(f"Screening **{esc(store['file'][0])}**, uploaded earlier in this session. Upload another file to "
                   "replace it.")
        if c2.button("Forget this file", key=forget_key):
            store.pop("file", None)
            st.rerun()
        return store.get("file")
    return None
