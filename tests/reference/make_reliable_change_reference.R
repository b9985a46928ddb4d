# Reference values for analysis.events.reliable_change (METHODS §11): the four reliable-change
# indices written in base R straight from the published formulas, independently of the Python code.
#
#   JT   Jacobson & Truax (1991): RCI = (x_post - x_pre) / sqrt(2 * S_E^2), S_E = SD * sqrt(1 - r);
#        reliable when |RCI| > 1.96.
#   GLN  Gulliksen-Lord-Novick as given by Hsu (1989) and Bauer, Lambert & Nielsen (2004):
#        RC = ((x_post - M_pre) - r * (x_pre - M_pre)) / (SD * sqrt(1 - r^2)); |RC| > 1.96.
#   EN   Edwards-Nunnally as given by Speer (1992) and Bauer et al. (2004): reliable when x_post
#        lies outside r * (x_pre - M_pre) + M_pre +/- 2 * S_E (index = (x_post - T) / S_E, |.| > 2).
#   HA   Hageman & Arrindell (1999), RC_INDIV: r_xx at pre and post from the same S_E,
#        r_t = (s_t^2 - S_E^2) / s_t^2; r_DD = (s_1^2 r_1 + s_2^2 r_2 - 2 s_1 s_2 r_12) /
#        (s_1^2 + s_2^2 - 2 s_1 s_2 r_12); RC = ((x_post - x_pre) r_DD + (M_post - M_pre)(1 - r_DD)) /
#        sqrt(r_DD * 2 * S_E^2); reliable when |RC| > 1.65.
# Pre = a patient's first, post = the last observed score; M_pre, M_post, s_1, s_2, r_12 from the
# patients of the study with both. SD: given per study, or the study's baseline SD (the SD of every
# patient's first observed score).
#
# Run from the repository root:
#     Rscript tests/reference/make_reliable_change_reference.R
# Writes reliable_change_data.csv (long: study, patient, session, alliance, symptoms) and
# reliable_change_reference.json (per configuration and method: study, patient, index, category;
# per study r_DD for HA).

suppressPackageStartupMessages(library(jsonlite))

args <- commandArgs(trailingOnly = FALSE)
file_arg <- sub("^--file=", "", args[grep("^--file=", args)])
here <- if (length(file_arg)) dirname(normalizePath(file_arg)) else "tests/reference"

set.seed(11)
rows <- list()
for (study in c("A", "B")) {
  n_pat <- if (study == "A") 40 else 25
  shift <- if (study == "A") 0 else 8
  for (i in seq_len(n_pat)) {
    n_s <- sample(1:8, 1)   # a patient with one session has no change score
    base <- rnorm(1, 25 + shift, 7)
    slope <- rnorm(1, -1.2, 1)
    y <- round(base + slope * (seq_len(n_s) - 1) + rnorm(n_s, 0, 3), 1)
    y[runif(n_s) < 0.12] <- NA
    rows[[length(rows) + 1]] <- data.frame(
      study = study, patient = sprintf("%s%02d", study, i), session = seq_len(n_s),
      alliance = round(rnorm(n_s, 5, 0.6), 2), symptoms = y)
  }
}
d <- do.call(rbind, rows)
write.csv(d, file.path(here, "reliable_change_data.csv"), row.names = FALSE, na = "")

prepost <- function(d) {
  do.call(rbind, lapply(split(d, d$patient), function(p) {
    p <- p[order(p$session), ]
    y <- p$symptoms[!is.na(p$symptoms)]
    data.frame(study = p$study[1], patient = p$patient[1], n = length(y),
               first = if (length(y)) y[1] else NA,
               pre = if (length(y) >= 2) y[1] else NA, post = if (length(y) >= 2) y[length(y)] else NA)
  }))
}

category <- function(idx, crit) {
  ifelse(is.na(idx), NA, ifelse(idx < -crit, "improved", ifelse(idx > crit, "deteriorated", "unchanged")))
}

one_study <- function(pp, r, sd, method) {
  both <- !is.na(pp$pre)
  x1 <- pp$pre[both]; x2 <- pp$post[both]
  m1 <- mean(x1); m2 <- mean(x2); s1 <- sd(x1); s2 <- sd(x2); r12 <- cor(x1, x2)
  se <- sd * sqrt(1 - r)
  rdd <- NA
  if (method == "JT") {
    idx <- (pp$post - pp$pre) / sqrt(2 * se^2); crit <- 1.96
  } else if (method == "GLN") {
    idx <- ((pp$post - m1) - r * (pp$pre - m1)) / (sd * sqrt(1 - r^2)); crit <- 1.96
  } else if (method == "EN") {
    true_pre <- r * (pp$pre - m1) + m1
    idx <- (pp$post - true_pre) / se; crit <- 2
  } else {
    r1 <- (s1^2 - se^2) / s1^2; r2 <- (s2^2 - se^2) / s2^2
    rdd <- (s1^2 * r1 + s2^2 * r2 - 2 * s1 * s2 * r12) / (s1^2 + s2^2 - 2 * s1 * s2 * r12)
    idx <- if (rdd > 0) ((pp$post - pp$pre) * rdd + (m2 - m1) * (1 - rdd)) / sqrt(rdd * 2 * se^2)
           else rep(NA_real_, nrow(pp))  # r_DD <= 0: no index
    crit <- 1.65
  }
  list(rows = data.frame(study = pp$study, patient = pp$patient, index = idx,
                         category = category(idx, crit)), r_dd = rdd, crit = crit)
}

pp_all <- prepost(d)
configs <- list(
  list(name = "given", r = c(A = 0.85, B = 0.70), sd = c(A = 6, B = 9)),
  list(name = "baseline", r = c(A = 0.90, B = 0.90), sd = NULL)
)
out <- list()
for (cfg in configs) {
  for (method in c("JT", "GLN", "EN", "HA")) {
    res <- list(); rdd <- list()
    for (study in c("A", "B")) {
      pp <- pp_all[pp_all$study == study, ]
      sd_s <- if (is.null(cfg$sd)) sd(pp$first, na.rm = TRUE) else cfg$sd[[study]]
      o <- one_study(pp, cfg$r[[study]], sd_s, method)
      res[[study]] <- o$rows
      rdd[[study]] <- o$r_dd
    }
    rows <- do.call(rbind, res)
    out[[paste(cfg$name, method, sep = "_")]] <- list(
      reliability = as.list(cfg$r), sd = if (is.null(cfg$sd)) NULL else as.list(cfg$sd),
      crit = o$crit, r_dd = rdd, patient = rows$patient, study = rows$study,
      index = rows$index, category = rows$category)
  }
}
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, na = "null", null = "null", pretty = TRUE),
           file.path(here, "reliable_change_reference.json"))
