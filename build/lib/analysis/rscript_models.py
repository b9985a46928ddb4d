"""Self-contained R scripts (lme4 + lmerTest) for the total/within/between trio and the growth models.

* :func:`r_decomposition_script` reproduces
  :func:`analysis.decomposition.total_within_between` (METHODS §12) from the
  canonical long CSV: selection of the study, session window, optional
  z-scores, person means, the outcome at session t + L, the ``total`` and
  ``within`` random-intercept models (``lme4::lmer``, REML; t tests with
  Satterthwaite's df from ``lmerTest``) and the ``between`` OLS on the person
  means (t on n − 2 df). Writes ``decomposition_estimates.csv`` (model, term,
  estimate, se, df, statistic, pvalue, ci_low, ci_high, n_obs, n_patients) and
  ``decomposition_variance.csv`` (model, tau2, sigma2, singular).
* :func:`r_growth_script` reproduces the fits of
  :func:`analysis.convergence.growth_models` (METHODS §8, Models 1–3) from the
  model rows the app exports (:meth:`analysis.convergence.GrowthResult.model_data`):
  the app's sample rules, dyad scores and exclusions are applied in Python
  *before* export, and the number of levels (therapist random intercept or
  not) is the app's decision; the script then centres the dyad-level
  predictors at their mean over the dyads, builds the product term and the
  predictor × time terms, drops collinear terms as the app does (sequential
  Gram–Schmidt, tolerance 1e-7), fits every model by REML (random intercept
  and slope of t per dyad, unstructured; plus a therapist intercept with three
  levels) with Satterthwaite df, and refits by ML for the AIC. Writes
  ``growth_fixed_effects.csv`` (model, term, estimate, se, df, t, pvalue) and
  ``growth_random_effects.csv`` (model, var_intercept, var_slope,
  cov_intercept_slope, residual, var_therapist, deviance_reml, aic_ml).

User strings (file, study names) enter the scripts only as escaped R string
literals (:func:`analysis.rscript.r_string`).
"""

from __future__ import annotations

from analysis.rscript import _r_value, r_string

__all__ = ["r_decomposition_script", "r_growth_script"]

_DIRECTIONS = ("alliance_to_symptoms", "symptoms_to_alliance")


def r_decomposition_script(data_filename: str, study=None, direction: str = "alliance_to_symptoms", lag: int = 1,
                           standardize: bool = False, sessions=None) -> str:
    """R source reproducing :func:`analysis.decomposition.total_within_between` with the same arguments
    (METHODS §12) from the canonical long CSV ``data_filename``. ValueError on an argument the function
    itself would refuse."""
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(map(repr, _DIRECTIONS))}; got {direction!r}.")
    if isinstance(lag, bool) or not isinstance(lag, int) or lag < 1:
        raise ValueError(f"lag must be a whole number ≥ 1; got {lag!r}.")
    if sessions is not None:
        sessions = (int(sessions[0]), int(sessions[1]))
    block = "\n".join([
        f"data_file <- {r_string(data_filename)}",
        f"study <- {'NULL' if study is None else r_string(str(study))}",
        f"direction <- {r_string(direction)}",
        f"lag <- {int(lag)}L",
        f"standardize <- {_r_value(bool(standardize))}",
        f"sessions <- {_r_value(sessions)}",
    ])
    return _DECOMPOSITION.replace("@SETTINGS@", block)


def r_growth_script(data_filename: str, result) -> str:
    """R source refitting the growth models of ``result`` (:class:`analysis.convergence.GrowthResult`)
    from its exported model rows (``result.model_data()`` saved as ``data_filename``); module docstring."""
    from analysis.convergence import _model_predictors

    models = sorted(result.models)
    preds = [f"  `{m}` = {_r_value(tuple(_model_predictors(m, result.covariates)))}" for m in models]
    levels = 3 if any(g.levels == 3 for g in result.models.values()) else 2
    block = "\n".join([
        f"data_file <- {r_string(data_filename)}",
        f"study <- {r_string(str(result.study))}",
        "predictors <- list(\n" + ",\n".join(preds) + "\n)",
        f"levels <- {levels}L",
        f"time_coding <- {r_string(result.time)}",
    ])
    return _GROWTH.replace("@SETTINGS@", block)


_COMMON = r'''
suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
})
missing_text <- function(v) is.na(v) | trimws(v) %in% c("", "NA", "NaN")
num <- function(v) suppressWarnings(as.numeric(ifelse(missing_text(v), NA, v)))
# every column as text, marked as UTF-8 (sorting and matching non-ASCII names needs the mark); the app's CSVs
# prefix text a spreadsheet would run as a formula (and text beginning with ') with one ': removed here
read_text_csv <- function(path) {
  x <- read.csv(path, colClasses = "character", na.strings = character(0), check.names = FALSE,
                fileEncoding = "UTF-8")
  x[] <- lapply(x, function(v) sub("^'", "", enc2utf8(v)))
  names(x) <- sub("^'", "", enc2utf8(names(x)))
  x
}
ctl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10, maxfun = 1e5),
                   check.conv.singular = "ignore", calc.derivs = FALSE)
ctl_nm <- lmerControl(optimizer = "Nelder_Mead", optCtrl = list(FtolAbs = 1e-14, FtolRel = 1e-14, maxfun = 1e6),
                      check.conv.singular = "ignore", calc.derivs = FALSE)
ctl_nl <- lmerControl(optimizer = "nloptwrap", optCtrl = list(xtol_abs = 1e-14, ftol_abs = 1e-14, xtol_rel = 1e-14,
                                                              ftol_rel = 1e-14, maxeval = 1e5),
                      check.conv.singular = "ignore", calc.derivs = FALSE)
# REML (or ML) fit from three optimisers; the lowest criterion (the REML/ML estimate) is kept (on a
# boundary one optimiser alone can stop early). do.call puts the data into the model's call, so that
# lmerTest can rebuild the deviance function from any frame.
best_lmer <- function(f, m, REML = TRUE) {
  crit <- function(fit) if (REML) REMLcrit(fit) else deviance(fit)
  best <- NULL
  for (ctrl in list(ctl, ctl_nm, ctl_nl)) {
    fit <- suppressWarnings(do.call(lme4::lmer, list(formula = f, data = m, REML = REML, control = ctrl)))
    if (is.null(best) || crit(fit) < crit(best)) best <- fit
  }
  best
}
'''

_DECOMPOSITION = r'''# Reproduces the total, within and between models of one study (Alliance <-> Symptoms dashboard,
# docs/METHODS.md section 12; the Within/between paper) with lme4 and lmerTest.
#
#   total:   Y[t+L] = b0 + b*X[t] + a*Y[t] + u_patient + e                        (REML)
#   within:  Y[t+L] - Ybar = b0 + bW*(X[t] - Xbar) + bB*(Xbar - mean Xbar) + aW*(Y[t] - Ybar) + u + e
#   between: Ybar = c0 + c*Xbar + e   (OLS, one row per patient, t on n - 2 df)
# Person means use every observed value of the patient in the session window.
# Run in the folder that holds the data file:  Rscript this_script.R
# Writes decomposition_estimates.csv and decomposition_variance.csv and prints a summary.
@COMMON@
@SETTINGS@

raw <- read_text_csv(data_file)
need <- c("patient", "session", "alliance", "symptoms")
if (!all(need %in% names(raw))) stop("The data lack the column(s) ", paste(setdiff(need, names(raw)), collapse = ", "))
if ("study" %in% names(raw)) {
  studies <- sort(unique(raw$study), method = "radix")
  if (is.null(study)) {
    if (length(studies) != 1) stop("The data hold ", length(studies), " studies; set 'study' at the top.")
    study <- studies[1]
  }
  if (!(study %in% studies)) stop("Study '", study, "' is not in the data.")
  d <- raw[raw$study == study, ]
} else {
  d <- raw
  if (is.null(study)) study <- "Study"
}
d$session <- num(d$session)
if (any(is.na(d$session)) || any(d$session != round(d$session))) stop("Column 'session' must hold whole numbers.")
if (!is.null(sessions)) d <- d[d$session >= sessions[1] & d$session <= sessions[2], ]
d$alliance <- num(d$alliance)
d$symptoms <- num(d$symptoms)
if (anyDuplicated(paste(d$patient, d$session))) stop("A patient has more than one row for the same session.")
if (nrow(d) == 0) stop("No rows in the session window.")
d <- d[order(d$patient, d$session, method = "radix"), ]

vars <- if (direction == "alliance_to_symptoms") c("alliance", "symptoms") else c("symptoms", "alliance")
x <- d[[vars[1]]]
y <- d[[vars[2]]]
zscore <- function(v) {
  obs <- is.finite(v)
  if (sum(obs) < 2) stop("Standardization needs at least two observed values of each variable.")
  s <- sd(v[obs])
  if (!(s > 0)) stop("A variable has no variance in the window, so it cannot be standardized.")
  (v - mean(v[obs])) / s
}
if (standardize) {
  x <- zscore(x)
  y <- zscore(y)
}
pid <- match(d$patient, sort(unique(d$patient), method = "radix"))
G <- max(pid)
pmean <- function(v) {
  o <- is.finite(v)
  n <- tabulate(pid[o], G)
  s <- vapply(split(v[o], factor(pid[o], levels = seq_len(G))), sum, numeric(1))
  ifelse(n > 0, s / n, NA_real_)
}
xm <- pmean(x)
ym <- pmean(y)
xb <- xm - mean(xm[is.finite(xm)])
j <- match(paste(pid, d$session + lag), paste(pid, d$session))
lead <- y[j]
ok <- is.finite(lead) & is.finite(x) & is.finite(y)

est <- list()
vc <- list()
notes <- character(0)
fit_mixed <- function(model, yy, XX) {
  okm <- ok & is.finite(yy) & apply(is.finite(XX), 1, all)
  if (sum(okm) == 0) stop("no complete rows")
  if (length(unique(pid[okm])) < 3) stop("fewer than 3 patients with a complete pair")
  m <- data.frame(yy = yy[okm], XX[okm, -1, drop = FALSE], patient = factor(pid[okm]))
  f <- as.formula(paste("yy ~", paste(colnames(XX)[-1], collapse = " + "), "+ (1 | patient)"))
  fit <- best_lmer(f, m)
  cf <- summary(lmerTest::as_lmerModLmerTest(fit))$coefficients
  crit <- qt(0.975, cf[, "df"])
  est[[model]] <<- data.frame(model = model, term = colnames(XX), estimate = cf[, 1], se = cf[, 2],
                              df = cf[, "df"], statistic = cf[, "t value"], pvalue = cf[, "Pr(>|t|)"],
                              ci_low = cf[, 1] - crit * cf[, 2], ci_high = cf[, 1] + crit * cf[, 2],
                              n_obs = nrow(m), n_patients = nlevels(m$patient), row.names = NULL)
  vc[[model]] <<- data.frame(model = model, tau2 = as.data.frame(VarCorr(fit))$vcov[1], sigma2 = sigma(fit)^2,
                             singular = isSingular(fit))
}
one <- rep(1, length(x))
XX_total <- cbind(intercept = one, predictor = x, prior_outcome = y)
XX_within <- cbind(intercept = one, within = x - xm[pid], between = xb[pid], prior_within = y - ym[pid])
for (model in c("total", "within")) {
  r <- tryCatch({
    if (model == "total") fit_mixed("total", lead, XX_total) else fit_mixed("within", lead - ym[pid], XX_within)
    NULL
  }, error = function(e) conditionMessage(e))
  if (!is.null(r)) notes <- c(notes, sprintf("The %s model was not fitted: %s.", model, r))
}
both <- is.finite(xm) & is.finite(ym)
if (sum(both) >= 3) {
  b <- summary(lm(ym[both] ~ xm[both]))$coefficients
  n <- sum(both)
  crit <- qt(0.975, n - 2)
  est[["between"]] <- data.frame(model = "between", term = c("intercept", "between"), estimate = b[, 1],
                                 se = b[, 2], df = n - 2, statistic = b[, 3], pvalue = b[, 4],
                                 ci_low = b[, 1] - crit * b[, 2], ci_high = b[, 1] + crit * b[, 2],
                                 n_obs = n, n_patients = n, row.names = NULL)
} else {
  notes <- c(notes, "The between model was not fitted: fewer than 3 patients with both person means.")
}
est <- if (length(est)) do.call(rbind, est) else
  data.frame(model = character(0), term = character(0), estimate = numeric(0), se = numeric(0), df = numeric(0),
             pvalue = numeric(0))
vc <- if (length(vc)) do.call(rbind, vc) else data.frame(model = character(0), tau2 = numeric(0))
write.csv(est, "decomposition_estimates.csv", row.names = FALSE, fileEncoding = "UTF-8")
write.csv(vc, "decomposition_variance.csv", row.names = FALSE, fileEncoding = "UTF-8")

cat("Total, within and between models of study", study, "-", vars[1], "->", vars[2], lag, "session(s) later",
    if (standardize) "(z-scores)" else "(raw scores)", "\n\n")
print(format(est[, c("model", "term", "estimate", "se", "df", "pvalue")], digits = 4), row.names = FALSE)
for (n in notes) cat(n, "\n")
cat("\nWrote decomposition_estimates.csv and decomposition_variance.csv\n")
'''

_GROWTH = r'''# Refits the symptom growth Models 1-3 of the convergence analysis (Alliance <-> Symptoms dashboard,
# docs/METHODS.md section 8) with lme4 and lmerTest, from the model rows the app exported:
# sample rules, dyad scores and exclusions were applied by the app before export, and the
# number of levels (a therapist random intercept or not) is the app's decision.
#
#   Y_ij = b0j + b1j * t_ij + r_ij,  b0j = g00 + sum(g0k * P_kj) + u0j,  b1j = g10 + sum(g1k * P_kj) + u1j
# with the dyad-level predictors P centred at their mean over the dyads (the convergence x
# development product from the centred values), (u0j, u1j) unstructured, REML, Satterthwaite df;
# the ML refit gives the AIC that compares Models 1-3.
# Run in the folder that holds the data file:  Rscript this_script.R
# Writes growth_fixed_effects.csv and growth_random_effects.csv and prints a summary.
@COMMON@
@SETTINGS@

d <- read_text_csv(data_file)
d$t <- num(d$t)
d$symptoms <- num(d$symptoms)
base <- setdiff(unique(unlist(predictors)), "convergence_x_development")
for (p in base) d[[p]] <- num(d[[p]])
dy <- d[!duplicated(d$patient), c("patient", base), drop = FALSE]
for (p in base) dy[[p]] <- dy[[p]] - mean(dy[[p]])
if (all(c("convergence", "alliance_development") %in% base)) {
  dy$convergence_x_development <- dy$convergence * dy$alliance_development
}
dv <- dy[match(d$patient, dy$patient), , drop = FALSE]

# the app's collinearity rule: a column is dropped when its residual on the kept columns before it is
# below 1e-7 of its norm (the later of two collinear terms goes)
drop_collinear <- function(X) {
  keep <- integer(0)
  Q <- matrix(0, nrow(X), 0)
  for (k in seq_len(ncol(X))) {
    x <- X[, k]
    nx <- sqrt(sum(x^2))
    if (nx == 0) next
    r <- x - Q %*% crossprod(Q, x)
    if (sqrt(sum(r^2)) <= 1e-7 * nx) next
    r <- r - Q %*% crossprod(Q, r)
    Q <- cbind(Q, r / sqrt(sum(r^2)))
    keep <- c(keep, k)
  }
  keep
}

fixed <- list()
random <- list()
for (mname in names(predictors)) {
  X <- cbind(intercept = 1, time = d$t)
  for (p in predictors[[mname]]) {
    X <- cbind(X, dv[[p]], dv[[p]] * d$t)
    colnames(X)[ncol(X) - 1:0] <- c(p, paste0("time:", p))
  }
  keep <- drop_collinear(X)
  dropped <- setdiff(colnames(X), colnames(X)[keep])
  X <- X[, keep, drop = FALSE]
  m <- data.frame(y = d$symptoms, t = d$t, patient = factor(d$patient))
  vn <- sprintf("v%d", seq_len(ncol(X)))
  for (k in seq_len(ncol(X))) m[[vn[k]]] <- X[, k]
  rand <- "(1 + t | patient)"
  if (levels == 3) {
    m$therapist <- factor(d$therapist)
    rand <- paste(rand, "+ (1 | therapist)")
  }
  f <- as.formula(paste("y ~ 0 +", paste(vn, collapse = " + "), "+", rand))
  fit <- best_lmer(f, m)
  cf <- summary(lmerTest::as_lmerModLmerTest(fit))$coefficients
  fixed[[mname]] <- data.frame(model = as.integer(mname), term = colnames(X), estimate = cf[, 1], se = cf[, 2],
                               df = cf[, "df"], t = cf[, "t value"], pvalue = cf[, "Pr(>|t|)"], row.names = NULL)
  vcp <- VarCorr(fit)$patient
  fit_ml <- best_lmer(f, m, REML = FALSE)
  random[[mname]] <- data.frame(
    model = as.integer(mname), var_intercept = vcp[1, 1], var_slope = vcp[2, 2], cov_intercept_slope = vcp[1, 2],
    residual = sigma(fit)^2, var_therapist = if (levels == 3) VarCorr(fit)$therapist[1, 1] else NA_real_,
    deviance_reml = REMLcrit(fit), aic_ml = AIC(fit_ml), n_dyads = nlevels(m$patient), n_obs = nrow(m),
    dropped = paste(dropped, collapse = " "))
}
fixed <- do.call(rbind, fixed)
random <- do.call(rbind, random)
write.csv(fixed, "growth_fixed_effects.csv", row.names = FALSE, fileEncoding = "UTF-8")
write.csv(random, "growth_random_effects.csv", row.names = FALSE, fileEncoding = "UTF-8")

cat("Symptom growth Models", paste(names(predictors), collapse = ", "), "of study", study, "(time:", time_coding,
    "-", levels, "levels)\n\n")
print(format(fixed[, c("model", "term", "estimate", "se", "df", "pvalue")], digits = 4), row.names = FALSE)
cat("\n")
print(format(random[, c("model", "var_intercept", "var_slope", "residual", "aic_ml")], digits = 4), row.names = FALSE)
cat("\nWrote growth_fixed_effects.csv and growth_random_effects.csv\n")
'''

_DECOMPOSITION = _DECOMPOSITION.replace("@COMMON@", _COMMON)
_GROWTH = _GROWTH.replace("@COMMON@", _COMMON)
