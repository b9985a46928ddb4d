# Reference values for analysis/decomposition.py (METHODS §12: seed 004's total, within and
# between models), computed with lmerTest (REML, Satterthwaite df) and lm, from an
# independent R implementation of the person means and the lag-by-session pairing.
#
# Run from the repository root:
#     Rscript tests/reference/make_decomposition_reference.R
#
# Writes
#   decomposition_data.csv       canonical long data: studies A-trend and B-boundary of
#                                lagged_data.csv (random intercepts mostly on the boundary:
#                                singular fits) and D-interior, simulated here (patients differ
#                                in their symptom slopes: interior random-intercept variance
#                                in both mixed models), 8% missing values
#   decomposition_reference.json one entry per study x direction x standardize x window:
#                                coefficients (estimate, se, df, t, p) of the total and within
#                                lmer fits and the between lm fit, theta, isSingular, n_obs
# pytest (tests/test_decomposition.py) reads the committed outputs.

suppressPackageStartupMessages({
  library(lmerTest)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = FALSE)
file_arg <- sub("^--file=", "", args[grep("^--file=", args)])
here <- if (length(file_arg)) dirname(normalizePath(file_arg)) else "tests/reference"

lagged <- read.csv(file.path(here, "lagged_data.csv"), stringsAsFactors = FALSE)
lagged <- lagged[lagged$study %in% c("A-trend", "B-boundary"), ]

set.seed(2004)
n_pat <- 70
rows <- list()
for (i in seq_len(n_pat)) {
  m_a <- rnorm(1, 5, 0.8); m_s <- rnorm(1, 40, 8) + 3 * (m_a - 5)
  b_s <- rnorm(1, -1.2, 1.5)
  s_prev <- m_s; a_prev <- m_a
  for (t in 1:10) {
    a <- 0.4 * a_prev + 0.6 * m_a + rnorm(1, 0, 0.6)
    s <- m_s + b_s * (t - 5.5) - 1.5 * (a_prev - m_a) + rnorm(1, 0, 3)
    rows[[length(rows) + 1]] <- data.frame(study = "D-interior", patient = sprintf("P%04d", i), session = t,
                                           alliance = round(a, 2), symptoms = round(s, 1))
    a_prev <- a
  }
}
dint <- do.call(rbind, rows)
miss_a <- runif(nrow(dint)) < 0.08; dint$alliance[miss_a] <- NA
miss_s <- runif(nrow(dint)) < 0.08; dint$symptoms[miss_s] <- NA
skip <- runif(nrow(dint)) < 0.05; dint <- dint[!skip, ]
data <- rbind(lagged, dint)
write.csv(data, file.path(here, "decomposition_data.csv"), row.names = FALSE, na = "")

ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5),
                    check.conv.singular = "ignore")

coefs <- function(fit, names) {
  s <- summary(fit)$coefficients
  list(term = names, estimate = unname(s[, "Estimate"]), se = unname(s[, "Std. Error"]),
       df = unname(s[, "df"]), statistic = unname(s[, "t value"]), pvalue = unname(s[, "Pr(>|t|)"]))
}

decompose <- function(d, x_var, y_var, lag, standardize, window) {
  if (!is.null(window)) d <- d[d$session >= window[1] & d$session <= window[2], ]
  x <- d[[x_var]]; y <- d[[y_var]]
  if (standardize) {
    x <- (x - mean(x, na.rm = TRUE)) / sd(x, na.rm = TRUE)
    y <- (y - mean(y, na.rm = TRUE)) / sd(y, na.rm = TRUE)
  }
  d$x <- x; d$y <- y
  xm <- tapply(d$x, d$patient, mean, na.rm = TRUE)   # every observed value of the patient
  ym <- tapply(d$y, d$patient, mean, na.rm = TRUE)
  xm[is.nan(xm)] <- NA; ym[is.nan(ym)] <- NA
  xb <- xm - mean(xm, na.rm = TRUE)
  d$xm <- xm[d$patient]; d$ym <- ym[d$patient]; d$xb <- xb[d$patient]
  # lead by session number: the same patient's outcome at session t + lag
  key <- paste(d$patient, d$session)
  d$lead <- d$y[match(paste(d$patient, d$session + lag), key)]
  tot <- d[!is.na(d$lead) & !is.na(d$x) & !is.na(d$y), ]
  f_tot <- lmer(lead ~ x + y + (1 | patient), data = tot, REML = TRUE, control = ctrl)
  tot_out <- coefs(f_tot, c("intercept", "predictor", "prior_outcome"))
  d$lead_w <- d$lead - d$ym; d$x_w <- d$x - d$xm; d$y_w <- d$y - d$ym
  wit <- d[!is.na(d$lead_w) & !is.na(d$x_w) & !is.na(d$xb) & !is.na(d$y_w), ]
  f_wit <- lmer(lead_w ~ x_w + xb + y_w + (1 | patient), data = wit, REML = TRUE, control = ctrl)
  wit_out <- coefs(f_wit, c("intercept", "within", "between", "prior_within"))
  pm <- data.frame(xm = as.numeric(xm), ym = as.numeric(ym))
  pm <- pm[!is.na(pm$xm) & !is.na(pm$ym), ]
  f_bet <- lm(ym ~ xm, data = pm)
  s <- summary(f_bet)$coefficients
  bet_out <- list(term = c("intercept", "between"), estimate = unname(s[, 1]), se = unname(s[, 2]),
                  df = rep(f_bet$df.residual, 2), statistic = unname(s[, 3]), pvalue = unname(s[, 4]))
  list(total = c(tot_out, list(n_obs = nrow(tot), theta = unname(getME(f_tot, "theta")),
                               singular = isSingular(f_tot))),
       within = c(wit_out, list(n_obs = nrow(wit), theta = unname(getME(f_wit, "theta")),
                                singular = isSingular(f_wit))),
       between = c(bet_out, list(n_obs = nrow(pm))))
}

dirs <- list(alliance_to_symptoms = c("alliance", "symptoms"), symptoms_to_alliance = c("symptoms", "alliance"))
cases <- list()
for (st in unique(data$study)) {
  for (dn in names(dirs)) {
    for (standardize in c(FALSE, TRUE)) {
      d <- data[data$study == st, ]
      res <- decompose(d, dirs[[dn]][1], dirs[[dn]][2], 1L, standardize, NULL)
      cases[[length(cases) + 1]] <- list(study = st, direction = dn, lag = 1L, standardize = standardize,
                                         sessions = NULL, result = res)
    }
  }
}
# a window and lag 2 on the interior study
d <- data[data$study == "D-interior", ]
res <- decompose(d, "alliance", "symptoms", 2L, FALSE, c(2, 9))
cases[[length(cases) + 1]] <- list(study = "D-interior", direction = "alliance_to_symptoms", lag = 2L,
                                   standardize = FALSE, sessions = c(2, 9), result = res)
writeLines(toJSON(list(lmerTest = as.character(packageVersion("lmerTest")),
                       lme4 = as.character(packageVersion("lme4")), cases = cases),
                  digits = NA, auto_unbox = TRUE, null = "null", pretty = TRUE),
           file.path(here, "decomposition_reference.json"))
cat("wrote", length(cases), "cases\n")
