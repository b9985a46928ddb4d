# Reference values for the stage-1 options of issue 11 (METHODS sections 2, 4, 5, 6):
# patient-level covariates and the outcome's between part as moderators of the within
# effect, every term pooled (metafor), lmerTest's Satterthwaite df, lag 0 (outcome rated
# later in the same session) and standardization by the within-patient SD.
#
# Run from the repository root (after make_lagged_reference.R, whose lagged_data.csv and
# lagged_rows.csv it reads):
#     Rscript tests/reference/make_lagged_moderators_reference.R
# Writes
#   lagged_covariates.csv           patient-level covariates drawn here (age with 8% missing;
#                                   treatment CBT/IPT/PDT, no PDT in study C-irregular)
#   lagged_moderators_reference.json
# The covariate columns, the interactions, the lag-0 pairing and the within-SD z-scores are
# built here from the raw data; only the person-mean model rows of lagged_rows.csv (already
# checked against an R computation by make_lagged_reference.R) are reused.

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(metafor)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = FALSE)
file_arg <- sub("^--file=", "", args[grep("^--file=", args)])
here <- if (length(file_arg)) dirname(normalizePath(file_arg)) else "tests/reference"

raw <- read.csv(file.path(here, "lagged_data.csv"), stringsAsFactors = FALSE)
rows <- read.csv(file.path(here, "lagged_rows.csv"), stringsAsFactors = FALSE)
rows <- rows[rows$rowset == "person_mean", ]
ctl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e6),
                   check.conv.singular = "ignore")
dirs <- c("alliance_to_symptoms", "symptoms_to_alliance")
studies <- sort(unique(raw$study))

# ------------------------------------------------------------------ covariates
set.seed(20261128)
cov <- unique(raw[, c("study", "patient")])
cov$age <- round(rnorm(nrow(cov), 40, 12))
cov$age[runif(nrow(cov)) < 0.08] <- NA
cov$treatment <- ifelse(cov$study == "C-irregular",
                        sample(c("CBT", "IPT"), nrow(cov), replace = TRUE),
                        sample(c("CBT", "IPT", "PDT"), nrow(cov), replace = TRUE))
write.csv(cov, file.path(here, "lagged_covariates.csv"), row.names = FALSE)

# R coefficient name -> the Python term name
py_name <- function(n) {
  n <- sub("^\\(Intercept\\)$", "intercept", n)
  n <- sub("^within:prior_between$", "interaction_outcome", n)
  n <- sub("^within:age_z$", "within \u00d7 age", n)
  n <- sub("^within:treatment(.*)$", "within \u00d7 treatment: \\1", n)
  n <- sub("^age_z$", "age", n)
  n <- sub("^treatment(.*)$", "treatment: \\1", n)
  n
}

fit_rec <- function(m, st, d, config) {
  cf <- summary(m)$coefficients
  list(config = config, study = st, direction = d, terms = py_name(rownames(cf)),
       estimate = unname(cf[, "Estimate"]), se = unname(cf[, "Std. Error"]),
       df = if ("df" %in% colnames(cf)) unname(cf[, "df"]) else NULL,
       n_pairs = nobs(m), singular = isSingular(m))
}

# ------------------------------------------------------------------ moderators
# lead ~ within + between + prior_within + prior_between + within:prior_between
#        + age_z + treatment + within:age_z + within:treatment + (1 | patient), REML
# age_z: (age - mean) / SD over the study's patients with an age (ddof 1);
# treatment: dummies against CBT, levels absent from a study dropped.
fits <- list()
for (d in dirs) {
  for (st in studies) {
    dd <- merge(rows[rows$direction == d & rows$study == st, ], cov, by = c("study", "patient"))
    pc <- cov[cov$study == st & !is.na(cov$age), ]
    dd$age_z <- (dd$age - mean(pc$age)) / sd(pc$age)
    dd <- dd[!is.na(dd$age_z), ]
    dd$treatment <- droplevels(factor(dd$treatment, levels = c("CBT", "IPT", "PDT")))
    m <- lmer(lead ~ within + between + prior_within + prior_between + within:prior_between + age_z +
                treatment + within:age_z + within:treatment + (1 | patient),
              data = dd, REML = TRUE, control = ctl)
    fits[[length(fits) + 1]] <- fit_rec(m, st, d, "moderators")
  }
}

# every term pooled across the studies that estimated it: rma REML, z test
pooled <- list()
for (d in dirs) {
  fr <- Filter(function(r) r$direction == d && r$config == "moderators", fits)
  for (term in unique(unlist(lapply(fr, function(r) r$terms)))) {
    if (term == "intercept") next
    has <- Filter(function(r) term %in% r$terms, fr)
    yi <- sapply(has, function(r) r$estimate[r$terms == term])
    sei <- sapply(has, function(r) r$se[r$terms == term])
    m <- rma(yi = yi, sei = sei, method = "REML", test = "z")
    pooled[[length(pooled) + 1]] <- list(direction = d, term = term, k = length(yi),
                                         studies = sapply(has, function(r) r$study),
                                         estimate = as.numeric(m$b), se = m$se, tau2 = m$tau2,
                                         ci_low = m$ci.lb, ci_high = m$ci.ub, pvalue = m$pval)
  }
}

# ------------------------------------------------------------------ Satterthwaite df (lmerTest)
for (d in dirs) {
  for (st in studies) {
    dd <- rows[rows$direction == d & rows$study == st, ]
    m <- lmerTest::lmer(lead ~ within + between + prior_within + prior_between + (1 | patient),
                        data = dd, REML = TRUE, control = ctl)
    fits[[length(fits) + 1]] <- fit_rec(m, st, d, "satterthwaite")
  }
}

# ------------------------------------------------------------------ lag 0 and within-SD z-scores
# Independent construction from lagged_data.csv. Per study: z = (v - mean) / SD with SD the
# total SD (ddof 1) or the pooled within-patient SD sqrt(sum (v - patient mean)^2 / (N - G));
# person means of z, between = person mean - mean of person means, within = z - person mean.
# lag 0 (symptoms -> alliance): outcome = alliance at the same session t, prior outcome =
# alliance at session t - 1; lag 1: outcome at session t + 1, prior outcome at t.
prep <- function(raw, xvar, yvar, lag0 = FALSE, sd_within = FALSE) {
  out <- list()
  for (st in studies) {
    d <- raw[raw$study == st, ]
    d <- d[order(d$patient, d$session), ]
    comp <- list()
    for (v in c(xvar, yvar)) {
      x <- d[[v]]
      pm0 <- ave(x, d$patient, FUN = function(z) mean(z, na.rm = TRUE))
      s <- if (sd_within) {
        ok <- !is.na(x)
        sqrt(sum((x[ok] - pm0[ok])^2) / (sum(ok) - length(unique(d$patient[ok]))))
      } else sd(x, na.rm = TRUE)
      z <- (x - mean(x, na.rm = TRUE)) / s
      pm <- tapply(z, d$patient, function(q) mean(q, na.rm = TRUE))
      pm[is.nan(pm)] <- NA
      comp[[v]] <- list(z = z, within = z - unname(pm[d$patient]),
                        between = unname(pm[d$patient]) - mean(pm, na.rm = TRUE))
    }
    X <- comp[[xvar]]
    Y <- comp[[yvar]]
    for (r in seq_len(nrow(d))) {
      p <- d$patient[r]
      t <- d$session[r]
      same <- which(d$patient == p)
      if (lag0) {
        j <- r
        k <- same[d$session[same] == t - 1]
      } else {
        j <- same[d$session[same] == t + 1]
        k <- r
      }
      if (length(j) != 1 || length(k) != 1) next
      vals <- c(X$within[r], X$between[r], Y$within[k], Y$between[r], Y$z[j])
      if (any(is.na(vals))) next
      out[[length(out) + 1]] <- data.frame(study = st, patient = p, within = vals[1], between = vals[2],
                                           prior_within = vals[3], prior_between = vals[4], lead = vals[5])
    }
  }
  do.call(rbind, out)
}
cases <- list(
  list(config = "lag0", d = "symptoms_to_alliance", lag0 = TRUE, sd_within = FALSE),
  list(config = "sd_within", d = "alliance_to_symptoms", lag0 = FALSE, sd_within = TRUE),
  list(config = "sd_within", d = "symptoms_to_alliance", lag0 = FALSE, sd_within = TRUE)
)
for (cs in cases) {
  vars <- if (cs$d == "alliance_to_symptoms") c("alliance", "symptoms") else c("symptoms", "alliance")
  pr <- prep(raw, vars[1], vars[2], cs$lag0, cs$sd_within)
  for (st in studies) {
    dd <- pr[pr$study == st, ]
    m <- lme4::lmer(lead ~ within + between + prior_within + prior_between + (1 | patient),
                    data = dd, REML = TRUE, control = ctl)
    fits[[length(fits) + 1]] <- fit_rec(m, st, cs$d, cs$config)
  }
}

writeLines(toJSON(list(
  note = paste("lme4", as.character(packageVersion("lme4")), "lmerTest",
               as.character(packageVersion("lmerTest")), "metafor", as.character(packageVersion("metafor")),
               "REML, bobyqa rhoend 1e-12"),
  fits = fits, pooled = pooled
), auto_unbox = TRUE, digits = NA, pretty = FALSE), file.path(here, "lagged_moderators_reference.json"))
cat("wrote lagged_covariates.csv, lagged_moderators_reference.json\n")
