# Reference values for analysis/dynamics.py (RI-CLPM and the ML-SEM dynamic panel model) from lavaan,
# full-information ML (missing = "ml"), default observed-information standard errors.
# Simulates the cases (seeded, base R), writes tests/reference/dynamics_data.csv (long canonical data,
# column study = case) and tests/reference/dynamics_reference.json.
# Run from the project root: Rscript tests/reference/make_dynamics_reference.R
suppressPackageStartupMessages({ library(lavaan); library(jsonlite) })

simulate_case <- function(seed, n, Tw, ar_a = 0.3, ar_s = 0.4, a2s = -0.1, s2a = -0.2,
                          sd_ri = c(1, 1), r_ri = -0.3, miss_wave = 0, miss_val = 0, dropout = 0) {
  set.seed(seed)
  L <- matrix(c(sd_ri[1], 0, r_ri * sd_ri[2], sqrt(1 - r_ri^2) * sd_ri[2]), 2, 2, byrow = TRUE)
  ri <- matrix(rnorm(2 * n), n, 2) %*% t(L)
  B <- matrix(c(ar_a, s2a, a2s, ar_s), 2, 2, byrow = TRUE)
  w <- array(0, c(n, Tw, 2))
  w[, 1, ] <- matrix(rnorm(2 * n), n, 2) * 1.2
  for (t in 2:Tw) w[, t, ] <- w[, t - 1, ] %*% t(B) + matrix(rnorm(2 * n), n, 2)
  rows <- list()
  for (i in 1:n) {
    last <- if (runif(1) < dropout) sample(3:Tw, 1) else Tw
    for (t in 1:last) {
      if (t > 1 && runif(1) < miss_wave) next
      a <- 5 + 0.05 * t + ri[i, 1] + w[i, t, 1]
      s <- 20 - 0.4 * t + 3 * (ri[i, 2] + w[i, t, 2])
      if (runif(1) < miss_val) a <- NA
      if (runif(1) < miss_val) s <- NA
      rows[[length(rows) + 1]] <- data.frame(patient = sprintf("P%04d", i), session = t, alliance = a, symptoms = s)
    }
  }
  do.call(rbind, rows)
}

wide <- function(long, Tw, vars = c("alliance", "symptoms")) {
  ids <- unique(long$patient)
  out <- data.frame(id = ids)
  for (v in vars) for (t in 1:Tw) {
    col <- rep(NA_real_, length(ids))
    sub <- long[long$session == t, ]
    col[match(sub$patient, ids)] <- sub[[v]]
    out[[paste0(v, t)]] <- col
  }
  out
}

riclpm_syntax <- function(Tw, invariant = TRUE) {
  A <- paste0("alliance", 1:Tw); S <- paste0("symptoms", 1:Tw)
  wa <- paste0("wa", 1:Tw); ws <- paste0("ws", 1:Tw)
  m <- c(paste("ria =~", paste0("1*", A, collapse = " + ")),
         paste("ris =~", paste0("1*", S, collapse = " + ")),
         paste0(wa, " =~ 1*", A), paste0(ws, " =~ 1*", S))
  for (t in 2:Tw) {
    sfx <- if (invariant) "" else paste0("_", t)
    m <- c(m, sprintf("%s ~ ar_alliance%s*%s + symptoms_to_alliance%s*%s", wa[t], sfx, wa[t - 1], sfx, ws[t - 1]),
           sprintf("%s ~ ar_symptoms%s*%s + alliance_to_symptoms%s*%s", ws[t], sfx, ws[t - 1], sfx, wa[t - 1]))
  }
  m <- c(m, "ria ~~ var_ri_alliance*ria", "ris ~~ var_ri_symptoms*ris", "ria ~~ cov_ri*ris",
         "wa1 ~~ var_within_alliance_1*wa1", "ws1 ~~ var_within_symptoms_1*ws1", "wa1 ~~ cov_within_1*ws1")
  for (t in 2:Tw) m <- c(m, sprintf("%s ~~ resvar_alliance_%d*%s", wa[t], t, wa[t]),
                         sprintf("%s ~~ resvar_symptoms_%d*%s", ws[t], t, ws[t]),
                         sprintf("%s ~~ rescov_%d*%s", wa[t], t, ws[t]))
  m <- c(m, paste0(A, " ~~ 0*", A), paste0(S, " ~~ 0*", S),
         sprintf("%s ~ mean_alliance_%d*1", A, 1:Tw), sprintf("%s ~ mean_symptoms_%d*1", S, 1:Tw))
  paste(m, collapse = "\n")
}

dpm_syntax <- function(Tw, y, x) {
  Y <- paste0(y, 1:Tw); X <- paste0(x, 1:(Tw - 1))
  m <- paste("eta =~", paste0("1*", Y[2:Tw], collapse = " + "))
  for (t in 2:Tw) m <- c(m, sprintf("%s ~ ar_%s*%s + %s_to_%s*%s", Y[t], y, Y[t - 1], x, y, X[t - 1]))
  exo <- c("eta", Y[1], X)
  lab <- c("eta", paste0(y, "_1"), paste0(x, "_", 1:(Tw - 1)))
  for (i in seq_along(exo)) for (j in i:length(exo)) {
    nm <- if (i == j) paste0("var_", lab[i]) else paste0("cov_", lab[i], "_", lab[j])
    m <- c(m, sprintf("%s ~~ %s*%s", exo[i], nm, exo[j]))
  }
  for (t in 2:Tw) m <- c(m, sprintf("%s ~~ resvar_%s_%d*%s", Y[t], y, t, Y[t]))
  if (Tw >= 4) for (t in 2:(Tw - 2)) for (j in (t + 1):(Tw - 1))
    m <- c(m, sprintf("%s ~~ cov_e%s_%d_%s_%d*%s", Y[t], y, t, x, j, X[j]))
  m <- c(m, sprintf("%s ~ mean_%s_1*1", Y[1], y), sprintf("%s ~ mean_%s_%d*1", X, x, 1:(Tw - 1)),
         sprintf("%s ~ intercept_%s_%d*1", Y[2:Tw], y, 2:Tw))
  paste(m, collapse = "\n")
}

fit_one <- function(syntax, data) {
  # lavaan's defaults (nlminb, rel.tol 1e-10): its estimates stop about 1e-4 relative short of the exact
  # optimum on the large-variance parameters (the Python log-likelihoods are 1e-9 to 1e-6 higher), hence the
  # tests' tolerance of 1e-4 * max(1, |estimate|)
  lavaan(syntax, data = data, missing = "ml", meanstructure = TRUE, fixed.x = FALSE,
         int.ov.free = FALSE, int.lv.free = FALSE, auto.var = FALSE, auto.cov.lv.x = FALSE,
         auto.cov.y = FALSE, auto.fix.first = FALSE, auto.fix.single = FALSE, std.lv = FALSE)
}

summarise <- function(fit, std_paths) {
  pe <- parameterEstimates(fit)
  free <- pe[pe$label != "" & !duplicated(pe$label), ]
  est <- setNames(as.list(free$est), free$label)
  se <- setNames(as.list(free$se), free$label)
  fm <- fitMeasures(fit, c("logl", "unrestricted.logl", "chisq", "df", "cfi", "tli", "rmsea", "srmr",
                           "baseline.chisq", "baseline.df", "npar", "ntotal"))
  ss <- standardizedSolution(fit)
  std <- lapply(std_paths, function(p) {
    r <- ss[ss$op == "~" & ss$lhs %in% p$lhs & paste(ss$lhs, ss$rhs) %in% paste(p$lhs, p$rhs), ]
    mean(r$est.std)
  })
  # SE of that average over waves: delta method on lavaan's covariance matrix of the standardized
  # parameters (vcov.std.all, rows = the free parameters of the parameter table)
  pt <- parTable(fit)
  vstd <- lavInspect(fit, "vcov.std.all")
  std_se <- lapply(std_paths, function(p) {
    idx <- pt$free[pt$op == "~" & paste(pt$lhs, pt$rhs) %in% paste(p$lhs, p$rhs)]
    w <- rep(1 / length(idx), length(idx))
    sqrt(drop(t(w) %*% vstd[idx, idx, drop = FALSE] %*% w))
  })
  list(converged = lavInspect(fit, "converged"), estimates = est, se = se, fit = as.list(fm), std = std,
       std_se = std_se, warnings = as.list(character(0)))
}

riclpm_std <- function(Tw) list(
  alliance_to_symptoms = list(lhs = paste0("ws", 2:Tw), rhs = paste0("wa", 1:(Tw - 1))),
  symptoms_to_alliance = list(lhs = paste0("wa", 2:Tw), rhs = paste0("ws", 1:(Tw - 1))))
dpm_std <- function(Tw, y, x) setNames(list(list(lhs = paste0(y, 2:Tw), rhs = paste0(x, 1:(Tw - 1)))),
                                       paste0(x, "_to_", y))

cases <- list(
  list(name = "riclpm7_complete", seed = 11, n = 300, Tw = 7, model = "riclpm"),
  list(name = "riclpm7_missing", seed = 12, n = 300, Tw = 7, model = "riclpm", miss_wave = 0.15,
       miss_val = 0.05, dropout = 0.25),
  list(name = "riclpm11_missing", seed = 13, n = 182, Tw = 11, model = "riclpm", miss_wave = 0.2,
       miss_val = 0.05, dropout = 0.2),
  list(name = "riclpm7_boundary", seed = 14, n = 120, Tw = 7, model = "riclpm", sd_ri = c(1, 0.02),
       miss_wave = 0.1, miss_val = 0.05),
  list(name = "riclpm7_varying", seed = 15, n = 300, Tw = 7, model = "riclpm_varying", miss_wave = 0.1,
       miss_val = 0.05),
  list(name = "dpm7_complete", seed = 21, n = 300, Tw = 7, model = "dpm"),
  list(name = "dpm7_missing", seed = 22, n = 300, Tw = 7, model = "dpm", miss_wave = 0.15, miss_val = 0.05,
       dropout = 0.25),
  list(name = "dpm11_missing", seed = 23, n = 182, Tw = 11, model = "dpm", miss_wave = 0.2, miss_val = 0.05,
       dropout = 0.2)
)

all_data <- list()
out <- list(lavaan_version = as.character(packageVersion("lavaan")), cases = list())
for (cs in cases) {
  arg <- function(nm, default) if (is.null(cs[[nm]])) default else cs[[nm]]
  long <- simulate_case(cs$seed, cs$n, cs$Tw, sd_ri = arg("sd_ri", c(1, 1)), miss_wave = arg("miss_wave", 0),
                        miss_val = arg("miss_val", 0), dropout = arg("dropout", 0))
  long <- cbind(study = cs$name, long)
  all_data[[cs$name]] <- long
  res <- list(model = cs$model, waves = cs$Tw, n = length(unique(long$patient)))
  if (cs$model %in% c("riclpm", "riclpm_varying")) {
    fit <- fit_one(riclpm_syntax(cs$Tw, cs$model == "riclpm"), wide(long, cs$Tw))
    res$fit <- summarise(fit, riclpm_std(cs$Tw))
    if (cs$model == "riclpm_varying") {
      fit0 <- fit_one(riclpm_syntax(cs$Tw, TRUE), wide(long, cs$Tw))
      lr <- lavTestLRT(fit0, fit)
      res$lr_test <- list(chisq = lr[["Chisq diff"]][2], df = lr[["Df diff"]][2], pvalue = lr[["Pr(>Chisq)"]][2])
    }
  } else {
    res$directions <- list()
    for (y in c("symptoms", "alliance")) {
      x <- setdiff(c("symptoms", "alliance"), y)
      w <- wide(long, cs$Tw)
      w <- w[, c("id", paste0(y, 1:cs$Tw), paste0(x, 1:(cs$Tw - 1)))]
      w <- w[rowSums(!is.na(w[, -1])) > 0, ]
      fit <- fit_one(dpm_syntax(cs$Tw, y, x), w)
      res$directions[[y]] <- summarise(fit, dpm_std(cs$Tw, y, x))
    }
  }
  out$cases[[cs$name]] <- res
}
data <- do.call(rbind, all_data)
write.csv(data, "tests/reference/dynamics_data.csv", row.names = FALSE, na = "")
writeLines(toJSON(out, auto_unbox = TRUE, digits = 15, pretty = TRUE, na = "null"),
           "tests/reference/dynamics_reference.json")
