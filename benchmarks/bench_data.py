"""Benchmark: data intake of large files (issue 16, "preview from the head of the file").

Prints wall-clock and CPU seconds for
  1. a long CSV with 1,000,000 rows (5,000 patients × 200 sessions, semicolon + decimal comma):
     the preview the Data page draws (``load(..., nrows=PREVIEW_ROWS)`` + ``suggest_mapping`` +
     ``grouping_columns``), and the full read + ``to_canonical`` done on "Use these files";
  2. a wide CSV with 5,000 session columns (wai_1 … wai_5000, 300 patients): the preview
     (head, ``detect_wide``, ``wide_to_long`` of the head, ``suggest_mapping``) and the full
     read + reshape + ``to_canonical``.
Target: every preview < 5 s. Not a test.

    .venv/bin/python benchmarks/bench_data.py [--rows 1000000] [--sessions 5000]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis import data as adata  # noqa: E402

#: rows the Data page and Screening page read for the preview and the column mapping (ui.mapping)
PREVIEW_ROWS = 2000


def _timed(label: str, fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    print(f"  {label:<58s} {time.perf_counter() - t0:7.2f} s wall  {time.process_time() - c0:7.2f} s CPU")
    return out


def long_csv(n_rows: int) -> bytes:
    rng = np.random.default_rng(1)
    n_sess = 200
    n_pat = max(1, n_rows // n_sess)
    pat = np.repeat(np.arange(1, n_pat + 1), n_sess)
    df = pd.DataFrame({
        "Standort": np.where(pat % 3 == 0, "Berlin", np.where(pat % 3 == 1, "Hamburg", "München")),
        "Klient": pat, "Sitzung": np.tile(np.arange(1, n_sess + 1), n_pat),
        "WAI": np.round(rng.normal(5, 1, len(pat)), 2), "BDI": np.round(rng.normal(20, 6, len(pat)), 1),
    })
    buf = io.StringIO()
    df.to_csv(buf, sep=";", decimal=",", index=False)
    return buf.getvalue().encode("utf-8")


def wide_csv(n_sessions: int, n_patients: int = 300) -> bytes:
    rng = np.random.default_rng(2)
    cols = {"id": np.arange(1, n_patients + 1), "site": rng.integers(1, 4, n_patients)}
    vals = np.round(rng.normal(5, 1, (n_patients, n_sessions)), 2)
    frame = pd.concat([pd.DataFrame(cols), pd.DataFrame(vals, columns=[f"wai_{k}" for k in range(1, n_sessions + 1)])],
                      axis=1)
    return frame.to_csv(index=False).encode("utf-8")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--sessions", type=int, default=5_000)
    args = ap.parse_args()

    data = long_csv(args.rows)
    print(f"1. long CSV: {args.rows:,} rows, {len(data) / 1e6:.0f} MB")

    def preview_long():
        head = adata.load(data, "big.csv", nrows=PREVIEW_ROWS)
        m = adata.suggest_mapping(head)
        adata.grouping_columns(head, patient=m["patient"], session=m["session"])
        return head, m

    t0 = time.perf_counter()
    head, m = _timed("preview (head + mapping + grouping)", preview_long)
    preview_s = time.perf_counter() - t0
    full = _timed("full read (load)", lambda: adata.load(data, "big.csv"))
    _timed("to_canonical", lambda: adata.to_canonical(full, m))

    data = wide_csv(args.sessions)
    print(f"2. wide CSV: {args.sessions:,} session columns, {len(data) / 1e6:.0f} MB")

    def preview_wide():
        head = adata.load(data, "wide.csv", nrows=PREVIEW_ROWS)
        stubs = adata.detect_wide(head)
        long = adata.wide_to_long(head, "id", stubs, study_col="site")
        return adata.suggest_mapping(long), stubs

    t0 = time.perf_counter()
    (m, stubs) = _timed("preview (head + detect_wide + reshape + mapping)", preview_wide)
    preview_w = time.perf_counter() - t0
    full = _timed("full read (load)", lambda: adata.load(data, "wide.csv"))
    long = _timed("wide_to_long", lambda: adata.wide_to_long(full, "id", stubs, study_col="site"))
    m = {**m, "study": "site"}
    _timed("to_canonical", lambda: adata.to_canonical(long, m))
    print(f"previews: long {preview_s:.2f} s, wide {preview_w:.2f} s (target < 5 s each)")


if __name__ == "__main__":
    main()
