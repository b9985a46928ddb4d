# Reference values for analysis.events.dropout (METHODS §9a): logistic regression of dropout with
# glm(family = binomial) and the Cox model of time to dropout with time-varying alliance with
# survival::coxph on counting-process data, both built here from the long data, independently of
# the Python code.
#
# Data: tests/reference/dropout_data.csv, written once by Python
#   simulate_dropout_data(3, 120, 10, seed = 5, rupture_share = 0.3) (alliance, symptoms and
#   dropout, alliance rounded to 4 decimals) with each patient's rupture / repair status by the
#   default rupture criterion (columns rupture, repair; empty = not classified).
# Logistic, per study: early alliance = mean of the first 3 rated sessions, mean alliance = mean of
#   all rated sessions, both z-scored within study across patients (sd with n - 1);
#   dropout ~ early + mean + rupture + repair; patients with a missing predictor left out.
# Cox, per study: alliance z-scored within study over all rated sessions; per patient and rated
#   session s_j but the last an interval (s_j, s_{j+1}] with the alliance at s_j, event 0; a patient
#   who dropped out gets (s_m, s_m + 1] with the alliance at s_m and event 1; ties = "efron".
#
# Run from the repository root:
#     Rscript tests/reference/make_dropout_reference.R
# Writes dropout_reference.json.

suppressPackageStartupMessages({library(jsonlite); library(survival)})

args <- commandArgs(trailingOnly = FALSE)
file_arg <- sub("^--file=", "", args[grep("^--file=", args)])
here <- if (length(file_arg)) dirname(normalizePath(file_arg)) else "tests/reference"

d <- read.csv(file.path(here, "dropout_data.csv"), stringsAsFactors = FALSE)
d <- d[order(d$study, d$patient, d$session), ]
out <- list(logistic = list(), cox = list())
for (st in sort(unique(d$study))) {
  s <- d[d$study == st & !is.na(d$alliance), ]
  pats <- sort(unique(s$patient))
  pp <- do.call(rbind, lapply(pats, function(p) {
    x <- s[s$patient == p, ]
    data.frame(patient = p, dropout = x$dropout[1], early = mean(head(x$alliance, 3)),
               mean = mean(x$alliance), rupture = x$rupture[1], repair = x$repair[1])
  }))
  pp$early <- (pp$early - mean(pp$early)) / sd(pp$early)
  pp$mean <- (pp$mean - mean(pp$mean)) / sd(pp$mean)
  fit <- suppressWarnings(glm(dropout ~ early + mean + rupture + repair, family = binomial, data = pp,
                              control = glm.control(epsilon = 1e-14, maxit = 100)))
  co <- summary(fit)$coefficients
  out$logistic[[st]] <- list(term = c("early_alliance", "mean_alliance", "rupture", "repair"),
                             estimate = unname(co[-1, 1]), se = unname(co[-1, 2]), n = nrow(fit$model),
                             n_events = sum(fit$model$dropout))
  s$z <- (s$alliance - mean(s$alliance)) / sd(s$alliance)
  cp <- do.call(rbind, lapply(pats, function(p) {
    x <- s[s$patient == p, ]
    m <- nrow(x)
    start <- x$session
    stop <- c(x$session[-1], x$session[m] + 1)
    event <- c(rep(0, m - 1), x$dropout[1])
    keep <- c(rep(TRUE, m - 1), x$dropout[1] == 1)
    data.frame(start = start, stop = stop, event = event, alliance = x$z)[keep, ]
  }))
  cf <- coxph(Surv(start, stop, event) ~ alliance, data = cp, ties = "efron",
              control = coxph.control(eps = 1e-12, toler.chol = 1e-14, iter.max = 100))
  out$cox[[st]] <- list(estimate = unname(coef(cf)), se = unname(sqrt(diag(vcov(cf)))), n_rows = nrow(cp),
                        n_events = sum(cp$event))
}
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), file.path(here, "dropout_reference.json"))
cat("Wrote dropout_reference.json\n")
