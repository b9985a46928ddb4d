"""Writes convergence_study1.csv, convergence_study2.csv and convergence_missing.csv (the simulated designs of
tests/test_convergence.py with the dyad-level predictors Python computed), which make_convergence_reference.R
reads. ``make reference`` runs it before the R scripts:

    python tests/reference/make_convergence_inputs.py
"""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    sys.path.insert(0, str(ROOT))
    spec = importlib.util.spec_from_file_location("test_convergence", ROOT / "tests" / "test_convergence.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write_reference_inputs(Path(__file__).resolve().parent)


if __name__ == "__main__":  # not on import (pytest's doctest collection imports every module under tests/)
    main()
