"""Data intake: read files, map columns, reshape, check and combine (METHODS §1).

The canonical long format (``docs/METHODS.md`` §1) has one row per patient ×
session and the columns

    study (text), patient (text), session (integer ≥ 0), alliance (float),
    symptoms (float), therapist_alliance (float, optional), therapist (text,
    optional)

with the key (study, patient, session).  Extra columns are carried along
(study-level moderators, patient-level covariates).

Typical flow::

    raw = load(uploaded_file)                     # CSV/TSV/TXT, XLSX, SAV, DTA, Parquet
    stubs = detect_wide(raw)                      # wide file (wai_1 … wai_12)?
    if stubs:
        raw = wide_to_long(raw, suggest_mapping(raw)["patient"], stubs)
    mapping = suggest_mapping(raw)                # the user corrects it in the UI
    df = to_canonical(raw, mapping, study="Trial A")
    report = validate(df)                         # errors block analysis, warnings inform
    both = combine([df, df2])                     # several studies in one set
    summary = summarize(both)

The package (everything is re-exported here, so ``from analysis import data``
and ``analysis.data.load`` keep working):

    read.py       load, list_sheets (CSV/TSV/TXT, XLSX, SAV, DTA, Parquet; ``nrows`` preview)
    mapping.py    suggest_mapping, suggest_higher_is_better, grouping_columns
    convert.py    numbers, sessions and ids from whatever the file holds
    canonical.py  to_canonical, combine, template_csv, require_canonical (the guard
                  other modules call on canonical input), one_study (one study's rows)
    reshape.py    detect_wide, wide_to_long (site column as part of the key)
    validate.py   validate: a tuple of small named checks (CHECKS) and their thresholds
    summary.py    summarize

``DataError`` (a ``ValueError``) is the only exception that ``load``,
``list_sheets``, ``suggest_mapping``, ``grouping_columns``, ``to_canonical``,
``wide_to_long``, ``detect_wide``, ``validate``, ``combine``, ``summarize`` and
``require_canonical`` let escape,
whatever the bytes or frame they are given.  Its message is written for the
researcher and names the columns, rows and patients concerned.

Row numbers: ``load`` returns a frame whose index label ``i`` is the
``i``-th data row of the file (blank rows are dropped but keep their number),
so messages about a loaded frame speak of *spreadsheet rows* ``i + 2`` (the
header is row 1).  ``to_canonical`` sorts and renumbers; issues found by
``validate`` carry the index labels of the frame that was checked in
``Issue.rows`` and name patients and sessions in the message.
"""

from __future__ import annotations

from analysis.data._common import (
    CANONICAL_COLUMNS,
    DEFAULT_STUDY,
    ID_COLUMNS,
    NUMERIC_COLUMNS,
    REQUIRED_COLUMNS,
    DataError,
)
from analysis.data.canonical import combine, one_study, require_canonical, template_csv, to_canonical
from analysis.data.mapping import Grouping, column_labels, grouping_columns, suggest_higher_is_better, suggest_mapping
from analysis.data.read import list_sheets, load
from analysis.data.reshape import detect_wide, wide_to_long
from analysis.data.summary import DataSummary, summarize
from analysis.data.validate import (
    MAX_MISSING_SHARE,
    MIN_PATIENTS_PER_STUDY,
    MIN_SESSIONS_PER_PATIENT,
    OUTLIER_MADS,
    Issue,
    ValidationReport,
    drop_exact_duplicates,
    exact_duplicates,
    validate,
)

__all__ = [
    "CANONICAL_COLUMNS",
    "NUMERIC_COLUMNS",
    "REQUIRED_COLUMNS",
    "DEFAULT_STUDY",
    "ID_COLUMNS",
    "MAX_MISSING_SHARE",
    "MIN_PATIENTS_PER_STUDY",
    "MIN_SESSIONS_PER_PATIENT",
    "OUTLIER_MADS",
    "DataError",
    "DataSummary",
    "Grouping",
    "Issue",
    "ValidationReport",
    "column_labels",
    "combine",
    "detect_wide",
    "drop_exact_duplicates",
    "exact_duplicates",
    "grouping_columns",
    "one_study",
    "require_canonical",
    "list_sheets",
    "load",
    "suggest_higher_is_better",
    "suggest_mapping",
    "summarize",
    "template_csv",
    "to_canonical",
    "validate",
    "wide_to_long",
]
