"""Column mapping: which file column is study, patient, session, alliance, symptoms … (METHODS §1)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.data._common import CANONICAL_COLUMNS, DataError, _compact, _guard, _normalize_name

# Candidate names per canonical column, best first (compared after
# normalisation: lower case, separators -> '_'; also with '_' removed).
_CANDIDATES: dict[str, tuple[str, ...]] = {
    "study": (
        "study",
        "study_id",
        "study_name",
        "site",
        "trial",
        "centre",
        "center",
        "dataset",
        # site names in other languages (German, French, Spanish, Italian, Dutch)
        "standort",
        "zentrum",
        "klinik",
        "clinic",
        "sitio",
        "centro",
        "sede",
        "studie",
        "estudio",
        "etude",
        "studio",
        "ort",
        "praxis",
        "ambulanz",
        "einrichtung",
        "location",
        "hospital",
        "krankenhaus",
        # nl, sv, fr, es, it
        "locatie",
        "centrum",
        "mottagning",
        "ziekenhuis",
        "ospedale",
        "hopital",
    ),
    "patient": (
        "patient",
        "patient_id",
        "client",
        "client_id",
        "id",
        "pid",
        "subject",
        "subject_id",
        "case",
        "case_id",
        "participant",
        "participant_id",
        "person",
        "code",
        "vp",
        "vpn",
        "klient",
        "proband",
        # de, fr, es, nl, it, sv (accents are folded before comparing)
        "patient_nr",
        "fall",
        "fallnummer",
        "sujet",
        "paciente",
        "cliente",
        "sujeto",
        "participante",
        "caso",
        "deelnemer",
        "paziente",
        "soggetto",
        "partecipante",
        "deltagare",
    ),
    "session": (
        "session",
        "sess",
        "session_nr",
        "session_number",
        "week",
        "time",
        "visit",
        "timepoint",
        "wave",
        "occasion",
        "sitzung",
        "woche",
        "zeitpunkt",
        # de, fr, es, nl, it, sv
        "sitzungsnummer",
        "termin",
        "stunde",
        "messzeitpunkt",
        "seance",
        "semaine",
        "visite",
        "sesion",
        "semana",
        "visita",
        "sessie",
        "zitting",
        "seduta",
        "sessione",
        "settimana",
        "vecka",
        "besok",
        "tillfalle",
    ),
    "therapist_alliance": (
        "therapist_alliance",
        "wai_t",
        "wai_th",
        "therapist_wai",
        "t_wai",
        "th_wai",
        "wait",
        "calpas_t",
        "calpas_th",
        "wai_therapist",
        "alliance_t",
        "alliance_th",
        "alliance_therapist",
        "t_alliance",
        "th_alliance",
        "wai_sr_t",
        "wai_s_t",
        "hai_t",
        "haq_t",
        # de, fr, es, nl, it, sv
        "allianz_therapeut",
        "therapeut_allianz",
        "allianz_t",
        "allianz_th",
        "alliance_therapeute",
        "alianza_terapeuta",
        "alliantie_therapeut",
        "alleanza_terapeuta",
        "allians_terapeut",
    ),
    "alliance": (
        "alliance",
        "wai",
        "wai_p",
        "wai_c",
        "wai_sr",
        "wai_s",
        "hai",
        "haq",
        "haq_ii",
        "calpas",
        "calpas_p",
        "srs",
        "tsr",
        "patient_alliance",
        "client_alliance",
        "alliance_p",
        "alliance_c",
        "working_alliance",
        "p_wai",
        # de, fr, es, nl, it, sv
        "allianz",
        "therapeutische_allianz",
        "arbeitsbundnis",
        "arbeitsbeziehung",
        "alliance_therapeutique",
        "alianza",
        "alianza_terapeutica",
        "alliantie",
        "werkrelatie",
        "alleanza",
        "alleanza_terapeutica",
        "allians",
        "arbetsallians",
    ),
    "symptoms": (
        "symptoms",
        "symptom",
        "bdi",
        "bdi_ii",
        "bdi2",
        "phq",
        "phq9",
        "oq",
        "oq45",
        "scl",
        "scl90",
        "gsi",
        "spin",
        "lsas",
        "gad",
        "gad7",
        "hamd",
        "hdrs",
        "madrs",
        "bsi",
        "core",
        "core_om",
        "ors",
        "severity",
        "depression",
        # de, fr, es, nl, it, sv
        "symptome",
        "symptombelastung",
        "belastung",
        "beschwerden",
        "schweregrad",
        "symptomes",
        "severite",
        "sintomas",
        "sintoma",
        "gravedad",
        "symptomen",
        "klachten",
        "sintomi",
        "sintomo",
        "gravita",
        "symtom",
        "svarighetsgrad",
    ),
    "therapist": (
        "therapist",
        "therapist_id",
        "th_id",
        "t_id",
        "therapist_code",
        "therapeut",
        "clinician",
        "clinician_id",
        # de, fr, es, nl, it, sv
        "therapeutin",
        "behandler",
        "therapeute",
        "clinicien",
        "terapeuta",
        "clinico",
        "behandelaar",
        "terapista",
        "terapeut",
        "behandlare",
    ),
}
_ORDER = (
    "study",
    "patient",
    "session",
    "therapist_alliance",
    "alliance",
    "symptoms",
    "therapist",
)

# extra tokens that may surround a candidate inside a longer name
_ID_EXTRAS = {
    "id",
    "nr",
    "no",
    "num",
    "number",
    "code",
    "name",
    "label",
    "key",
    "idx",
    "index",
}
_SESSION_EXTRAS = _ID_EXTRAS | {"point", "pt"}
_THERAPIST_TOKENS = {
    "t",
    "th",
    "ther",
    "therapist",
    "therapeut",
    "therapists",
    "clinician",
    "therapeutin",
    "therapeute",
    "terapeuta",
    "terapeut",
    "behandler",
    "behandelaar",
    "behandlare",
}
_PATIENT_TOKENS = {"p", "c", "pt", "patient", "client", "pat", "klient", "paciente", "paziente", "cliente"}

_HIGHER_IS_BETTER = (
    "ors",
    "who5",
    "who_5",
    "gaf",
    "swls",
    "qol",
    "wemwbs",
    "mhc",
    "wellbeing",
    "well_being",
)
_HIGHER_IS_WORSE = tuple(
    c
    for c in _CANDIDATES["symptoms"]
    if c not in ("symptoms", "symptom", "ors", "severity")
) + (
    "pcl",
    "ybocs",
    "bai",
    "ces_d",
    "cesd",
    "hads",
    "k10",
    "dass",
    "pss",
    "ids",
    "qids",
    "pdss",
    "asi",
    "pswq",
)


def _name_score(canonical: str, name: str) -> tuple[int, int] | None:
    """How well a normalised column name fits a canonical column (None: no fit)."""
    if not name:
        return None
    tokens = name.split("_")
    comp = _compact(name)
    best: tuple[int, int] | None = None
    n_cand = len(_CANDIDATES[canonical])
    for rank, cand in enumerate(_CANDIDATES[canonical]):
        ctoks = cand.split("_")
        score: tuple[int, int] | None = None
        if name == cand or comp == _compact(cand):
            score = (4, n_cand - rank)
        elif tokens[: len(ctoks)] == ctoks and len(tokens) > len(ctoks):
            rest = tokens[len(ctoks) :]
            if canonical in ("patient", "therapist", "study"):
                if set(rest) <= _ID_EXTRAS:
                    score = (3, len(ctoks))
            elif canonical == "session":
                if set(rest) <= _SESSION_EXTRAS:
                    score = (3, len(ctoks))
            elif (
                canonical == "alliance"
                and set(rest) & _THERAPIST_TOKENS
                or canonical == "therapist_alliance"
                and set(rest) & _PATIENT_TOKENS
            ):
                score = None
            else:
                score = (2, len(ctoks))
        else:
            # candidate tokens appear contiguously later in the name ('mean_wai', 'pre_bdi')
            for start in range(1, len(tokens) - len(ctoks) + 1):
                if tokens[start : start + len(ctoks)] == ctoks:
                    others = set(tokens[:start] + tokens[start + len(ctoks) :])
                    if canonical in ("patient", "therapist", "study"):
                        ok = others <= _ID_EXTRAS
                    elif canonical == "session":
                        ok = others <= _SESSION_EXTRAS
                    elif canonical == "alliance":
                        ok = not (others & _THERAPIST_TOKENS)
                    elif canonical == "therapist_alliance":
                        ok = not (others & _PATIENT_TOKENS)
                    else:
                        ok = True
                    if ok:
                        score = (1, len(ctoks))
                    break
        if score is not None and (best is None or score > best):
            best = score
    if best is None and canonical == "therapist_alliance" and set(tokens) & _THERAPIST_TOKENS \
            and set(tokens) & _ALLIANCE_WORDS:  # 'Therapist rating of the alliance', 'WAI Therapeut'
        best = (1, 0)
    return best


_ALLIANCE_WORDS = {"alliance", "allianz", "alianza", "alliantie", "alleanza", "allians", "wai", "calpas", "haq",
                   "hai", "srs", "arbeitsbundnis", "arbeitsbeziehung", "werkrelatie"}


_WIDE_RE = re.compile(r"^(.*?[A-Za-z].*?)([_.\- ]?)([0-9]+)$")


def _wide_groups(columns: Sequence[Any]) -> dict[tuple[str, str], dict[int, int]]:
    """Columns that look like one variable per session.

    Returns ``{(stub lower-case, separator): {session: column position}}`` for
    groups of at least two distinct session numbers.
    """
    groups: dict[tuple[str, str], dict[int, int]] = {}
    for pos, col in enumerate(columns):
        m = _WIDE_RE.match(str(col).strip())
        if not m:
            continue
        stub, sep, num = m.group(1), m.group(2), int(m.group(3))
        key = (stub.strip().lower(), sep)
        groups.setdefault(key, {})
        groups[key].setdefault(num, pos)
    return {k: v for k, v in groups.items() if len(v) >= 2}


@_guard("Could not guess the column mapping")
def suggest_mapping(df: pd.DataFrame) -> dict[str, Any]:
    """Best-guess column for each canonical name (METHODS §1), or None.

    Names are compared case-insensitively after turning separators into
    underscores ('WAI-SR' -> 'wai_sr', 'PatientID' -> 'patient_id'): exact
    matches to common names (id, client, pid, subject, case; sess, week, time,
    visit; wai, hai, haq, calpas, srs, tsr; wai_t, therapist_wai, calpas_t;
    bdi, phq9, oq45, scl, gsi, spin, lsas, gad, hamd, ors; therapist, th_id;
    study, site, trial …, and their German, French, Spanish, Dutch, Italian
    and Swedish equivalents: Allianz, Symptome, Sitzung, Therapeut, séance,
    alianza, sessie, seduta, vecka …; accents are folded) beat names that start
    with one ('wai_sr_total'),
    which beat names that contain one ('mean_wai').  Columns that belong to a
    wide block (wai_1, wai_2, …) are not proposed; see ``detect_wide``.  An
    SPSS/Stata variable label (``attrs["column_labels"]``) is scored like a
    name, just below a name of the same fit ('v7' labelled 'Working alliance'
    is the alliance column).  No
    column is proposed for two canonical names.

    Returns ``{canonical: column label or None}`` for all seven canonical
    names.  Raises DataError if ``df`` is not a DataFrame.

    >>> import pandas as pd
    >>> m = suggest_mapping(pd.DataFrame({"ID": [1, 1], "Session": [1, 2], "WAI": [4.0, 5.0], "BDI": [20, 18]}))
    >>> {k: m[k] for k in ("patient", "session", "alliance", "symptoms")}
    {'patient': 'ID', 'session': 'Session', 'alliance': 'WAI', 'symptoms': 'BDI'}
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError("suggest_mapping needs a table (DataFrame).")
    wide_pos = {p for g in _wide_groups(list(df.columns)).values() for p in g.values()}
    labels = column_labels(df)
    candidates: list[tuple[tuple[int, int], int, int, str, Any]] = []
    seen_names: set[str] = set()
    for pos, col in enumerate(df.columns):
        if pos in wide_pos and not _is_canonical_exact(col):
            continue
        norm = _normalize_name(col)
        if norm in seen_names:
            continue
        seen_names.add(norm)
        label = _normalize_name(labels.get(str(col), ""))
        for c_rank, canonical in enumerate(_ORDER):
            # the name first; an SPSS/Stata variable label counts just below a name of the same fit
            by_name, by_label = _name_score(canonical, norm), _name_score(canonical, label) if label else None
            score = max((2 * s[0] + 1, s[1]) if s is by_name else (2 * s[0], s[1])
                        for s in (by_name, by_label) if s is not None) if (by_name or by_label) else None
            if score is not None:
                candidates.append((score, -c_rank, -pos, canonical, col))
    candidates.sort(key=lambda t: (t[0], t[1], t[2]), reverse=True)
    mapping: dict[str, Any] = {c: None for c in CANONICAL_COLUMNS}
    used: set[int] = set()
    for _score, _crank, negpos, canonical, col in candidates:
        if mapping[canonical] is not None or -negpos in used:
            continue
        mapping[canonical] = col
        used.add(-negpos)
    return mapping


def column_labels(df: pd.DataFrame) -> dict[str, str]:
    """Variable labels of an SPSS or Stata file (``attrs["column_labels"]``, set by ``load``): column → label;
    empty for other files."""
    labels = df.attrs.get("column_labels") if isinstance(df.attrs, dict) else None
    return {str(k): str(v) for k, v in (labels or {}).items() if str(v).strip()}


def _is_canonical_exact(col: Any) -> bool:
    return _normalize_name(col) in CANONICAL_COLUMNS


def suggest_higher_is_better(
    col_name: Any, df: pd.DataFrame | None = None
) -> bool | None:
    """Whether higher scores on the instrument named by ``col_name`` mean *better* (METHODS §1).

    True for well-being style measures such as the ORS (Outcome Rating Scale),
    WHO-5, GAF, SWLS; False for known symptom measures where higher is worse
    (BDI, PHQ, OQ-45, SCL/GSI, SPIN, LSAS, GAD, HAMD, …); None when unknown.
    Pass the frame as ``df`` after ``wide_to_long``: a column it renamed
    (``ORS_1 … ORS_5`` -> 'symptoms') is then judged by its original prefix.
    Never raises.
    """
    with contextlib.suppress(Exception):  # metadata we cannot read is ignored
        stubs = df.attrs.get("wide_stubs") if isinstance(df, pd.DataFrame) else None
        if isinstance(stubs, dict):
            for stub, target in stubs.items():
                if str(target) == str(col_name) and str(stub) != str(col_name):
                    return suggest_higher_is_better(stub)
    try:
        norm = _normalize_name(col_name)
    except Exception:  # noqa: BLE001 - a name we cannot read is simply unknown
        return None
    if not norm:
        return None
    tokens = norm.split("_")
    comp = _compact(norm)

    def hit(names: Iterable[str]) -> bool:
        for n in names:
            c = _compact(n)
            if (
                comp == c
                or tokens[0] == n
                or tokens[0] == c
                or comp.startswith(c)
                and len(c) >= 3
                and comp[len(c) :].isdigit()
            ):
                return True
            if any(t == n for t in tokens):
                return True
        return False

    if hit(_HIGHER_IS_BETTER):
        return True
    if hit(_HIGHER_IS_WORSE):
        return False
    return None



@dataclass(frozen=True)
class Grouping:
    """A column that looks like sites or studies (``grouping_columns``).

    ``n_groups`` distinct values, each with at least ``min_patients``
    patients; ``ids_repeat``: the same patient id occurs in several groups
    (ids restart in each site, so the column must be part of the patient
    key); ``by_name``: its name is a usual name of a study column."""

    column: Any
    n_groups: int
    min_patients: int
    ids_repeat: bool
    by_name: bool

    @property
    def message(self) -> str:
        """One plain sentence for the researcher (the column name is user text: escape it for Markdown)."""
        what = (f"{self.n_groups} values, each with at least {self.min_patients} patients"
                + ("; the same patient ids occur in several of them" if self.ids_repeat else ""))
        return (f"No study column is chosen, but the column {str(self.column)!r} looks like a grouping ({what}). "
                "If it marks sites or studies, choose it as the study column; otherwise all rows are analysed "
                "as one study (k = 1, no meta-analysis).")


_SCORE_CANONICALS = ("session", "alliance", "symptoms", "therapist_alliance")


@_guard("Could not look for site columns")
def grouping_columns(
    df: pd.DataFrame, patient: Any = None, session: Any = None, exclude: Sequence[Any] = (),
    max_groups: int = 50, min_patients: int = 5,
) -> list[Grouping]:
    """Columns that look like a grouping of patients into sites or studies (METHODS §1).

    A column qualifies when it has 2 to ``max_groups`` distinct values, each
    held by at least ``min_patients`` patients, its name is not that of a
    score or session column, and it either is constant within each patient
    or tells apart rows whose (patient, session) would otherwise repeat
    (patient ids that restart in each site).  ``patient`` and ``session``
    default to ``suggest_mapping``; without a session column each row is one
    patient (a wide file).  Best first: restarting ids, then a study-like
    name, then fewer groups.
    """
    if not isinstance(df, pd.DataFrame) or df.shape[1] < 2 or len(df) == 0:
        return []
    guess = suggest_mapping(df)
    patient = guess.get("patient") if patient is None else patient
    if patient is None or patient not in df.columns:
        return []
    if session is None:
        session = guess.get("session")
    if session is not None and session not in df.columns:
        session = None
    from analysis.data.convert import _as_id

    pid = pd.Series(_as_id(df[patient]).to_numpy(dtype=object), index=range(len(df)))
    key_cols = {"p": pid}
    if session is not None:
        key_cols["t"] = pd.Series(df[session].astype("string").to_numpy(dtype=object), index=range(len(df)))
    key = pd.DataFrame(key_cols)
    key_dup = key.duplicated(keep=False).to_numpy()
    wide_pos = {q for g in _wide_groups(list(df.columns)).values() for q in g.values()}
    skip = {str(c) for c in (patient, session, *exclude) if c is not None}
    found: list[Grouping] = []
    for pos, col in enumerate(df.columns):
        if str(col) in skip or pos in wide_pos:
            continue
        norm = _normalize_name(col)
        if any((sc := _name_score(c, norm)) is not None and sc[0] >= 2 for c in _SCORE_CANONICALS):
            continue
        s = df.iloc[:, pos]
        if s.dtype.kind == "f" and not np.all(np.isnan(v := s.to_numpy(dtype=float)) | (v == np.round(v))):
            continue
        codes, uniq = pd.factorize(_as_id(s).to_numpy(dtype=object), use_na_sentinel=True)
        if not 2 <= len(uniq) <= max_groups or (codes < 0).all():
            continue
        pairs = pd.DataFrame({"g": codes, "p": pid.to_numpy()})
        per_group = pairs[codes >= 0].drop_duplicates().groupby("g")["p"].size()
        if per_group.min() < min_patients:
            continue
        groups_per_patient = pairs[codes >= 0].groupby("p")["g"].nunique()
        repeat = False
        if (groups_per_patient > 1).any():
            # the column varies within a patient id: only a grouping if it separates repeated keys
            if not key_dup.any() or key.assign(g=codes).duplicated(keep=False).to_numpy().any():
                continue
            repeat = True
        by_name = (sc := _name_score("study", norm)) is not None and sc[0] >= 3
        found.append(Grouping(col, len(uniq), int(per_group.min()), repeat, by_name))
    found.sort(key=lambda g: (not g.ids_repeat, not g.by_name, g.n_groups))
    return found
