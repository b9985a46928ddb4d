# Reference values for analysis.convergence / analysis.lmm (METHODS §8).
#
# Run from the repository root:
#   .venv/bin/python tests/test_convergence.py        # writes convergence_<name>.csv (data + predictors)
#   Rscript tests/reference/make_convergence_reference.R
# Writes tests/reference/convergence_reference.json.
#
# For each data set:
#   * dyad scores recomputed independently with lm() per dyad (joint sessions only);
#   * Models 1-3 with lme4 (REML, lmerTest Satterthwaite df) and an ML refit for AIC,
#     using the centered dyad-level predictors exported by Python (columns of the CSV),
#     so both programs fit identical models;
#   * variants: Model 3 with the growth-line early discrepancy, time from the first
#     session, time as assessment occasion, an extra dyad-level covariate, a therapist
#     random intercept (3 levels), the stacked dyadic model;
#   * inference on the random part: delta-method SEs of the variance components from
#     lmerTest's vcov_varpar, the boundary-corrected LRTs (slopes vary: chi2_1:chi2_2;
#     therapist level: chi2_0:chi2_1);
#   * empirical-Bayes (multilevel) dyad scores from the stacked dyadic model's coef();
#   * linear vs log-linear symptom trajectory by ML AIC.
suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(jsonlite)
})

here <- "tests/reference"
ctrl <- lmerControl(
  optimizer = "nloptwrap",
  optCtrl = list(ftol_abs = 1e-15, ftol_rel = 1e-15, xtol_abs = 1e-13, xtol_rel = 1e-13, maxeval = 100000),
  check.conv.singular = "ignore"
)

# ---------------------------------------------------------------------------
# dyad scores with lm() per dyad

dyad_scores_R <- function(d) {
  out <- list()
  excluded <- character(0)
  for (p in unique(d$patient)) {
    x <- d[d$patient == p & !is.na(d$alliance) & !is.na(d$therapist_alliance), ]
    x <- x[order(x$session), ]
    if (nrow(x) < 2) {
      excluded <- c(excluded, p)
      next
    }
    s <- x$session
    fP <- lm(alliance ~ s, data = x)
    fT <- lm(therapist_alliance ~ s, data = x)
    Dhat <- fitted(fP) - fitted(fT)
    fA <- lm(abs(Dhat) ~ s)
    fD <- lm(Dhat ~ s)
    fM <- lm(I((alliance + therapist_alliance) / 2) ~ s, data = x)
    y <- d[d$patient == p & !is.na(d$symptoms), ]
    y <- y[order(y$session), ]
    out[[length(out) + 1]] <- data.frame(
      patient = p,
      n_joint_sessions = nrow(x),
      early_patient = x$alliance[1],
      early_therapist = x$therapist_alliance[1],
      early_discrepancy = x$alliance[1] - x$therapist_alliance[1],
      early_discrepancy_fitted = unname(Dhat[1]),
      slope_patient = unname(coef(fP)[2]),
      slope_therapist = unname(coef(fT)[2]),
      convergence_absolute = -unname(coef(fA)[2]),
      convergence_signed = unname(coef(fD)[2]),
      alliance_development = unname(coef(fM)[2]),
      initial_symptoms = if (nrow(y)) y$symptoms[1] else NA
    )
  }
  sc <- do.call(rbind, out)
  sc$convergence_absolute_log_shift <- log(sc$convergence_absolute - min(sc$convergence_absolute) + 1)
  sc$convergence_signed_log_shift <- log(sc$convergence_signed - min(sc$convergence_signed) + 1)
  list(scores = sc, excluded = excluded)
}

# ---------------------------------------------------------------------------
# model summaries

summ <- function(m_reml, m_ml = NULL) {
  co <- summary(m_reml)$coefficients
  nm <- rownames(co)
  nm[nm == "(Intercept)"] <- "intercept"
  fixed <- lapply(seq_len(nrow(co)), function(i) {
    list(estimate = co[i, "Estimate"], se = co[i, "Std. Error"], df = co[i, "df"], p = co[i, "Pr(>|t|)"])
  })
  names(fixed) <- nm
  vc <- as.data.frame(VarCorr(m_reml))
  res <- list(
    fixed = fixed,
    varcorr = lapply(seq_len(nrow(vc)), function(i) {
      list(grp = vc$grp[i], var1 = ifelse(is.na(vc$var1[i]), "", vc$var1[i]),
           var2 = ifelse(is.na(vc$var2[i]), "", vc$var2[i]), vcov = vc$vcov[i])
    }),
    sigma2 = sigma(m_reml)^2,
    theta = unname(getME(m_reml, "theta")),
    deviance_reml = unname(REMLcrit(m_reml)),
    aic_reml = AIC(m_reml),
    nobs = nobs(m_reml),
    ngroups = as.list(ngrps(m_reml))
  )
  if (!is.null(m_ml)) {
    res$aic_ml <- AIC(m_ml)
    res$deviance_ml <- unname(deviance(m_ml))
    co2 <- summary(m_ml)$coefficients
    res$fixed_ml <- as.list(setNames(co2[, "Estimate"], ifelse(rownames(co2) == "(Intercept)", "intercept",
                                                                 rownames(co2))))
    res$se_ml <- as.list(setNames(co2[, "Std. Error"], ifelse(rownames(co2) == "(Intercept)", "intercept",
                                                                rownames(co2))))
    vc2 <- as.data.frame(VarCorr(m_ml))
    res$varcorr_ml <- lapply(seq_len(nrow(vc2)), function(i) {
      list(grp = vc2$grp[i], var1 = ifelse(is.na(vc2$var1[i]), "", vc2$var1[i]),
           var2 = ifelse(is.na(vc2$var2[i]), "", vc2$var2[i]), vcov = vc2$vcov[i])
    })
  }
  res
}

# variance components with delta-method SEs from lmerTest's vcov_varpar (= 2 H^-1, H the Hessian of the
# unprofiled REML deviance in (theta, sigma)): components psi (lower triangle, column-major), sigma^2,
# and the therapist variance when present
varcomp <- function(m) {
  th <- unname(getME(m, "theta"))
  s <- sigma(m)
  q <- 2
  ntl <- 3  # lower-triangle entries of the 2 x 2 dyad block
  f <- function(vp) {
    t <- vp[-length(vp)]
    sg <- vp[length(vp)]
    L <- matrix(0, q, q)
    L[lower.tri(L, diag = TRUE)] <- t[1:ntl]
    psi <- sg^2 * L %*% t(L)
    out <- c(psi[1, 1], psi[2, 1], psi[2, 2], sg^2)
    if (length(t) > ntl) out <- c(out, sg^2 * t[ntl + 1]^2)
    out
  }
  # lme4 orders theta by random-effect term; put the dyad block first
  nm <- names(getME(m, "theta"))
  is_th <- grepl("^therapist", nm)
  vp <- c(th[!is_th], th[is_th], s)
  ord <- c(which(!is_th), which(is_th), length(th) + 1)
  V <- m@vcov_varpar[ord, ord]
  J <- numDeriv::jacobian(f, vp)
  est <- f(vp)
  se <- sqrt(pmax(diag(J %*% V %*% t(J)), 0))
  comp <- c("var(intercept)", "cov(intercept, time)", "var(time)", "residual")
  if (any(is_th)) comp <- c(comp, "var(therapist)")
  lapply(seq_along(est), function(i) list(component = comp[i], estimate = est[i], se = se[i]))
}

fit_pair <- function(f, data) {
  m1 <- lmerTest::lmer(f, data = data, REML = TRUE, control = ctrl)
  m2 <- lme4::lmer(f, data = data, REML = FALSE, control = ctrl)
  out <- summ(m1, m2)
  out$varcomp <- varcomp(m1)
  out
}

# boundary-corrected likelihood-ratio test: 50:50 mixture of chi2(df0) and chi2(df1) (chi2_0 = point mass)
mix_p <- function(lr, df0, df1) {
  p0 <- if (df0 == 0) 0 else pchisq(lr, df0, lower.tail = FALSE)
  0.5 * p0 + 0.5 * pchisq(lr, df1, lower.tail = FALSE)
}

# empirical-Bayes P and T lines from the stacked dyadic model (role +-1/2), then the dyad scores
eb_scores <- function(m, d) {
  cf <- coef(m)$patient
  out <- list()
  for (p in rownames(cf)) {
    x <- d[d$patient == p & !is.na(d$alliance) & !is.na(d$therapist_alliance), ]
    x <- x[order(x$session), ]
    if (nrow(x) < 2) next
    s <- x$session
    aP <- cf[p, "(Intercept)"] + cf[p, "role"] / 2
    aT <- cf[p, "(Intercept)"] - cf[p, "role"] / 2
    bP <- cf[p, "time"] + cf[p, "role:time"] / 2
    bT <- cf[p, "time"] - cf[p, "role:time"] / 2
    Dhat <- (aP - aT) + (bP - bT) * s
    out[[length(out) + 1]] <- data.frame(
      patient = p, early_patient = aP + bP * s[1], early_therapist = aT + bT * s[1],
      slope_patient = bP, slope_therapist = bT,
      convergence_absolute = -unname(coef(lm(abs(Dhat) ~ s))[2]), convergence_signed = bP - bT,
      alliance_development = (bP + bT) / 2
    )
  }
  do.call(rbind, out)
}

f1 <- symptoms ~ time + (time | patient)
f2 <- symptoms ~ time * (initial_symptoms + convergence) + (time | patient)
f3 <- symptoms ~ time * (initial_symptoms + convergence + early_patient + early_therapist +
  alliance_development + convergence_x_development) + (time | patient)
f3f <- symptoms ~ time * (initial_symptoms + convergence + early_patient + early_therapist +
  alliance_development + early_discrepancy + convergence_x_development) + (time | patient)

out <- list(
  generated_by = "tests/reference/make_convergence_reference.R",
  R = R.version.string,
  lme4 = as.character(packageVersion("lme4")),
  lmerTest = as.character(packageVersion("lmerTest"))
)

for (name in c("study1", "study2", "missing")) {
  d <- read.csv(file.path(here, paste0("convergence_", name, ".csv")), stringsAsFactors = FALSE)
  ds <- dyad_scores_R(d)
  m <- d[d$in_model == 1 & !is.na(d$symptoms), ]
  res <- list(
    scores = ds$scores,
    excluded = ds$excluded,
    model1 = fit_pair(f1, m),
    model2 = fit_pair(f2, m),
    model3 = fit_pair(f3, m)
  )
  # the null model: do the slopes vary? (random intercept only vs intercept + slope, REML, chi2_1:chi2_2)
  m1r <- lmerTest::lmer(f1, data = m, REML = TRUE, control = ctrl)
  m0r <- lmerTest::lmer(symptoms ~ time + (1 | patient), data = m, REML = TRUE, control = ctrl)
  lr <- max(REMLcrit(m0r) - REMLcrit(m1r), 0)
  res$slope_lrt <- list(deviance_intercept_only = REMLcrit(m0r), statistic = lr, p = mix_p(lr, 1, 2))
  # linear vs log-linear symptom trajectory (ML AIC); log uses log(time - min(time) + 1)
  ml <- m
  ml$logtime <- log(ml$time - min(ml$time) + 1)
  res$shape <- list(
    aic_linear = AIC(lme4::lmer(symptoms ~ time + (time | patient), data = ml, REML = FALSE, control = ctrl)),
    aic_log = AIC(lme4::lmer(symptoms ~ logtime + (logtime | patient), data = ml, REML = FALSE, control = ctrl))
  )
  if (name == "study1") {
    mf <- m
    mf$early_discrepancy <- mf$early_discrepancy_fitted
    res$model3_fitted <- fit_pair(f3f, mf)
  }
  if (name == "study2") {
    m0 <- m
    m0$time <- m0$session - min(m0$session)
    res$model2_from_first <- fit_pair(f2, m0)
    # time as assessment occasion 0, 1, 2, ... within each dyad
    mo <- m[order(m$patient, m$session), ]
    mo$time <- ave(mo$session, mo$patient, FUN = function(v) seq_along(v) - 1)
    res$model2_occasion <- fit_pair(f2, mo)
    # an extra dyad-level covariate: the dyad's last session (treatment length), centered over the dyads
    last <- tapply(d$session, d$patient, max)
    dy <- unique(m$patient)
    mc <- m
    mc$n_sessions <- unname(last[mc$patient]) - mean(last[dy])
    res$model2_covariate <- fit_pair(update(f2, . ~ . + time * n_sessions), mc)
  }
  if (name == "missing") {
    res$model1_therapist <- fit_pair(update(f1, . ~ . + (1 | therapist)), m)
    res$model2_therapist <- fit_pair(update(f2, . ~ . + (1 | therapist)), m)
    lr3 <- max(res$model1$deviance_reml - res$model1_therapist$deviance_reml, 0)
    res$therapist_lrt <- list(statistic = lr3, p = mix_p(lr3, 0, 1))
  }
  if (name %in% c("study1", "missing")) {
    # stacked dyadic model from the raw ratings (every observed rating)
    pa <- d[!is.na(d$alliance), ]
    th <- d[!is.na(d$therapist_alliance), ]
    st <- data.frame(
      patient = c(pa$patient, th$patient),
      time = c(pa$session, th$session),
      rating = c(pa$alliance, th$therapist_alliance),
      role = c(rep(0.5, nrow(pa)), rep(-0.5, nrow(th)))
    )
    mdy <- lmerTest::lmer(rating ~ role * time + (role * time | patient), data = st, REML = TRUE, control = ctrl)
    res$dyadic_full <- summ(mdy)
    res$scores_multilevel <- eb_scores(mdy, d)
    res$dyadic_blocks <- summ(lmerTest::lmer(rating ~ role * time + (1 + time | patient) +
                                               (0 + role + role:time | patient), data = st,
                                             REML = TRUE, control = ctrl))
    res$dyadic_n <- nrow(st)
  }
  out[[name]] <- res
}

print(warnings())
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null"),
           file.path(here, "convergence_reference.json"))
cat("wrote", file.path(here, "convergence_reference.json"), "\n")
