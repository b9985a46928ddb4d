"""Input data of tests/reference/make_dropout_reference.R (METHODS §9a): dropout_data.csv.

    python tests/reference/make_dropout_inputs.py     # writes dropout_data.csv

``simulate_dropout_data(3, 120, 10, seed = 5, rupture_share = 0.3)`` with alliance and symptoms rounded
to 4 decimals, and each patient's rupture / repair status by the default rupture criterion on the rounded
data (columns rupture, repair; empty = not classified). ``make reference`` runs this before the R script.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))


def main() -> None:
    from analysis.events import dropout, rupture_summary, ruptures

    d = dropout.simulate_dropout_data(3, 120, 10, seed=5, rupture_share=0.3)
    d["alliance"] = d["alliance"].round(4)
    d["symptoms"] = d["symptoms"].round(4)
    per = rupture_summary(ruptures(d))[0]
    status = per[["study", "patient", "any_rupture", "any_repair"]].rename(
        columns={"any_rupture": "rupture", "any_repair": "repair"})
    d = d.merge(status, on=["study", "patient"], how="left")
    for c in ("rupture", "repair"):
        d[c] = d[c].astype("Float64").astype(float)
    cols = ["study", "patient", "session", "alliance", "symptoms", "dropout", "rupture", "repair"]
    d[cols].to_csv(HERE / "dropout_data.csv", index=False)
    print(f"wrote dropout_data.csv ({len(d)} rows)")


if __name__ == "__main__":
    main()
