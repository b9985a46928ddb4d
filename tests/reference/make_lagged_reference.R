# Reference values for analysis/lagged/ and analysis/mixed.py (METHODS sections 2-5),
# computed with R's lme4 (REML/ML linear mixed models), lm + clubSandwich (CR1) and
# an independent R implementation of standardization, centering and lag pairing.
#
# Run from the repository root:
#     Rscript tests/reference/make_lagged_reference.R
#
# Step 1 (Python, analysis.simulate + analysis.lagged.prepare, embedded below) writes
#   lagged_data.csv   three simulated studies (raw canonical long data):
#     A-trend     50 patients, sessions 1-8, alliance/symptom trends with random
#                 slopes, WAI-SR / BDI-II metrics, 12% skipped sessions, 5% missing values
#     B-boundary  40 patients, sessions 1-7; the hybrid model's random-intercept
#                 variance is on the boundary (lme4: singular fit)
#     C-irregular 45 patients measured at sessions 0,1,2,3,5,7,9,12; 25% skipped
#                 sessions, 8% missing values (session vs next-observed pairing differ)
#     The same patient ids occur in every study (the key is study + patient).
#   lagged_rows.csv   prepare()'s model rows for every row set x direction, so that
#                     R fits exactly the rows the Python code uses.
# Step 2 (R) reads them and writes
#   lagged_reference.json  lme4 / lm fits of every configuration x study x direction
#   lagged_r_prepared.csv  standardization, centering and pairing recomputed in R from
#                          lagged_data.csv alone (for person_mean, detrended, lag 2,
#                          next-observed pairing, no standardization and a window)
# pytest (tests/test_lagged.py) compares with the committed outputs; `make reference` reruns this script.
#
# lme4 is run with a tightened optimizer (minqa bobyqa, rhoend = 1e-12) so that the
# reference values are accurate to far better than the 1e-4 tolerance of the tests (with
# lme4's default nloptwrap tolerances, random-slope variances are only good to ~1e-4).

suppressPackageStartupMessages({
  library(lme4)
  library(metafor)
  library(clubSandwich)
  library(sandwich)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = FALSE)
file_arg <- sub("^--file=", "", args[grep("^--file=", args)])
here <- if (length(file_arg)) dirname(normalizePath(file_arg)) else "tests/reference"
root <- normalizePath(file.path(here, "..", ".."))
python <- file.path(root, ".venv", "bin", "python")

# ------------------------------------------------------------------ step 1: Python
py <- '
import sys, json
import numpy as np, pandas as pd
sys.path.insert(0, ROOT)
from analysis.simulate import simulate_study, ALLIANCE_INSTRUMENTS, SYMPTOM_INSTRUMENTS
from analysis.lagged import LagOptions, prepare, DIRECTIONS

a = simulate_study(50, range(1, 9), study="A-trend", alliance_trend=0.15, symptom_trend=-0.2,
                   sd_alliance_trend=0.12, sd_symptom_trend=0.2, missing_sessions=0.12, missing_values=0.05,
                   alliance_instrument=ALLIANCE_INSTRUMENTS[0], symptom_instrument=SYMPTOM_INSTRUMENTS[0],
                   seed=11).data
b = simulate_study(40, range(1, 8), study="B-boundary", missing_sessions=0.05, seed=5).data
c = simulate_study(45, [0, 1, 2, 3, 5, 7, 9, 12], study="C-irregular", ar_symptoms=0.5,
                   missing_sessions=0.25, missing_values=0.08,
                   alliance_instrument=ALLIANCE_INSTRUMENTS[4], symptom_instrument=SYMPTOM_INSTRUMENTS[1],
                   seed=3).data
data = pd.concat([a, b, c], ignore_index=True)
data.to_csv(OUT + "/lagged_data.csv", index=False, float_format="%.17g")

rowsets = {
    "none": LagOptions(centering="none"),
    "grand_mean": LagOptions(centering="grand_mean"),
    "person_mean": LagOptions(time_trend="fixed", cross_level=True),
    "detrended": LagOptions(centering="detrended", time_trend="fixed"),
    "lag2": LagOptions(lag=2),
    "next_observed": LagOptions(pairing="next_observed"),
    "noprior": LagOptions(control_prior_outcome=False, time_trend="fixed"),
    "raw": LagOptions(standardize=False),
    "window": LagOptions(sessions=(2, 7)),
}
parts = []
for name, opt in rowsets.items():
    for d in DIRECTIONS:
        r = prepare(data, opt, d)
        r.insert(0, "rowset", name)
        r.insert(1, "direction", d)
        parts.append(r)
rows = pd.concat(parts, ignore_index=True)
keep = ["rowset", "direction", "study", "patient", "session", "lead_session", "within", "between",
        "prior_within", "prior_between", "interaction", "time", "lead"]
rows[[k for k in keep if k in rows]].to_csv(OUT + "/lagged_rows.csv", index=False, float_format="%.15g")
'
py <- gsub("ROOT", shQuote(root), gsub("OUT", shQuote(here), py, fixed = TRUE), fixed = TRUE)
py_file <- tempfile(fileext = ".py")
writeLines(py, py_file)
status <- system2(python, py_file)
if (status != 0) stop("the Python data step failed")

raw <- read.csv(file.path(here, "lagged_data.csv"), stringsAsFactors = FALSE)
rows <- read.csv(file.path(here, "lagged_rows.csv"), stringsAsFactors = FALSE)

# ------------------------------------------------------------------ step 2a: lme4 / lm fits
ctl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e6),
                   check.conv.singular = "ignore")

# name, row set, terms (besides the intercept), random part, engine, options for LagOptions
configs <- list(
  list(name = "none", rowset = "none", terms = c("within", "prior_within"), random = "1",
       engine = "lmer", options = list(centering = "none")),
  list(name = "grand_mean", rowset = "grand_mean", terms = c("within", "prior_within"), random = "1",
       engine = "lmer", options = list(centering = "grand_mean")),
  list(name = "person_mean", rowset = "person_mean",
       terms = c("within", "between", "prior_within", "prior_between"), random = "1",
       engine = "lmer", options = list(centering = "person_mean")),
  list(name = "detrended", rowset = "detrended",
       terms = c("within", "between", "prior_within", "prior_between"), random = "1",
       engine = "lmer", options = list(centering = "detrended")),
  list(name = "lag2", rowset = "lag2", terms = c("within", "between", "prior_within", "prior_between"),
       random = "1", engine = "lmer", options = list(lag = 2)),
  list(name = "next_observed", rowset = "next_observed",
       terms = c("within", "between", "prior_within", "prior_between"), random = "1",
       engine = "lmer", options = list(pairing = "next_observed")),
  list(name = "time_fixed", rowset = "person_mean",
       terms = c("within", "between", "prior_within", "prior_between", "time"), random = "1",
       engine = "lmer", options = list(time_trend = "fixed")),
  list(name = "time_fixed_random", rowset = "person_mean",
       terms = c("within", "between", "prior_within", "prior_between", "time"), random = "1 + time",
       engine = "lmer", options = list(time_trend = "fixed_random")),
  list(name = "detrended_time", rowset = "detrended",
       terms = c("within", "between", "prior_within", "prior_between", "time"), random = "1",
       engine = "lmer", options = list(centering = "detrended", time_trend = "fixed")),
  list(name = "cross_level", rowset = "person_mean",
       terms = c("within", "between", "prior_within", "prior_between", "interaction"), random = "1",
       engine = "lmer", options = list(cross_level = TRUE)),
  list(name = "noprior", rowset = "noprior", terms = c("within", "between"), random = "1",
       engine = "lmer", options = list(control_prior_outcome = FALSE)),
  list(name = "noprior_time_fixed_random", rowset = "noprior", terms = c("within", "between", "time"),
       random = "1 + time", engine = "lmer",
       options = list(control_prior_outcome = FALSE, time_trend = "fixed_random")),
  list(name = "raw", rowset = "raw", terms = c("within", "between", "prior_within", "prior_between"),
       random = "1", engine = "lmer", options = list(standardize = FALSE)),
  list(name = "window", rowset = "window", terms = c("within", "between", "prior_within", "prior_between"),
       random = "1", engine = "lmer", options = list(sessions = c(2, 7))),
  list(name = "person_mean_ml", rowset = "person_mean",
       terms = c("within", "between", "prior_within", "prior_between"), random = "1",
       engine = "lmer_ml", options = list(centering = "person_mean")),
  list(name = "fixed_effects", rowset = "person_mean", terms = c("within", "prior_within"), random = "",
       engine = "lm_cr1", options = list(estimator = "fixed_effects")),
  list(name = "fixed_effects_detrended_time", rowset = "detrended",
       terms = c("within", "prior_within", "time"), random = "",
       engine = "lm_cr1", options = list(estimator = "fixed_effects", centering = "detrended",
                                          time_trend = "fixed"))
)

demean <- function(x, g) x - ave(x, g)

results <- list()
for (cfg in configs) {
  for (d in c("alliance_to_symptoms", "symptoms_to_alliance")) {
    for (st in unique(raw$study)) {
      dd <- rows[rows$rowset == cfg$rowset & rows$direction == d & rows$study == st, ]
      dd$patient <- factor(dd$patient)
      rec <- list(config = cfg$name, options = cfg$options, engine = cfg$engine, study = st,
                  direction = d, n_pairs = nrow(dd), n_patients = nlevels(dd$patient))
      if (cfg$engine %in% c("lmer", "lmer_ml")) {
        f <- as.formula(paste("lead ~", paste(cfg$terms, collapse = " + "),
                              "+ (", cfg$random, "| patient)"))
        m <- tryCatch(lmer(f, data = dd, REML = cfg$engine == "lmer", control = ctl),
                      error = function(e) e)
        if (inherits(m, "error")) {
          rec$error <- conditionMessage(m)
          results[[length(results) + 1]] <- rec
          next
        }
        vc <- as.data.frame(VarCorr(m))
        rec$terms <- c("intercept", cfg$terms)
        rec$estimate <- unname(fixef(m))
        rec$se <- unname(sqrt(diag(as.matrix(vcov(m)))))
        rec$tau2 <- vc$vcov[vc$grp == "patient" & vc$var1 == "(Intercept)" & is.na(vc$var2)]
        rec$sigma2 <- sigma(m)^2
        if (cfg$random == "1 + time") {
          rec$tau2_slope <- vc$vcov[vc$grp == "patient" & vc$var1 == "time" & is.na(vc$var2)]
          rec$cov_intercept_slope <- vc$vcov[vc$grp == "patient" & !is.na(vc$var2)]
        }
        rec$theta <- unname(getME(m, "theta"))
        rec$singular <- isSingular(m)
        rec$deviance <- if (cfg$engine == "lmer") REMLcrit(m) else deviance(m)
      } else {
        # fixed effects: OLS on patient-demeaned rows, no intercept; CR1 by patient
        y <- demean(dd$lead, dd$patient)
        X <- sapply(cfg$terms, function(t) demean(dd[[t]], dd$patient))
        m <- lm(y ~ 0 + X)
        V <- as.matrix(vcovCR(m, cluster = dd$patient, type = "CR1"))
        Vhc1 <- vcovCL(m, cluster = dd$patient, type = "HC1", cadjust = TRUE)
        rec$terms <- cfg$terms
        rec$estimate <- unname(coef(m))
        rec$se <- unname(sqrt(diag(V)))
        rec$se_vcovCL_HC1 <- unname(sqrt(diag(Vhc1)))
        rec$df <- nlevels(dd$patient) - 1
      }
      results[[length(results) + 1]] <- rec
    }
  }
}

# ------------------------------------------------------------------ step 2b: centering in R
# Independent implementation of METHODS 2-4 from the raw data.
prep_r <- function(raw, xvar, yvar, centering = "person_mean", lag = 1, pairing = "session",
                   standardize = TRUE, window = NULL) {
  out <- list()
  for (st in unique(raw$study)) {
    d <- raw[raw$study == st, ]
    if (!is.null(window)) d <- d[d$session >= window[1] & d$session <= window[2], ]
    d <- d[order(d$patient, d$session), ]
    for (v in c(xvar, yvar)) {
      if (standardize) d[[v]] <- (d[[v]] - mean(d[[v]], na.rm = TRUE)) / sd(d[[v]], na.rm = TRUE)
    }
    comp <- function(v) {
      pm <- tapply(d[[v]], d$patient, function(z) mean(z, na.rm = TRUE))
      pm[is.nan(pm)] <- NA
      gm <- mean(pm, na.rm = TRUE)
      between <- unname(pm[d$patient]) - gm
      if (centering == "person_mean") {
        within <- d[[v]] - unname(pm[d$patient])
      } else {
        within <- rep(NA_real_, nrow(d))
        for (p in unique(d$patient)) {
          i <- which(d$patient == p)
          ok <- i[!is.na(d[[v]][i])]
          if (length(ok) >= 3) {
            fit <- lm(d[[v]][ok] ~ d$session[ok])
            within[ok] <- residuals(fit)
          }
        }
      }
      list(within = within, between = between)
    }
    X <- comp(xvar)
    Y <- comp(yvar)
    for (r in seq_len(nrow(d))) {
      p <- d$patient[r]
      t <- d$session[r]
      if (pairing == "session") {
        j <- which(d$patient == p & d$session == t + lag & !is.na(d[[yvar]]))
      } else {
        later <- which(d$patient == p & d$session > t & !is.na(d[[yvar]]))
        j <- if (length(later) >= lag) later[lag] else integer(0)
      }
      if (length(j) != 1) next
      vals <- c(X$within[r], X$between[r], Y$within[r], Y$between[r], d[[yvar]][j])
      if (any(is.na(vals))) next
      out[[length(out) + 1]] <- data.frame(study = st, patient = p, session = t,
                                           lead_session = d$session[j], within = vals[1],
                                           between = vals[2], prior_within = vals[3],
                                           prior_between = vals[4], lead = vals[5])
    }
  }
  do.call(rbind, out)
}

r_sets <- list(
  person_mean = list(), detrended = list(centering = "detrended"), lag2 = list(lag = 2),
  next_observed = list(pairing = "next_observed"), raw = list(standardize = FALSE),
  window = list(window = c(2, 7))
)
r_parts <- list()
for (nm in names(r_sets)) {
  for (d in c("alliance_to_symptoms", "symptoms_to_alliance")) {
    vars <- if (d == "alliance_to_symptoms") c("alliance", "symptoms") else c("symptoms", "alliance")
    a <- c(list(raw = raw, xvar = vars[1], yvar = vars[2]), r_sets[[nm]])
    pr <- do.call(prep_r, a)
    pr <- cbind(rowset = nm, direction = d, pr)
    r_parts[[length(r_parts) + 1]] <- pr
  }
}
r_prep <- do.call(rbind, r_parts)
write.csv(r_prep, file.path(here, "lagged_r_prepared.csv"), row.names = FALSE)

# ------------------------------------------------------------------ step 2c: pooling (metafor)
# two_stage() with default options = lme4 "person_mean" fits of the three studies, pooled
# with rma.uni (REML; z and Knapp-Hartung tests).
pooled <- list()
for (d in c("alliance_to_symptoms", "symptoms_to_alliance")) {
  fr <- Filter(function(r) r$config == "person_mean" && r$direction == d, results)
  yi <- sapply(fr, function(r) r$estimate[2])
  sei <- sapply(fr, function(r) r$se[2])
  for (tst in c("z", "knha")) {
    m <- rma(yi = yi, sei = sei, method = "REML", test = tst)
    pooled[[length(pooled) + 1]] <- list(direction = d, test = tst, yi = yi, sei = sei,
                                         estimate = as.numeric(m$b), se = m$se, ci_low = m$ci.lb,
                                         ci_high = m$ci.ub, pvalue = m$pval, tau2 = m$tau2, i2 = m$I2)
  }
}

# ------------------------------------------------------------------ step 2d: early alliance (METHODS 7)
# final symptoms ~ early alliance (mean of the first 3 observed ratings) + baseline symptoms
# (first observed), final = last observed symptoms from a later session; z-scored within study.
early <- list()
for (st in unique(raw$study)) {
  d <- raw[raw$study == st, ]
  recs <- list()
  for (p in unique(d$patient)) {
    dp <- d[d$patient == p, ]
    dp <- dp[order(dp$session), ]
    a <- dp[!is.na(dp$alliance), ]
    s <- dp[!is.na(dp$symptoms), ]
    if (nrow(a) < 3 || nrow(s) < 1) next
    last_early <- a$session[3]
    if (s$session[nrow(s)] <= max(last_early, s$session[1])) next
    recs[[length(recs) + 1]] <- data.frame(early = mean(a$alliance[1:3]), baseline = s$symptoms[1],
                                           final = s$symptoms[nrow(s)])
  }
  pd <- do.call(rbind, recs)
  z <- function(v) (v - mean(v)) / sd(v)
  m <- lm(z(final) ~ z(early) + z(baseline), data = pd)
  early[[length(early) + 1]] <- list(study = st, n = nrow(pd), estimate = unname(coef(m)),
                                     se = unname(sqrt(diag(vcov(m)))))
}
ey <- sapply(early, function(r) r$estimate[2])
es <- sapply(early, function(r) r$se[2])
me <- rma(yi = ey, sei = es, method = "REML")
early_pooled <- list(estimate = as.numeric(me$b), se = me$se, ci_low = me$ci.lb, ci_high = me$ci.ub,
                     tau2 = me$tau2)

writeLines(toJSON(list(
  note = paste("lme4", as.character(packageVersion("lme4")), "REML/ML, bobyqa rhoend 1e-12;",
               "clubSandwich", as.character(packageVersion("clubSandwich")), "CR1;",
               "rows from lagged_rows.csv (analysis.lagged.prepare)"),
  fits = results,
  pooled = pooled,
  early = early,
  early_pooled = early_pooled
), auto_unbox = TRUE, digits = NA, pretty = FALSE), file.path(here, "lagged_reference.json"))
cat("wrote lagged_reference.json, lagged_r_prepared.csv\n")
