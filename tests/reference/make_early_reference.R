# Reference values for analysis/early.py (METHODS §7: early alliance -> post-treatment outcome),
# computed with lm (partial beta, baseline-adjusted, all three z-scored per study), cor, and
# metafor (Fisher's z: escalc("ZCOR") + rma) from an independent R implementation.
#
# Run from the repository root:
#     Rscript tests/reference/make_early_reference.R
#
# Writes
#   early_data.csv        lagged_data.csv plus a post-treatment column `post` (one value per
#                         patient: the patient's mean symptom score plus noise, simulated here;
#                         missing for ~10% of patients)
#   early_reference.json  per configuration x study: n, lm coefficients and SEs, r; pooled
#                         partial beta (rma on the b1, REML) and pooled r (rma on Fisher's z,
#                         REML, back-transformed with tanh)
# Configurations: early window sessions 1-3 with outcome = last observed symptom score (all
# sessions), = the symptom score at session 7, = the post column; early window 0-2 for study
# C-irregular's schedule is covered because its sessions start at 0 (window 1-3 holds sessions 1-3).

suppressPackageStartupMessages({
  library(metafor)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = FALSE)
file_arg <- sub("^--file=", "", args[grep("^--file=", args)])
here <- if (length(file_arg)) dirname(normalizePath(file_arg)) else "tests/reference"

d <- read.csv(file.path(here, "lagged_data.csv"), stringsAsFactors = FALSE)
set.seed(7)
key <- paste(d$study, d$patient)
pm <- tapply(d$symptoms, key, mean, na.rm = TRUE)
post <- round(pm + rnorm(length(pm), 0, 4), 1)
post[runif(length(post)) < 0.1] <- NA
d$post <- unname(post[key])
write.csv(d, file.path(here, "early_data.csv"), row.names = FALSE, na = "")

values <- function(p, window, outcome, outcome_session) {
  p <- p[order(p$session), ]
  a <- p[!is.na(p$alliance) & p$session >= window[1] & p$session <= window[2], ]
  s <- p[!is.na(p$symptoms), ]
  if (nrow(a) < 1 || nrow(s) < 1) return(NULL)
  base_sess <- s$session[1]
  if (base_sess > window[2]) return(NULL)
  last_early <- max(a$session)
  if (outcome == "column") {
    out <- p$post[1]
    if (is.na(out)) return(NULL)
  } else {
    row <- if (outcome == "last") s[nrow(s), ] else s[s$session == outcome_session, ]
    if (nrow(row) != 1) return(NULL)
    if (row$session <= max(last_early, base_sess)) return(NULL)
    out <- row$symptoms
  }
  c(early = mean(a$alliance), base = s$symptoms[1], out = out)
}

configs <- list(
  list(name = "window13_last", window = c(1, 3), outcome = "last", outcome_session = NULL),
  list(name = "window13_session7", window = c(1, 3), outcome = "session", outcome_session = 7),
  list(name = "window13_column", window = c(1, 3), outcome = "column", outcome_session = NULL)
)
out <- list()
for (cfg in configs) {
  studies <- list()
  for (st in sort(unique(d$study))) {
    ds <- d[d$study == st, ]
    v <- do.call(rbind, lapply(split(ds, ds$patient), values, cfg$window, cfg$outcome, cfg$outcome_session))
    v <- as.data.frame(v)
    z <- as.data.frame(scale(v))
    f <- lm(out ~ early + base, data = z)
    s <- summary(f)$coefficients
    studies[[length(studies) + 1]] <- list(study = st, n = nrow(v), estimate = unname(s[, 1]),
                                           se = unname(s[, 2]), r = cor(v$early, v$out))
  }
  b1 <- sapply(studies, function(x) x$estimate[2]); se1 <- sapply(studies, function(x) x$se[2])
  mb <- rma(yi = b1, sei = se1, method = "REML")
  es <- escalc("ZCOR", ri = sapply(studies, function(x) x$r), ni = sapply(studies, function(x) x$n))
  mr <- rma(yi, vi, data = es, method = "REML")
  out[[length(out) + 1]] <- list(
    name = cfg$name, early_window = cfg$window, outcome = cfg$outcome, outcome_session = cfg$outcome_session,
    studies = studies,
    pooled_beta = list(estimate = mb$b[1], se = mb$se, ci_low = mb$ci.lb, ci_high = mb$ci.ub, tau2 = mb$tau2),
    pooled_r = list(z = mr$b[1], se = mr$se, r = tanh(mr$b[1]), r_ci_low = tanh(mr$ci.lb),
                    r_ci_high = tanh(mr$ci.ub), tau2 = mr$tau2))
}
writeLines(toJSON(list(metafor = as.character(packageVersion("metafor")), configs = out), digits = NA,
                  auto_unbox = TRUE, null = "null", pretty = TRUE), file.path(here, "early_reference.json"))
cat("wrote", length(out), "configurations\n")
