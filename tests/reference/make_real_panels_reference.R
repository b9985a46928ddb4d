# Real public panels through the stage-1 lagged model (METHODS §5), fitted by lme4 (issue 11 §6).
#
# Run from the repository root:
#     Rscript tests/reference/make_real_panels_reference.R
#
# Step 1 (R) exports four public data sets as canonical long data (real_panels.csv):
#   Produc    plm::Produc, 48 US states x 1970-1986, grouped by census region (study = region,
#             patient = state, session = year - 1970, alliance = gross state product gsp,
#             symptoms = unemployment rate unemp). States differ far more from each other than
#             from year to year, and region 2 has only 3 states (its random intercept is not
#             identified once the between terms are in the model).
#   Grunfeld  plm::Grunfeld, 10 firms x 1935-1954 (alliance = value, symptoms = inv).
#   Oxboys    mlmRev::Oxboys, 26 boys x 9 occasions (alliance = age, symptoms = height).
#   Exam      mlmRev::Exam, 4,059 pupils in 65 schools (study = school gender, patient = school,
#             session = pupil order within school, alliance = standLRT, symptoms = normexam).
# Step 2 (Python, analysis.lagged.prepare, embedded) writes the model rows of each configuration
#   to a temporary file, so that R fits exactly the rows the Python code uses.
# Step 3 (R) fits lmer(lead ~ terms + (1 | patient), REML) with a tight bobyqa and writes
#   real_panels_reference.json: per dataset x configuration x direction x study the fixed
#   effects, SEs, theta, sigma^2, tau^2, the REML criterion and the number of patient-level
#   columns (p_between) of the model; and per dataset x configuration x direction with several studies
#   the metafor REML pooling of lme4's standardized (person_mean) within estimates (the Produc pooled estimate changes when the
#   region the old solver refused is included).
# pytest (tests/test_real_panels.py) compares analysis.pipeline.two_stage's stage-1 fits.

suppressPackageStartupMessages({
  library(lme4)
  library(plm)
  library(mlmRev)
  library(jsonlite)
  library(metafor)
})

args <- commandArgs(trailingOnly = FALSE)
file_arg <- sub("^--file=", "", args[grep("^--file=", args)])
here <- if (length(file_arg)) dirname(normalizePath(file_arg)) else "tests/reference"
root <- normalizePath(file.path(here, "..", ".."))
python <- file.path(root, ".venv", "bin", "python")

data("Produc", package = "plm")
data("Grunfeld", package = "plm")
data("Oxboys", package = "mlmRev")
data("Exam", package = "mlmRev")
ex <- Exam[order(Exam$school, as.integer(as.character(Exam$student))), ]
ex$session <- ave(seq_len(nrow(ex)), ex$school, FUN = seq_along)
panels <- rbind(
  data.frame(dataset = "Produc", study = paste("Region", Produc$region), patient = as.character(Produc$state),
             session = Produc$year - 1970L, alliance = Produc$gsp, symptoms = Produc$unemp),
  data.frame(dataset = "Grunfeld", study = "Grunfeld", patient = sprintf("Firm %02d", Grunfeld$firm),
             session = Grunfeld$year - 1935L, alliance = Grunfeld$value, symptoms = Grunfeld$inv),
  data.frame(dataset = "Oxboys", study = "Oxboys", patient = sprintf("Boy %02d", as.integer(as.character(Oxboys$Subject))),
             session = as.integer(as.character(Oxboys$Occasion)), alliance = Oxboys$age, symptoms = Oxboys$height),
  data.frame(dataset = "Exam", study = paste("Schools", ex$schgend), patient = sprintf("School %02d", as.integer(as.character(ex$school))),
             session = ex$session, alliance = ex$standLRT, symptoms = ex$normexam)
)
write.csv(panels, file.path(here, "real_panels.csv"), row.names = FALSE)

rows_file <- tempfile(fileext = ".csv")
py <- '
import sys
import pandas as pd
sys.path.insert(0, ROOT)
from analysis.lagged import LagOptions, prepare, DIRECTIONS
data = pd.read_csv(OUT + "/real_panels.csv")
configs = {"person_mean": LagOptions(), "total_raw": LagOptions(centering="none", standardize=False),
           "person_mean_raw": LagOptions(standardize=False)}
parts = []
for ds, d in data.groupby("dataset"):
    for name, opt in configs.items():
        for direction in DIRECTIONS:
            r = prepare(d.drop(columns="dataset"), opt, direction)
            r.insert(0, "dataset", ds)
            r.insert(1, "config", name)
            r.insert(2, "direction", direction)
            parts.append(r)
rows = pd.concat(parts, ignore_index=True)
keep = ["dataset", "config", "direction", "study", "patient", "within", "between", "prior_within",
        "prior_between", "lead"]
rows[[k for k in keep if k in rows]].to_csv(ROWS, index=False, float_format="%.17g")
'
py <- gsub("ROWS", shQuote(rows_file), gsub("ROOT", shQuote(root), gsub("OUT", shQuote(here), py, fixed = TRUE),
                                             fixed = TRUE), fixed = TRUE)
py_file <- tempfile(fileext = ".py")
writeLines(py, py_file)
if (system2(python, py_file) != 0) stop("the Python data step failed")
rows <- read.csv(rows_file, stringsAsFactors = FALSE)

ctl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e6),
                   check.conv.singular = "ignore", check.conv.grad = "ignore", check.conv.hess = "ignore")
out <- list()
for (key in unique(paste(rows$dataset, rows$config, rows$direction, rows$study, sep = "|"))) {
  k <- strsplit(key, "|", fixed = TRUE)[[1]]
  d <- rows[rows$dataset == k[1] & rows$config == k[2] & rows$direction == k[3] & rows$study == k[4], ]
  terms <- if (k[2] == "total_raw") c("within", "prior_within") else
    c("within", "between", "prior_within", "prior_between")
  f <- lmer(as.formula(paste("lead ~", paste(terms, collapse = " + "), "+ (1 | patient)")), data = d,
            REML = TRUE, control = ctl)
  s <- summary(f)$coefficients
  vc <- as.data.frame(VarCorr(f))
  out[[length(out) + 1]] <- list(
    dataset = k[1], config = k[2], direction = k[3], study = k[4],
    term = c("intercept", terms), estimate = unname(s[, 1]), se = unname(s[, 2]),
    theta = unname(getME(f, "theta")), tau2 = vc$vcov[1], sigma2 = vc$vcov[2], reml = REMLcrit(f),
    n_obs = nrow(d), n_groups = length(unique(d$patient)), p_between = if (k[2] == "total_raw") 1L else 3L)
}
# stage 2: metafor REML pooling of lme4's within estimates, per dataset x configuration x direction
pooled <- list()
for (key in unique(sapply(out, function(f) paste(f$dataset, f$config, f$direction, sep = "|")))) {
  fs <- Filter(function(f) paste(f$dataset, f$config, f$direction, sep = "|") == key, out)
  if (length(fs) < 2 || fs[[1]]$config != "person_mean") next  # standardized coefficients only
  yi <- sapply(fs, function(f) f$estimate[f$term == "within"])
  sei <- sapply(fs, function(f) f$se[f$term == "within"])
  # metafor's default control, as tests/reference/make_meta_reference.R (analysis.meta follows it)
  m <- rma(yi = yi, sei = sei, method = "REML")
  k <- strsplit(key, "|", fixed = TRUE)[[1]]
  pooled[[length(pooled) + 1]] <- list(dataset = k[1], config = k[2], direction = k[3], k = length(fs),
                                       estimate = m$b[1], se = m$se, tau2 = m$tau2)
}
writeLines(toJSON(list(lme4 = as.character(packageVersion("lme4")), fits = out, pooled = pooled), digits = NA,
                  auto_unbox = TRUE, pretty = TRUE), file.path(here, "real_panels_reference.json"))
cat("wrote", length(out), "fits\n")
