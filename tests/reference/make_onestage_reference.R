# Reference values for analysis/onestage.py (METHODS §6b): the one-stage IPD meta-analysis of the
# lagged within effect, fitted with lme4 + lmerTest.
#
# Run from the repository root:
#     Rscript tests/reference/make_onestage_reference.R
#
# Step 1 (Python, embedded below) simulates three collections and writes the model rows of
# analysis.lagged.prepare() (the rows the one-stage model uses) to onestage_rows.csv:
#   main      6 studies, 30-60 patients, sessions 1-7, heterogeneous within effects (tau 0.12),
#             person-mean centering, standardization, no prior outcome, a fixed time trend
#             (patient intercept variance clearly above 0)
#   singular  4 studies with one common within effect (tau = 0), default options: lme4 estimates
#             the SD of the study slopes at exactly 0 (singular fit)
#   deft      6 studies with a patient-level covariate "age" whose study means differ, raw
#             (unstandardized) scores, a fixed time trend; the interaction within x age split into
#             a within-study part (age centred on the study mean of its patients) and an
#             across-study part (study mean of age, centred at the mean of the study means)
# Step 2 (R) builds the design from those columns alone and fits
#   lmer(lead ~ 0 + study + study:(between [+ prior_within + prior_between] [+ time] [+ age]) + within
#        [+ within:age_w + within:age_b] + (1 | study:patient) + (0 + within | study), REML = TRUE)
# and writes onestage_reference.json: the fixed effect(s) of interest with SE and lmerTest
# Satterthwaite df, the variance components, the REML criterion, and the profile-likelihood 95% CI
# of the SD of the study slopes: exact limits of lme4's ML profile (devfun2, as profile() and
# confint(method = "profile") use it; confint's own spline-interpolated limits are kept too).
# pytest (tests/test_onestage.py) needs no R; the outputs are committed.

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = FALSE)
file_arg <- sub("^--file=", "", args[grep("^--file=", args)])
here <- if (length(file_arg)) dirname(normalizePath(file_arg)) else "tests/reference"
root <- normalizePath(file.path(here, "..", ".."))
python <- file.path(root, ".venv", "bin", "python")
if (!file.exists(python)) python <- "/work/main/.venv/bin/python"

py <- '
import sys
import numpy as np, pandas as pd
sys.path.insert(0, ROOT)
from analysis.simulate import simulate_collection
from analysis.lagged import LagOptions, prepare

def coll(k, sizes, tau, seed, **kw):
    return simulate_collection(k, sizes, range(1, 8), mean_a_to_s=-0.15, tau_a_to_s=tau, instruments=False,
                               missing_sessions=0.05, seed=seed, **kw).data

cases = {}
cases["main"] = (coll(6, (30, 60), 0.12, 21), LagOptions(control_prior_outcome=False, time_trend="fixed"))
cases["singular"] = (coll(4, (30, 50), 0.0, 1), LagOptions())
d = coll(6, (30, 60), 0.08, 33)
rng = np.random.default_rng(5)
pats = d[["study", "patient"]].drop_duplicates().reset_index(drop=True)
smean = {s: 30 + 4 * i for i, s in enumerate(sorted(pats["study"].unique()))}
pats["age"] = [smean[s] + 8 * rng.standard_normal() for s in pats["study"]]
d = d.merge(pats, on=["study", "patient"])
cases["deft"] = (d, LagOptions(standardize=False, time_trend="fixed", covariates=("age",)))
parts = []
for name, (data, opt) in cases.items():
    data.to_csv(OUT + f"/onestage_data_{name}.csv", index=False, float_format="%.17g")
    r = prepare(data, opt, "alliance_to_symptoms")
    keep = [c for c in ["study", "patient", "lead", "within", "between", "prior_within", "prior_between", "time"]
            if c in r.columns]
    r = r[keep].copy()
    if "age" in data.columns:
        age = data.drop_duplicates(["study", "patient"]).set_index(["study", "patient"])["age"]
        r["age"] = age.loc[list(zip(r["study"], r["patient"]))].to_numpy()
    r.insert(0, "case", name)
    parts.append(r)
pd.concat(parts).to_csv(OUT + "/onestage_rows.csv", index=False, float_format="%.17g")
'
py <- gsub("ROOT", shQuote(root), gsub("OUT", shQuote(here), py, fixed = TRUE), fixed = TRUE)
tmp <- tempfile(fileext = ".py")
writeLines(py, tmp)
stopifnot(system2(python, tmp) == 0)

rows <- read.csv(file.path(here, "onestage_rows.csv"), stringsAsFactors = FALSE)
ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5),
                    check.conv.singular = "ignore")
out <- list()
for (case in unique(rows$case)) {
  d <- rows[rows$case == case, ]
  d$study <- factor(d$study)
  d$pid <- factor(paste(d$study, d$patient, sep = "\r"))
  nuis <- intersect(c("between", "prior_within", "prior_between", "time"), names(d))
  nuis <- nuis[vapply(nuis, function(v) !all(is.na(d[[v]])), TRUE)]
  terms <- paste(c("0 + study", paste0("study:", nuis)), collapse = " + ")
  inter <- character(0)
  if (!all(is.na(d$age))) {
    first <- !duplicated(d$pid)
    m_s <- tapply(d$age[first], d$study[first], mean)
    d$age_w <- d$age - m_s[as.character(d$study)]
    d$age_b <- m_s[as.character(d$study)] - mean(m_s)
    d$int_w <- d$within * d$age_w
    d$int_b <- d$within * d$age_b
    terms <- paste(terms, "+ study:age + int_w + int_b")
    inter <- c("int_w", "int_b")
  }
  f <- as.formula(paste("lead ~", terms, "+ within + (1 | pid) + (0 + within | study)"))
  fit <- lmerTest::lmer(f, data = d, REML = TRUE, control = ctrl)
  co <- summary(fit)$coefficients
  vc <- as.data.frame(VarCorr(fit))
  sd_slope <- vc$sdcor[vc$grp == "study"]
  pr <- suppressWarnings(confint(fit, parm = "theta_", method = "profile", level = 0.95, oldNames = FALSE))
  ci <- pr[grep("within\\|study", rownames(pr)), ]
  # confint() interpolates a spline through a grid of the profile; the exact limits solve
  # profile(tau) - deviance = qchisq(.95, 1) with lme4's own ML deviance function (devfun2, which
  # refits by ML as profile() does), minimised over the other SDs at each tau
  dd <- lme4:::devfun2(fit, signames = FALSE)
  opt <- attr(dd, "optimum")
  base <- attr(dd, "basedev")
  is_tau <- grepl("within\\|study", names(opt))
  others <- setdiff(1:3, which(is_tau))
  start <- opt[others]
  prof <- function(tau) {
    f <- function(p) { v <- numeric(3); v[others] <- p; v[is_tau[1:3]] <- tau; dd(v) }
    o <- minqa::bobyqa(pmax(start, 1e-6), f, lower = c(0, 1e-8), control = list(rhoend = 1e-10))
    o$fval - base
  }
  crit <- qchisq(0.95, 1)
  tau_ml <- unname(opt[is_tau])
  lo <- if (prof(0) <= crit) 0 else uniroot(function(t) prof(t) - crit, c(0, tau_ml), tol = 1e-12)$root
  hi_b <- max(tau_ml, 0.05) * 2
  while (prof(hi_b) < crit) hi_b <- hi_b * 2
  hi <- uniroot(function(t) prof(t) - crit, c(tau_ml, hi_b), tol = 1e-12)$root
  res <- list(
    n = nrow(d), k = nlevels(d$study), n_patients = nlevels(d$pid),
    reml = as.numeric(REMLcrit(fit)),
    singular = isSingular(fit),
    sd_slope = sd_slope,
    var_patient = vc$vcov[vc$grp == "pid"],
    sigma2 = sigma(fit)^2,
    tau_ci = c(lo, hi),
    tau_ci_confint = unname(as.numeric(ci)),
    sd_slope_ml = tau_ml,
    fixed = list()
  )
  for (nm in c("within", inter)) {
    res$fixed[[nm]] <- list(estimate = co[nm, "Estimate"], se = co[nm, "Std. Error"], df = co[nm, "df"],
                            pvalue = co[nm, "Pr(>|t|)"])
  }
  out[[case]] <- res
}
write(toJSON(out, digits = I(15), auto_unbox = TRUE, pretty = TRUE), file.path(here, "onestage_reference.json"))
cat("wrote onestage_reference.json\n")
