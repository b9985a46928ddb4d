"""Benchmark: server memory for a 5-million-row upload, and after the data set is replaced.

Usage::

    .venv/bin/python benchmarks/bench_memory.py                 # 5,000,000 rows (≈ 130 MB CSV)
    .venv/bin/python benchmarks/bench_memory.py --rows 1000000
    .venv/bin/python benchmarks/bench_memory.py --bundle      # the same rows as a reproducibility bundle

Generates a long CSV in /tmp (50 studies × patients × 10 sessions), starts the app
(``streamlit run app.py`` on a free loopback port), uploads the file through the Data page
in Debian chromium, clicks "Use these files", waits for the summary, then loads a demo
data set instead and waits again. The server's resident memory is read from
/proc/<pid>/status (VmRSS now, VmHWM = peak) of exactly the process it started.

Prints: baseline RSS (app started, demo loaded), peak RSS, RSS once the upload is in use,
RSS each second for ``--settle`` seconds after the data set was replaced (the last value is
reported), and the seconds of each step. Targets (issue 16): peak ≤ 2 GB; ≤ 0.5 GB above
baseline after replacement. ``--bundle`` makes a reproducibility bundle of the same rows (in this
process) and loads it through the Data page's bundle uploader instead: the same targets (issue 25 #4).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.app_server import GB, app_server, rss  # noqa: E402
from tests.browser_util import browser_page, wait_idle  # noqa: E402


def make_csv(path: Path, rows: int, seed: int = 1) -> Path:
    """A long CSV: 50 studies, 10 sessions per patient, alliance and symptoms with noise."""
    if path.exists() and path.stat().st_size > 0 and path.with_suffix(".rows").exists() \
            and path.with_suffix(".rows").read_text() == str(rows):
        return path
    rng = np.random.default_rng(seed)
    n_sess = 10
    n_pat = rows // n_sess
    studies = np.repeat(np.arange(n_pat) % 50, n_sess)
    patient = np.repeat(np.arange(n_pat), n_sess)
    session = np.tile(np.arange(1, n_sess + 1), n_pat)
    person = np.repeat(rng.normal(0, 1, n_pat), n_sess)
    alliance = np.round(4 + 0.6 * person + rng.normal(0, 0.5, n_pat * n_sess), 2)
    symptoms = np.round(20 - 2 * person + rng.normal(0, 3, n_pat * n_sess), 1)
    with path.open("w", encoding="utf-8") as fh:
        fh.write("study,patient,session,alliance,symptoms\n")
        chunk = 500_000
        for a in range(0, len(patient), chunk):
            b = min(a + chunk, len(patient))
            lines = [f"S{s:02d},P{p:07d},{t},{x:.2f},{y:.1f}\n" for s, p, t, x, y in
                     zip(studies[a:b], patient[a:b], session[a:b], alliance[a:b], symptoms[a:b])]
            fh.writelines(lines)
    path.with_suffix(".rows").write_text(str(rows))
    return path


def make_bundle_file(csv: Path, rows: int) -> Path:
    """A reproducibility bundle of the CSV's rows (canonical data, default options), made once."""
    out = csv.with_suffix(".zip")
    if out.exists() and out.stat().st_size > 0 and out.stat().st_mtime >= csv.stat().st_mtime:
        return out
    from analysis import bundle
    from analysis import data as adata
    from analysis.lagged import LagOptions

    raw = adata.load(csv)
    df = adata.to_canonical(raw, adata.suggest_mapping(raw))
    del raw
    out.write_bytes(bundle.make_bundle(df, LagOptions(), f"bench {rows:,} rows"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per step")
    ap.add_argument("--bundle", action="store_true", help="load the rows as a reproducibility bundle")
    ap.add_argument("--settle", type=int, default=20,
                    help="seconds to watch the RSS after the replacement (the last value is reported)")
    args = ap.parse_args()
    t = time.perf_counter()
    path = make_csv(Path(f"/tmp/bench_memory_{args.rows}.csv"), args.rows)
    print(f"CSV: {path} ({path.stat().st_size / 1e6:.0f} MB, {args.rows:,} rows), "
          f"generated in {time.perf_counter() - t:.0f} s", flush=True)
    if args.bundle:
        path = make_bundle_file(path, args.rows)
        print(f"bundle: {path} ({path.stat().st_size / 1e6:.0f} MB)", flush=True)
    ms = args.timeout * 1000
    with app_server(log=Path("/tmp/bench_memory_server.log")) as (url, pid), browser_page() as page:
        page.goto(url + "/data")
        page.get_by_text("Loaded: IPD-MA demo").wait_for(timeout=ms)
        wait_idle(page, ms)
        base, _ = rss(pid)
        print(f"baseline RSS (demo loaded): {base / GB:.2f} GB", flush=True)

        page.get_by_role("tab", name="Upload your files").click()
        t = time.perf_counter()
        if args.bundle:
            page.set_input_files('[data-testid="stFileUploader"]:has-text("Bundle") input[type=file]', str(path))
            page.get_by_role("button", name="Load this bundle").wait_for(timeout=ms)
            wait_idle(page, ms)
            print(f"bundle uploaded: {time.perf_counter() - t:.1f} s, RSS {rss(pid)[0] / GB:.2f} GB", flush=True)
            t = time.perf_counter()
            page.get_by_role("button", name="Load this bundle").click()
            page.get_by_text("Bundle loaded", exact=False).first.wait_for(timeout=ms)
            wait_idle(page, ms)
            page.get_by_text("Loaded: Bundle:", exact=False).first.wait_for(timeout=ms)
        else:
            page.set_input_files('[data-testid="stFileUploader"] input[type=file]', str(path))
            page.get_by_role("button", name="Use these files").wait_for(timeout=ms)
            wait_idle(page, ms)
            t_preview = time.perf_counter() - t
            print(f"upload + preview + mapping: {t_preview:.1f} s, RSS {rss(pid)[0] / GB:.2f} GB", flush=True)

            t = time.perf_counter()
            page.get_by_role("button", name="Use these files").click()
            page.get_by_text("Data loaded. The analysis pages now use it.").wait_for(timeout=ms)
            wait_idle(page, ms)
            page.get_by_text("Loaded: Uploaded:", exact=False).first.wait_for(timeout=ms)
        t_use = time.perf_counter() - t
        in_use, peak = rss(pid)
        print(f"'Use these files' → summary shown: {t_use:.1f} s, RSS {in_use / GB:.2f} GB", flush=True)

        t = time.perf_counter()
        page.get_by_role("tab", name="Demo data").click()
        page.get_by_role("button", name="Load this demo").click()
        page.get_by_text("Loaded: IPD-MA demo").wait_for(timeout=ms)
        wait_idle(page, ms)
        print(f"demo loaded again: {time.perf_counter() - t:.1f} s", flush=True)
        trace = []
        for _ in range(args.settle):  # the server hands freed memory back within a few seconds
            page.wait_for_timeout(1000)
            trace.append(rss(pid)[0])
        after, peak = rss(pid)
        print("RSS each second after the replacement (GB): " + " ".join(f"{r / GB:.2f}" for r in trace), flush=True)

    print()
    print(f"{'rows':>12} {'baseline GB':>12} {'peak GB':>9} {'in use GB':>10} {'after replace GB':>17} "
          f"{'above baseline GB':>18}")
    print(f"{args.rows:>12,} {base / GB:>12.2f} {peak / GB:>9.2f} {in_use / GB:>10.2f} {after / GB:>17.2f} "
          f"{(after - base) / GB:>18.2f}")
    print(f"targets: peak ≤ 2 GB ({'met' if peak <= 2 * GB else 'NOT met'}); ≤ 0.5 GB above baseline after "
          f"replacement ({'met' if after - base <= 0.5 * GB else 'NOT met'})")


if __name__ == "__main__":
    main()
