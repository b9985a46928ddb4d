"""The "Congruence models" section of the Convergence page (METHODS §8, "Congruence").

Lays out the response surface analysis and the actor–partner interdependence model of one study; every
statistic comes from :mod:`analysis.convergence.congruence` through the cached calls in ``ui/compute``.
"""

from __future__ import annotations

import streamlit as st

from analysis import formatting as fmt
from analysis.convergence.congruence import CongruenceOptions
from ui import compute
from ui.declared import draw, find
from ui.safe import Markup, esc, md
from ui.tables import show_table

_APIM_LABELS = {"intercept": "Intercept", "actor_within": "Actor within (patient's own rating, session deviation)",
                "partner_within": "Partner within (therapist's rating, session deviation)",
                "actor_between": "Actor between (patient's mean rating)",
                "partner_between": "Partner between (therapist's mean rating)",
                "prior_symptoms": "Symptoms at t"}


def congruence_section(skey: str, sd, methods_link: str) -> None:
    """Response surface (a1–a4) and APIM for the chosen study, with their options."""
    st.header("Congruence models: patient and therapist alliance → symptoms")
    st.caption(md("Two ways to ask whether agreement matters that do not depend on whether the rating lines cross "
                  "([Methods §8]({link})).", link=Markup(methods_link)))
    cols = st.columns(3)
    values = {}
    for col, (name, key) in zip(cols, (("control_initial", "initial"), ("lag", "lag"), ("control_prior", "prior"))):
        values[name] = draw(find(CongruenceOptions, name), f"cong_{key}", col)  # interval, default: declared
    o = CongruenceOptions(**values)
    control_initial, lag, control_prior = o.control_initial, int(o.lag), o.control_prior
    st.subheader("Response surface (polynomial regression; Edwards & Parry, 1993)")
    try:
        rsa = compute.conv_rsa(skey, sd, control_initial)
    except ValueError as e:
        st.info(f"Not estimated: {esc(e, limit=None)}")
    else:
        st.caption("One row per dyad: last symptom score on the dyad's mean patient (P) and therapist (T) ratings, "
                   "their squares and product (OLS). a1/a2: slope/curvature along P = T (does the shared level "
                   "matter?); a3/a4: along P = −T (does the direction of disagreement matter, is agreement best?).")
        show_table(rsa.surface[["term", "meaning", "estimate", "se", "df", "statistic", "pvalue", "ci_low",
                                "ci_high"]], "response_surface", key="cong_rsa_dl", csv=rsa.to_frame())
        st.markdown(esc(rsa.summary(), limit=None))
        for m in rsa.messages:
            st.caption(esc(m, limit=None))
    st.subheader("Actor–partner interdependence model (Kenny, Kashy & Cook, 2006)")
    try:
        ap = compute.conv_apim(skey, sd, lag, control_prior)
    except ValueError as e:
        st.info(f"Not estimated: {esc(e, limit=None)}")
        return
    tab = ap.fixed.assign(term=ap.fixed["term"].map(_APIM_LABELS))
    st.caption(f"Session rows: the patient's symptoms {lag} session(s) later on both raters' alliance, split into "
               "the dyad's mean and the session's deviation; random intercept per dyad (REML, Satterthwaite df).")
    show_table(tab, "apim", key="cong_apim_dl", csv=ap.to_frame())
    st.markdown(f"{esc(ap.summary(), limit=None)} Partner/actor ratio k = {fmt.num(ap.k['within'])} within, "
                f"{fmt.num(ap.k['between'])} between (k ≈ 0: only the patient's own rating matters; k ≈ 1: both "
                "raters' alliance matters equally).")
    for m in ap.messages:
        st.caption(esc(m, limit=None))
