# Seed 004's between model "as published" (METHODS §12): the patient's mean symptoms on within and
# between alliance, on the session rows of the lagged models, random intercept, REML, lmerTest.
# The outcome is constant within patients, so the fit is degenerate (residual variance ~ 0) and lme4
# warns that it failed to converge; this script records what lme4 reports so pytest can check that
# analysis.decomposition flags the same degeneracy and reports the same (unstable) estimates.
#
# Run from the repository root:  Rscript tests/reference/make_between_sessions_reference.R
# Reads demo_data/icbt_within_between.csv; writes tests/reference/between_sessions_reference.json.

suppressPackageStartupMessages({
  library(lmerTest)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = FALSE)
file_arg <- sub("^--file=", "", args[grep("^--file=", args)])
here <- if (length(file_arg)) dirname(normalizePath(file_arg)) else "tests/reference"
d <- read.csv(file.path(here, "..", "..", "demo_data", "icbt_within_between.csv"), stringsAsFactors = FALSE)
d <- d[order(d$patient, d$session), ]
xm <- tapply(d$alliance, d$patient, mean, na.rm = TRUE)
ym <- tapply(d$symptoms, d$patient, mean, na.rm = TRUE)
xb <- xm - mean(xm, na.rm = TRUE)
key <- paste(d$patient, d$session)
d$lead <- d$symptoms[match(paste(d$patient, d$session + 1), key)]
rows <- d[!is.na(d$lead) & !is.na(d$alliance) & !is.na(d$symptoms), ]
m <- data.frame(ym = ym[rows$patient], xw = rows$alliance - xm[rows$patient], xb = xb[rows$patient],
                patient = rows$patient)
warn <- character(0)
fit <- withCallingHandlers(lmer(ym ~ xw + xb + (1 | patient), data = m, REML = TRUE),
                           warning = function(w) { warn <<- c(warn, conditionMessage(w)); invokeRestart("muffleWarning") })
cf <- summary(fit)$coefficients
out <- list(
  n_obs = nrow(m), n_patients = length(unique(m$patient)),
  term = c("intercept", "within", "between"), estimate = unname(cf[, 1]), se = unname(cf[, 2]),
  df = unname(cf[, "df"]), sigma2 = sigma(fit)^2, tau2 = as.data.frame(VarCorr(fit))$vcov[1],
  warnings = warn,
  ols_between = unname(coef(lm(ym ~ xm))[2])
)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE),
           file.path(here, "between_sessions_reference.json"))
