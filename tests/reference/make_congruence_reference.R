# Reference values for analysis/convergence/congruence.py (METHODS §8, "Congruence"): response surface
# analysis (polynomial regression, lm, surface parameters a1-a4 as linear combinations with vcov) and the
# actor-partner interdependence model (lmerTest, REML, Satterthwaite df), computed from the long data by an
# independent R implementation of the dyad means, centring and lead pairing.
#
# Run from the repository root:  Rscript tests/reference/make_congruence_reference.R
# Reads demo_data/dyads_bdi.csv (seed 001 Study 1 design); writes tests/reference/congruence_reference.json.

suppressPackageStartupMessages({
  library(lmerTest)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = FALSE)
file_arg <- sub("^--file=", "", args[grep("^--file=", args)])
here <- if (length(file_arg)) dirname(normalizePath(file_arg)) else "tests/reference"
d <- read.csv(file.path(here, "..", "..", "demo_data", "dyads_bdi.csv"), stringsAsFactors = FALSE)
d <- d[order(d$patient, d$session), ]

rsa <- function(control_initial) {
  j <- d[!is.na(d$alliance) & !is.na(d$therapist_alliance), ]
  P <- tapply(j$alliance, j$patient, mean)
  T <- tapply(j$therapist_alliance, j$patient, mean)
  s <- d[!is.na(d$symptoms), ]
  last <- tapply(s$symptoms, s$patient, function(v) v[length(v)])
  first <- tapply(s$symptoms, s$patient, function(v) v[1])
  last_s <- tapply(s$session, s$patient, max)
  first_s <- tapply(s$session, s$patient, min)
  ids <- intersect(names(P), names(last))
  if (control_initial) ids <- ids[last_s[ids] > first_s[ids]]
  c0 <- (mean(P[ids]) + mean(T[ids])) / 2
  m <- data.frame(P = P[ids] - c0, T = T[ids] - c0, Z = last[ids], init = first[ids] - mean(first[ids]))
  f <- if (control_initial) lm(Z ~ P + T + I(P^2) + I(P * T) + I(T^2) + init, data = m) else
    lm(Z ~ P + T + I(P^2) + I(P * T) + I(T^2), data = m)
  b <- coef(f); V <- vcov(f)
  W <- matrix(0, 4, length(b))
  W[1, 2:3] <- c(1, 1); W[2, 4:6] <- c(1, 1, 1); W[3, 2:3] <- c(1, -1); W[4, 4:6] <- c(1, -1, 1)
  est <- as.vector(W %*% b); se <- sqrt(diag(W %*% V %*% t(W)))
  tv <- est / se; dfr <- f$df.residual
  list(n = nrow(m), center = c0, coef_estimate = unname(b), coef_se = unname(sqrt(diag(V))),
       df = dfr, surface_estimate = est, surface_se = se, surface_p = 2 * pt(-abs(tv), dfr),
       r2 = summary(f)$r.squared)
}

apim <- function(lag, control_prior) {
  P <- ave(d$alliance, d$patient, FUN = function(v) mean(v, na.rm = TRUE))
  T <- ave(d$therapist_alliance, d$patient, FUN = function(v) mean(v, na.rm = TRUE))
  Pm <- tapply(d$alliance, d$patient, mean, na.rm = TRUE)
  Tm <- tapply(d$therapist_alliance, d$patient, mean, na.rm = TRUE)
  m <- data.frame(patient = d$patient, Pw = d$alliance - P, Tw = d$therapist_alliance - T,
                  Pb = P - mean(Pm, na.rm = TRUE), Tb = T - mean(Tm, na.rm = TRUE), Y = d$symptoms)
  key <- paste(d$patient, d$session)
  m$lead <- d$symptoms[match(paste(d$patient, d$session + lag), key)]
  vars <- c("lead", "Pw", "Tw", "Pb", "Tb", if (control_prior) "Y")
  m <- m[complete.cases(m[, vars]), ]
  f <- if (control_prior) lmer(lead ~ Pw + Tw + Pb + Tb + Y + (1 | patient), data = m, REML = TRUE) else
    lmer(lead ~ Pw + Tw + Pb + Tb + (1 | patient), data = m, REML = TRUE)
  cf <- summary(f)$coefficients
  list(n_obs = nrow(m), n_dyads = length(unique(m$patient)), estimate = unname(cf[, 1]), se = unname(cf[, 2]),
       df = unname(cf[, "df"]), pvalue = unname(cf[, "Pr(>|t|)"]), sigma2 = sigma(f)^2,
       tau2 = as.data.frame(VarCorr(f))$vcov[1])
}

out <- list(rsa = list(initial = rsa(TRUE), plain = rsa(FALSE)),
            apim = list(lag1_prior = apim(1, TRUE), lag2_plain = apim(2, FALSE)))
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), file.path(here, "congruence_reference.json"))
