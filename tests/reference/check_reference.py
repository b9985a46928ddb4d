"""``make reference``: rerun every script in tests/reference and compare with the committed values.

Each ``make_*.py`` (inputs simulated in Python, e.g. the convergence designs),
then each ``make_*.R``, then the Python scripts of :data:`AFTER_R` (they read an
R script's output) are run from the project root (Python with this interpreter,
R with Rscript); together they rewrite every JSON/CSV output in tests/reference. The outputs are removed first, so a file that no script writes
is reported. Every output file is then compared with
the committed version numerically (relative tolerance 1e-9, absolute 1e-12 for
values near zero; text must match exactly) and the committed files are put
back, so the working tree is unchanged. Exit status 1 on any difference.

    python tests/reference/check_reference.py [--rtol 1e-9] [--keep]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
#: Python scripts that read the output of an R script, so they run after the R scripts
#: (make_bayes_reference.py: the BCG trials' yi, vi of meta_reference.json, from metafor's dat.bcg)
AFTER_R = ("make_bayes_reference.py",)


def _close(a: float, b: float, rtol: float, atol: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= atol + rtol * max(abs(a), abs(b))


def compare_json(old, new, rtol: float, atol: float, path: str = "$") -> list[str]:
    """Differences between two JSON documents (numbers within tolerance)."""
    num = (int, float)
    if isinstance(old, bool) or isinstance(new, bool):
        return [] if old == new else [f"{path}: {old!r} != {new!r}"]
    if isinstance(old, num) and isinstance(new, num):
        return [] if _close(float(old), float(new), rtol, atol) else [f"{path}: {old!r} != {new!r}"]
    if isinstance(old, dict) and isinstance(new, dict):
        out = [f"{path}.{k}: missing in the new output" for k in old if k not in new]
        out += [f"{path}.{k}: not in the committed values" for k in new if k not in old]
        for k in old:
            if k in new:
                out += compare_json(old[k], new[k], rtol, atol, f"{path}.{k}")
        return out
    if isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return [f"{path}: {len(old)} entries committed, {len(new)} now"]
        out = []
        for i, (a, b) in enumerate(zip(old, new)):
            out += compare_json(a, b, rtol, atol, f"{path}[{i}]")
        return out
    return [] if old == new else [f"{path}: {old!r} != {new!r}"]


def compare_csv(old: Path, new: Path, rtol: float, atol: float) -> list[str]:
    a, b = pd.read_csv(old), pd.read_csv(new)
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return [f"{old.name}: columns or rows differ ({a.shape} vs {b.shape})"]
    out = []
    for c in a.columns:
        x, y = a[c], b[c]
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
            for i, (u, v) in enumerate(zip(x.astype(float), y.astype(float))):
                if not _close(u, v, rtol, atol):
                    out.append(f"{old.name}[{i}, {c}]: {u!r} != {v!r}")
        elif not x.astype("string").fillna("<NA>").equals(y.astype("string").fillna("<NA>")):
            out.append(f"{old.name}[{c}]: text differs")
    return out


def script_order(here: Path) -> list[Path]:
    """Python inputs first, then the R script whose simulated data (lagged_data.csv, lagged_rows.csv)
    other scripts read, the other R scripts, and last the Python scripts of :data:`AFTER_R`."""
    r_scripts = sorted(here.glob("make_*.R"), key=lambda p: (p.name != "make_lagged_reference.R", p.name))
    py_scripts = sorted(here.glob("make_*.py"))
    return ([p for p in py_scripts if p.name not in AFTER_R] + r_scripts
            + [p for p in py_scripts if p.name in AFTER_R])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rtol", type=float, default=1e-9)
    ap.add_argument("--atol", type=float, default=1e-12)
    ap.add_argument("--keep", action="store_true", help="keep the regenerated files instead of the committed ones")
    args = ap.parse_args(argv)
    outputs = sorted(p for p in HERE.iterdir() if p.suffix in (".json", ".csv"))
    scripts = script_order(HERE)
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        backup = Path(tmp)
        for p in outputs:
            shutil.copy2(p, backup / p.name)
        try:
            for p in outputs:
                p.unlink()
            for s in scripts:
                cmd = [sys.executable if s.suffix == ".py" else "Rscript", str(s.relative_to(ROOT))]
                print(f"== {Path(cmd[0]).name} {cmd[1]}", flush=True)
                run = subprocess.run(cmd, cwd=ROOT)
                if run.returncode != 0:
                    problems.append(f"{s.name} failed (exit {run.returncode})")
            unwritten = [p for p in outputs if not p.exists()]
            problems += [f"{p.name}: no script in tests/reference wrote it" for p in unwritten]
            for p in outputs:
                if p in unwritten:
                    continue
                if p.suffix == ".json":
                    old = json.loads((backup / p.name).read_text(encoding="utf-8"))
                    new = json.loads(p.read_text(encoding="utf-8"))
                    problems += [f"{p.name} {d}" for d in compare_json(old, new, args.rtol, args.atol)]
                else:
                    problems += compare_csv(backup / p.name, p, args.rtol, args.atol)
        finally:
            if not args.keep:
                for p in outputs:
                    shutil.copy2(backup / p.name, p)
    for msg in problems[:200]:
        print("DIFFERENCE:", msg)
    print(f"{len(outputs)} reference files from {len(scripts)} scripts: "
          + ("all equal within tolerance." if not problems else f"{len(problems)} difference(s)."))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
