"""A data file whose names try to become markup: shared by the hostile-names tests.

Every user-derived string the app shows (study, patient, therapist and column names, the
uploaded file name) carries one of these payloads. Shown unescaped in Markdown they would
fetch the beacon URL (image), become a link, run KaTeX, inject HTML, break a line or reverse
the text direction; the tests check that none of that happens.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd

from analysis.simulate import simulate_study

RLO = "\u202e"  # right-to-left override
PDF = "\u202c"


def payloads(port: int = 9) -> dict[str, str]:
    """The hostile strings, each pointing at a beacon on 127.0.0.1:``port``."""
    beacon = f"http://127.0.0.1:{port}"
    return {
        "md_image": f"![x]({beacon}/beacon-md.png)",
        "md_link": f"[click me]({beacon}/beacon-link)",
        "html_img": f'<img src="{beacon}/beacon-html.png" onerror="alert(1)">',
        "script": "<script>alert(2)</script>",
        "latex": r"$\frac{a}{b}$",
        "quote_newline": "O'Brien \"the\"\nsecond line",
        "long": "L" * 300,
        "rtl": f"{RLO}evil{PDF} name",
        "formula": f'=HYPERLINK("{beacon}/beacon-csv?"&A1,"x")',
        "www": "www.beacon-www.example",
    }


def hostile_frame(port: int = 9, n_patients: int = 14, n_sessions: int = 6) -> pd.DataFrame:
    """Long data, five studies (so pooling, leave-one-out and funnel plots run) and one that cannot be
    fitted, hostile names everywhere."""
    p = payloads(port)
    study_names = [p["md_image"], p["html_img"] + " " + p["www"], p["latex"] + " " + p["script"],
                   p["quote_newline"] + " " + p["rtl"], p["long"] + p["md_link"]]
    frames = []
    for s, name in enumerate(study_names):
        d = simulate_study(n_patients, range(1, n_sessions + 1), study=name, seed=100 + s, therapist=True,
                           n_therapists=3).data
        keys = list(p.values())
        d["patient"] = [f"{keys[hash_ % len(keys)]} #{pid}" for hash_, pid in
                        zip(pd.factorize(d["patient"])[0], d["patient"].astype(str))]
        d["therapist"] = [f"{keys[(t + 3) % len(keys)]} T{t}" for t in pd.factorize(d["therapist"])[0]]
        d["setting"] = s % 2  # a study-level moderator, named below
        frames.append(d)
    # a sixth study too small to fit (2 patients): its failure message quotes its name
    tiny = simulate_study(2, range(1, 3), study=p["formula"] + " " + p["md_image"].replace("beacon-md", "beacon-fail"),
                          seed=99, therapist=True, n_therapists=1).data
    tiny["patient"] = ["@patient " + str(x) for x in tiny["patient"]]
    tiny["therapist"] = "-therapist"
    tiny["setting"] = 1
    frames.append(tiny)
    df = pd.concat(frames, ignore_index=True)
    return df.rename(columns={
        # id columns keep names the Data page maps by itself (so the browser test needs no clicks);
        # the measure and moderator columns carry payloads in their names
        "alliance": "wai " + p["md_image"],
        "symptoms": "bdi " + p["html_img"],
        "therapist_alliance": "wai_t " + p["latex"] + p["rtl"],
        "setting": "setting " + p["script"] + " " + p["quote_newline"],
    })


def covariate_name(port: int = 9) -> str:
    """The name of a patient-level covariate column that varies in one study only (so its terms are
    estimable in k = 1 study, and the Pooled page's term summary names that study)."""
    return "age " + payloads(port)["md_image"].replace("beacon-md", "beacon-cov")


def with_k1_covariate(df: pd.DataFrame, port: int = 9) -> pd.DataFrame:
    """``df`` plus :func:`covariate_name`: one value per patient in the first study, constant elsewhere."""
    first = df["study"].iloc[0]
    pid = pd.factorize(df["patient"])[0] % 30
    out = df.copy()
    out[covariate_name(port)] = np.where(df["study"] == first, 20.0 + pid, 40.0)
    return out


def hostile_csv(port: int = 9, **kw) -> bytes:
    buf = io.StringIO()
    hostile_frame(port, **kw).to_csv(buf, index=False)
    return buf.getvalue().encode("utf-8")


def hostile_file_name(port: int = 9) -> str:
    return f"![f](http://127.0.0.1:{port}/beacon-file.png) <img src=x onerror=alert(3)> $x$.csv"


# Raw markup that must never reach a Markdown-rendering element unescaped. A backslash before the
# character (esc's CommonMark escape) makes it literal text.
LEAK_PATTERNS = {
    "markdown image": re.compile(r"(?<!\\)!(?<!\\)\[[^\]]*\]\(http"),
    "markdown link": re.compile(r"(?<!\\)\[click me(?<!\\)\]\(http"),
    "html tag": re.compile(r"(?<!\\)<(img|script)"),
    "latex": re.compile(r"(?<!\\)\$\\frac"),
    "rtl override": re.compile(RLO),
    # GFM makes a bare URL a link even when its punctuation is backslash-escaped
    "autolink": re.compile(r"https?\\?:\\?/\\?/\\?127"),
    # GFM links "www." + a domain whatever follows; esc puts a joiner inside "www" (issue 25 #9)
    "www autolink": re.compile(r"(?i)www\\?\.beacon"),
}


def leaks(text: str) -> list[str]:
    """Names of the hostile patterns present unescaped in ``text``."""
    return [name for name, rx in LEAK_PATTERNS.items() if rx.search(text)]
