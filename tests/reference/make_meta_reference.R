# Reference values for analysis/meta/ (METHODS section 6), computed with R's metafor.
#
# Run from the repository root:
#     Rscript tests/reference/make_meta_reference.R
# Writes tests/reference/meta_reference.json next to this script. The JSON holds
# the input data (yi, vi, labels, moderators) as well as every result, so pytest
# needs no R; the JSON is committed and `make reference` reruns this script.
#
# Data sets (package metadat):
#   bcg      dat.bcg, log risk ratios, escalc("RR")   (k = 13)
#   molloy   dat.molloy2014, Fisher z, escalc("ZCOR") (k = 16)
#   normand  dat.normand1999, mean differences, escalc("MD") (k = 9)
# plus small data sets made here to reach edge cases:
#   bcg_k2   the first two bcg trials (k = 2)
#   bcg_k3   the first three bcg trials (k = 3)
#   homog    five homogeneous made-up effects (Q < k - 1: truncation at 0,
#            empty Q-profile interval)
#   nonconv  17 made-up effects on which metafor's REML and ML Fisher scoring
#            do not converge (it stops with an error; control stepadj = 0.5
#            is metafor's remedy and is recorded too)
#
# Effects and variances are rounded to the 15 significant digits that the JSON
# keeps before anything is fitted, so R and Python use identical inputs.

suppressPackageStartupMessages({
  library(metafor)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = FALSE)
file_arg <- sub("^--file=", "", args[grep("^--file=", args)])
here <- if (length(file_arg)) dirname(normalizePath(file_arg)) else "tests/reference"
out_path <- file.path(here, "meta_reference.json")

methods <- c("FE", "DL", "REML", "ML", "PM", "EB", "HE", "SJ", "HS")
tests <- c("z", "knha", "adhoc")

# ---------------------------------------------------------------- data sets
bcg <- escalc("RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
bcg$label <- paste(bcg$author, bcg$year)
bcg$n <- bcg$tpos + bcg$tneg + bcg$cpos + bcg$cneg

molloy <- escalc("ZCOR", ri = ri, ni = ni, data = dat.molloy2014)
molloy$label <- paste(molloy$authors, molloy$year)
molloy$n <- molloy$ni

normand <- escalc("MD", m1i = m1i, sd1i = sd1i, n1i = n1i,
                  m2i = m2i, sd2i = sd2i, n2i = n2i, data = dat.normand1999)
normand$label <- as.character(normand$source)
normand$n <- normand$n1i + normand$n2i

homog <- data.frame(yi = c(0.10, 0.12, 0.08, 0.11, 0.09),
                    vi = c(0.010, 0.020, 0.015, 0.012, 0.018),
                    label = paste("Study", LETTERS[1:5]),
                    n = c(120, 60, 80, 100, 70))

nonconv <- data.frame(
  yi = c(0.378, -0.006, 0.352, 0.210, 0.116, 0.163, 0.091, 0.203, 0.037, 0.300,
         0.483, 0.177, 0.471, 0.345, 0.529, 0.355, 0.324),
  vi = c(0.0156, 0.0843, 0.0248, 0.0438, 0.0385, 0.0722, 0.0261, 0.0457, 0.0105,
         0.0336, 0.0479, 0.0195, 0.0670, 0.0442, 0.0753, 0.0688, 0.0488),
  label = paste("Trial", 1:17),
  n = 40 + 3 * (1:17))

datasets <- list(
  bcg = bcg,
  molloy = molloy,
  normand = normand,
  bcg_k2 = bcg[1:2, ],
  bcg_k3 = bcg[1:3, ],
  homog = homog,
  nonconv = nonconv
)
round15 <- function(x) as.numeric(sprintf("%.15g", x))
datasets <- lapply(datasets, function(d) {
  d$yi <- round15(d$yi)
  d$vi <- round15(d$vi)
  d
})
bcg <- datasets$bcg

num <- function(x) if (is.null(x)) NA_real_ else as.numeric(x)

# Run an expression, collecting warnings; an error is returned as a string.
capture <- function(expr) {
  warns <- character(0)
  value <- withCallingHandlers(
    tryCatch(expr, error = function(e) structure(conditionMessage(e), class = "fit_error")),
    warning = function(w) {
      warns <<- c(warns, conditionMessage(w))
      invokeRestart("muffleWarning")
    })
  list(value = value, warnings = warns)
}

# ---------------------------------------------------------------- pooled fits
fit_record <- function(name, d, method, test, control = list()) {
  res <- capture(rma(yi, vi, data = d, method = method, test = test, control = control))
  rec <- list(dataset = name, method = method, test = test,
              control = control, warnings = res$warnings)
  r <- res$value
  if (inherits(r, "fit_error")) {
    rec$error <- as.character(r)
    return(rec)
  }
  pr <- predict(r)
  rec$estimate <- num(r$beta)
  rec$se <- num(r$se)
  rec$stat <- num(r$zval)
  rec$pval <- num(r$pval)
  rec$ci_lb <- num(r$ci.lb)
  rec$ci_ub <- num(r$ci.ub)
  rec$pi_lb <- num(pr$pi.lb)
  rec$pi_ub <- num(pr$pi.ub)
  rec$tau2 <- num(r$tau2)
  rec$se_tau2 <- num(r$se.tau2)
  rec$I2 <- num(r$I2)
  rec$H2 <- num(r$H2)
  rec$Q <- num(r$QE)
  rec$Qp <- num(r$QEp)
  rec$k <- r$k
  rec$ddf <- num(r$ddf)
  rec$weights <- as.numeric(weights(r))
  rec$tau2_ci_lb <- NA_real_
  rec$tau2_ci_ub <- NA_real_
  if (!is.element(method, c("FE", "EE", "CE")) && r$k > 1) {
    ci <- capture(confint(r))
    if (!inherits(ci$value, "fit_error")) {
      rec$tau2_ci_lb <- num(ci$value$random["tau^2", "ci.lb"])
      rec$tau2_ci_ub <- num(ci$value$random["tau^2", "ci.ub"])
      rec$tau2_ci_lb_sign <- ci$value$lb.sign
      rec$tau2_ci_ub_sign <- ci$value$ub.sign
      rec$tau2_ci_null <- ci$value$ci.null
      rec$I2_ci_lb <- num(ci$value$random["I^2(%)", "ci.lb"])
      rec$I2_ci_ub <- num(ci$value$random["I^2(%)", "ci.ub"])
    }
    rec$confint_warnings <- ci$warnings
  }
  rec
}

fits <- list()
for (name in names(datasets)) {
  for (method in methods) {
    for (test in tests) {
      fits[[length(fits) + 1]] <- fit_record(name, datasets[[name]], method, test)
    }
  }
}
# k = 1: metafor returns the single study (no pooling).
fits[[length(fits) + 1]] <- fit_record("bcg_k1", bcg[1, ], "REML", "z")
datasets$bcg_k1 <- bcg[1, ]
# metafor's remedy for non-convergence: a halved Fisher scoring step
for (method in c("REML", "ML")) {
  for (test in tests) {
    fits[[length(fits) + 1]] <- fit_record("nonconv", datasets$nonconv, method, test,
                                           control = list(stepadj = 0.5))
  }
}

# ---------------------------------------------------------------- leave-one-out
l1o <- list()
for (name in c("bcg", "molloy", "normand")) {
  for (spec in list(c("REML", "z"), c("DL", "knha"), c("PM", "z"))) {
    r <- rma(yi, vi, data = datasets[[name]], method = spec[1], test = spec[2])
    l <- leave1out(r)
    l1o[[length(l1o) + 1]] <- list(
      dataset = name, method = spec[1], test = spec[2],
      estimate = as.numeric(l$estimate), se = as.numeric(l$se),
      stat = as.numeric(if (spec[2] == "z") l$zval else l$tval),
      pval = as.numeric(l$pval), ci_lb = as.numeric(l$ci.lb),
      ci_ub = as.numeric(l$ci.ub), Q = as.numeric(l$Q), Qp = as.numeric(l$Qp),
      tau2 = as.numeric(l$tau2), I2 = as.numeric(l$I2), H2 = as.numeric(l$H2))
  }
}

# ---------------------------------------------------------------- Egger (regtest)
egger <- list()
for (name in c("bcg", "molloy", "normand")) {
  for (spec in list(c("REML", "z"), c("REML", "knha"), c("FE", "z"), c("DL", "z"),
                    c("PM", "knha"))) {
    r <- rma(yi, vi, data = datasets[[name]], method = spec[1], test = spec[2])
    e <- suppressWarnings(regtest(r, model = "rma", predictor = "sei"))
    egger[[length(egger) + 1]] <- list(
      dataset = name, method = spec[1], test = spec[2],
      stat = num(e$zval), pval = num(e$pval), ddf = num(e$dfs),
      b = num(e$est), b_ci_lb = num(e$ci.lb), b_ci_ub = num(e$ci.ub),
      tau2 = num(e$fit$tau2))
  }
}

# ---------------------------------------------------------------- meta-regression
metareg_record <- function(name, d, modnames, method, test) {
  mods <- reformulate(modnames)
  res <- capture(rma(yi, vi, mods = mods, data = d, method = method, test = test))
  rec <- list(dataset = name, moderators = modnames, method = method, test = test,
              warnings = res$warnings)
  r <- res$value
  if (inherits(r, "fit_error")) {
    rec$error <- as.character(r)
    return(rec)
  }
  rec$terms <- rownames(r$beta)
  rec$b <- as.numeric(r$beta)
  rec$se <- as.numeric(r$se)
  rec$stat <- as.numeric(r$zval)
  rec$pval <- as.numeric(r$pval)
  rec$ci_lb <- as.numeric(r$ci.lb)
  rec$ci_ub <- as.numeric(r$ci.ub)
  rec$QM <- num(r$QM)
  rec$QMdf <- as.numeric(r$QMdf)
  rec$QMp <- num(r$QMp)
  rec$QE <- num(r$QE)
  rec$QEp <- num(r$QEp)
  rec$tau2 <- num(r$tau2)
  rec$se_tau2 <- num(r$se.tau2)
  rec$I2 <- num(r$I2)
  rec$H2 <- num(r$H2)
  rec$R2 <- num(r$R2)
  rec$k <- r$k
  rec$p <- r$p
  rec$tau2_ci_lb <- NA_real_
  rec$tau2_ci_ub <- NA_real_
  if (!is.element(method, c("FE", "EE", "CE"))) {
    ci <- capture(confint(r))
    if (!inherits(ci$value, "fit_error")) {
      rec$tau2_ci_lb <- num(ci$value$random["tau^2", "ci.lb"])
      rec$tau2_ci_ub <- num(ci$value$random["tau^2", "ci.ub"])
    }
  }
  rec
}

metareg <- list()
for (method in methods) {
  for (test in tests) {
    metareg[[length(metareg) + 1]] <- metareg_record("bcg", bcg, c("ablat", "year"), method, test)
    metareg[[length(metareg) + 1]] <- metareg_record("bcg", bcg, c("alloc"), method, test)
  }
}
for (method in c("REML", "DL")) {
  for (test in tests) {
    metareg[[length(metareg) + 1]] <- metareg_record("bcg", bcg, c("ablat", "alloc"), method, test)
  }
}

# ---------------------------------------------------------------- write
data_out <- lapply(datasets, function(d) {
  out <- list(yi = as.numeric(d$yi), vi = as.numeric(d$vi),
              labels = as.character(d$label), n = as.numeric(d$n))
  if (!is.null(d$ablat)) {
    out$ablat <- as.numeric(d$ablat)
    out$year <- as.numeric(d$year)
    out$alloc <- as.character(d$alloc)
  }
  out
})

out <- list(
  generator = "tests/reference/make_meta_reference.R",
  metafor_version = as.character(packageVersion("metafor")),
  r_version = R.version.string,
  datasets = data_out,
  fits = fits,
  leave1out = l1o,
  egger = egger,
  metareg = metareg
)
write_json(out, out_path, digits = NA, auto_unbox = TRUE, na = "null",
           pretty = TRUE, null = "null")
cat("wrote", out_path, "\n")
