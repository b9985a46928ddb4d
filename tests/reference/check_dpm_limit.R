# The DPM's large-sample value under a fitted RI-CLPM, by lavaan (checks analysis.dynamics.dpm_limit and
# benchmarks/bench_dpm_bias.py; METHODS §15.2). Fits the RI-CLPM of make_dynamics_reference.R to one study
# of the 17-study demo, takes its implied mean vector and covariance matrix, and fits to those moments
# (sample.nobs = 1e6) the DPM of make_dynamics_reference.R (the `dpm` package's lavaan model: a session's
# predictor covaries only with *earlier* outcome innovations) and the same DPM with the same-session
# covariances also free. Prints the cross-lag of each direction under the three models.
# Run from the project root: Rscript tests/reference/check_dpm_limit.R ["Study 04"]
suppressPackageStartupMessages(library(lavaan))
src <- readLines("tests/reference/make_dynamics_reference.R")  # riclpm_syntax() and dpm_syntax()
eval(parse(text = src[grep("^riclpm_syntax <- function", src):(grep("^fit_one <- function", src) - 1)]))
args <- commandArgs(trailingOnly = TRUE)
study <- if (length(args)) args[1] else "Study 04"
d <- read.csv("demo_data/ipd_17_studies.csv")
d <- d[d$study == study, ]
Tw <- max(d$session)
ids <- unique(d$patient)
w <- data.frame(id = ids)
for (v in c("alliance", "symptoms")) for (t in 1:Tw) {
  col <- rep(NA_real_, length(ids))
  sub <- d[d$session == t, ]
  col[match(sub$patient, ids)] <- sub[[v]]
  w[[paste0(v, t)]] <- col
}
fit_to <- function(syntax, ...) suppressWarnings(lavaan(
  syntax, ..., meanstructure = TRUE, fixed.x = FALSE, int.ov.free = FALSE, int.lv.free = FALSE,
  auto.var = FALSE, auto.cov.lv.x = FALSE, auto.cov.y = FALSE, auto.fix.first = FALSE,
  auto.fix.single = FALSE, std.lv = FALSE))
est <- function(fit, name) { p <- parameterEstimates(fit); p$est[p$label == name][1] }

ri <- fit_to(riclpm_syntax(Tw), data = w, missing = "ml")
imp <- fitted(ri)
cat(sprintf("%s: %d patients, %d sessions; RI-CLPM logLik %.3f\n", study, nrow(w), Tw, logLik(ri)))
for (dir in list(c("symptoms", "alliance"), c("alliance", "symptoms"))) {
  y <- dir[1]; x <- dir[2]; name <- paste0(x, "_to_", y)
  vars <- c(paste0(y, 1:Tw), paste0(x, 1:(Tw - 1)))
  same <- sprintf("%s%d ~~ %s%d", y, 2:(Tw - 1), x, 2:(Tw - 1))
  b <- sapply(list(dpm_syntax(Tw, y, x), paste(c(dpm_syntax(Tw, y, x), same), collapse = "\n")), function(s)
    est(fit_to(s, sample.cov = imp$cov[vars, vars], sample.mean = imp$mean[vars], sample.nobs = 1e6), name))
  truth <- est(ri, name)
  cat(sprintf("%-21s RI-CLPM (truth) %.6g | DPM (dpm package) %.6g (%+.3f) | DPM + same-session %.6g (%+.3f)\n",
              name, truth, b[1], b[1] / truth - 1, b[2], b[2] / truth - 1))
}
