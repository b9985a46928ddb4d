"""Pooled page sections for issue 21: the one-stage model beside the two-stage pooling, and the
few-studies panel (Bayesian estimate, simulated coverage of the intervals). Layout only: every number
comes from ``analysis`` through ``ui/compute.py`` or ``ui/jobs.py``."""

from __future__ import annotations

import numpy as np
import streamlit as st

from analysis import coverage, onestage, plots_onestage
from analysis import formatting as fmt
from analysis.bayes_meta import SmallKOptions
from ui import compute, jobs, persist
from ui.declared import draw, find
from ui.downloads import show_figure, table_download
from ui.safe import esc, md
from ui.tables import dataframe

SMALL_K = 5


def small_k_warning(m, direction_label: str) -> None:
    """Below k = 5: say plainly that τ² and the intervals are unreliable."""
    if 1 < m.k < SMALL_K:
        st.warning(md("{d}: only {k} studies. With fewer than {small} studies τ² and every "
                      "interval (CI, prediction interval) are unreliable; read them as rough. The Bayesian "
                      "estimate and the simulated coverage are under 'More analyses → Few studies'.",
                      d=direction_label, k=m.k, small=SMALL_K))


def _options() -> SmallKOptions:
    """The few-studies choices (declared on :class:`SmallKOptions`; remembered across pages and written
    to the URL, ``ui.persist.SMALL_K``). Inside the More-analyses fragment, so the URL is written here."""
    opt = find(SmallKOptions, "prior_scale")
    key = persist.widget(persist.SMALL_K[opt.url].key, opt.default)
    value = draw(opt, key, min_value=opt.lo, max_value=opt.hi, step=0.05, format="%.3f")
    persist.write_url(persist.SMALL_K)
    return SmallKOptions(prior_scale=value)


def one_stage_switch() -> bool:
    """The Lagged effects page's switch for the one-stage model (declared; in the URL as ``one_stage``)."""
    opt = find(SmallKOptions, "one_stage")
    return bool(draw(opt, persist.widget(persist.SMALL_K[opt.url].key, opt.default)))


def one_stage_section(df, options, res, directions: dict, xlabel: str) -> None:
    """One table and one forest with both analyses, and whether they agree."""
    st.caption("The one-stage model fits every patient of every study at once: study-specific intercepts and "
               "nuisance terms, a random within slope across studies, patient intercepts nested in study, REML; "
               "t test with Satterthwaite df (METHODS §6b).")
    try:
        with st.spinner("Fitting the one-stage model (all patients at once)…"):
            one = compute.one_stage(df, options)
    except ValueError as e:
        st.error(f"The one-stage model could not be fitted: {esc(e, limit=None)}")
        return
    for msg in one.messages:
        st.info(esc(msg, limit=None))
    if not one.fits:
        return
    table = onestage.compare(res, one)
    shown = table.assign(direction=table["direction"].map(directions))
    dataframe(shown, digits=3)  # (two results side by side: three decimals show where they differ)
    table_download(table, "one_stage_vs_two_stage", key="os_dl")
    titles = {d: directions[d] for d in options.directions if d in one.fits and d in res.pooled}
    if titles:
        show_figure(plots_onestage.side_by_side_figure(res, one, titles, xlabel), "one_vs_two_stage",
                    key="os_forest")
    for d in titles:
        st.markdown(md("**{d}.** {s}", d=directions[d], s=one.fits[d].summary()))
        st.caption(esc(onestage.agreement_sentence(res, one, d), limit=None))
        for msg in one.fits[d].messages:
            st.caption(esc(msg, limit=None))
    inter = one.interactions()
    if len(inter):
        st.markdown("**Interactions with the within effect, split (deft; Fisher et al. 2017).** The within-study "
                    "part is free of ecological bias; it is what the two-stage pooling of the study models' "
                    "interactions estimates (its 'Pooled term' rows are within-study).")
        dataframe(inter.assign(direction=inter["direction"].map(directions)))


def small_k_section(pooled: dict, options, directions: dict) -> None:
    """The Bayesian estimate and the simulated coverage of the z, Knapp–Hartung and Bayesian intervals."""
    opts = _options()
    for d, m in pooled.items():
        if m.k < 2:
            st.info(md("{d}: one study; nothing to pool.", d=directions[d]))
            continue
        b = compute.bayes_pool(np.asarray(m.yi), np.asarray(m.vi), opts.prior_scale, m.level)
        st.markdown(md("**{d}.** {s}", d=directions[d], s=b.summary()))
        dataframe(b.to_frame())
    st.markdown("**How trustworthy is this interval?** The simulation below draws meta-analyses with your "
                "design — your k, your studies' SEs and the estimated τ — whose true mean effect is known, and "
                "counts how often each 95% interval contains it (seeded; METHODS §6d).")
    st.caption(esc(coverage.limit_note(), limit=None))
    clicked = st.button("Simulate the coverage of these intervals", key="fs_cov_run")
    for d, m in pooled.items():
        if m.k < 2:
            continue
        se = tuple(float(x) for x in np.sqrt(np.asarray(m.vi)))
        tau = float(np.sqrt(max(m.tau2, 0.0)))
        try:
            cov = jobs.run(coverage.interval_coverage, se, tau, prior_scale=opts.prior_scale, start=clicked,
                           widget=f"fs_cov_{d}", label=f"Simulating {directions[d]}…")
        except ValueError as e:
            st.error(esc(e, limit=None))
            continue
        if cov is None:
            continue
        st.markdown(md("**{d}.** {s}", d=directions[d], s=cov.summary()))
        t = cov.to_frame()
        t["coverage"] = [fmt.percent(x, 1) for x in t["coverage"]]
        t["pi_coverage"] = [fmt.percent(x, 1) for x in t["pi_coverage"]]
        dataframe(t.drop(columns=["interval"]))
        chosen = meta_test_label(options.test)
        st.caption(esc(f"The pooled table above uses: {chosen}.", limit=None))


def meta_test_label(test: str) -> str:
    from analysis.meta import TEST_NAMES

    return TEST_NAMES.get(test, test)
