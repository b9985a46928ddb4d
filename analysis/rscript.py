"""A self-contained R script (lme4 + metafor) that reproduces the two-stage analysis.

:func:`r_script` returns R source that, run with ``Rscript`` in the folder that
holds the canonical data CSV, repeats stage 1 (METHODS §2–§5: window,
standardization, centering, lag pairing, the per-study lagged model) and
stage 2 (§6: ``metafor::rma`` with the same τ² method and test) exactly as
:func:`analysis.pipeline.two_stage` does for the given
:class:`analysis.lagged.LagOptions`. It writes ``per_study_estimates.csv``
(study, direction, term, estimate, se, df, status) and ``pooled_estimates.csv``
(direction, estimate, se, tau2, k, ci_low, ci_high, pvalue) and prints a
summary.

Mixed models are fitted with ``lme4::lmer`` (REML, bobyqa with a tight
tolerance; with ``df_method="satterthwaite"`` the t tests' df come from
``lmerTest`` at the same REML estimate); lag 0, the outcome moderator,
patient-level covariates (numeric centred per study, text as dummies against
the first level, terms a study cannot estimate left out as the app does) and
the within-patient SD standardization are built as
:func:`analysis.lagged.model_rows` builds them. The fixed-effects estimator is OLS on patient-demeaned rows with
CR1 cluster-robust SEs written out in base R (``G/(G−1)·B⁻¹MB⁻¹``, as
:func:`analysis.mixed.fit_within_cr1`). User strings (the file name) enter the
script only as escaped R string literals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields

from analysis.lagged import LagOptions
from analysis.options import declared

__all__ = ["R_SUPPORTED_OPTIONS", "R_VALUES", "covariate_kinds", "r_script", "r_string"]

#: LagOptions fields the R script reproduces (declared with ``r=`` in analysis.lagged); any other field must
#: keep its default.
R_SUPPORTED_OPTIONS = tuple(o.name for o in declared(LagOptions) if o.r)

#: The values of the supported options that the R template implements, from the declarations (a new value of
#: these fields, e.g. another lag, is left out there with ``r=(...)`` until the template implements it).
#: ``covariates`` (any patient-level columns) and ``sessions`` (any window) are not listed: every value works.
R_VALUES = {o.name: o.r_values for o in declared(LagOptions) if o.r_values}


def r_string(value: str) -> str:
    """``value`` as a double-quoted R string literal (every non-printable or non-ASCII
    character as an escape), so that user text is data in the script, never code."""
    s = str(value)
    if "\x00" in s:
        raise ValueError("An R string cannot contain a NUL character.")
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif 32 <= o < 127:
            out.append(ch)
        elif o <= 0xFFFF:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


def _r_value(v) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, int):
        return f"{v}L"
    if isinstance(v, str):
        return r_string(v)
    if isinstance(v, (tuple, list)):
        return "c(" + ", ".join(_r_value(x) for x in v) + ")"
    raise ValueError(f"Cannot write {v!r} into the R script.")


def _as_options(options) -> LagOptions:
    if isinstance(options, LagOptions):
        return options
    if isinstance(options, Mapping):
        return LagOptions(**dict(options))
    raise ValueError("options must be analysis.lagged.LagOptions or a mapping of its fields.")


def _check_supported(options: LagOptions) -> None:
    for name, allowed in R_VALUES.items():
        v = getattr(options, name)
        if not any(v is a or (type(v) is type(a) and v == a) for a in allowed):
            raise ValueError(
                f"The R script does not reproduce {name}={v!r} yet (it implements "
                f"{', '.join(map(repr, allowed))}); use the Python script for this analysis."
            )
    for d in options.directions:
        if d not in ("alliance_to_symptoms", "symptoms_to_alliance"):
            raise ValueError(f"The R script does not reproduce the direction {d!r} yet.")
    default = LagOptions()
    for f in fields(LagOptions):
        if f.name in R_SUPPORTED_OPTIONS:
            continue
        if getattr(options, f.name) != getattr(default, f.name):
            raise ValueError(
                f"The R script does not reproduce the option {f.name}={getattr(options, f.name)!r} yet; "
                f"set it back to {getattr(default, f.name)!r} to export an R script, or use the Python script."
            )


def covariate_kinds(df, names) -> dict:
    """``{name: "numeric" | "categorical"}`` for the covariate columns ``names`` of ``df``, decided as
    the app decides (:func:`analysis.lagged.covariate_is_numeric`), so that the R script does not
    have to guess a column's type from the CSV text. Columns absent from ``df`` are left out."""
    from analysis.lagged import covariate_is_numeric

    return {n: ("numeric" if covariate_is_numeric(df[n]) else "categorical") for n in names if n in df.columns}


def r_script(data_filename: str, options, data=None) -> str:
    """R source reproducing :func:`analysis.pipeline.two_stage` for ``options`` (METHODS §2–§6).

    ``data_filename`` is the canonical long CSV (columns study, patient, session,
    alliance, symptoms and any covariate columns) in the folder where the script
    is run. ``data`` (the analysed frame) tells the script which covariates are
    numbers and which are levels (:func:`covariate_kinds`); without it, R takes a
    column whose every non-missing value reads as a number as numeric. Raises
    ``ValueError`` naming the option when a :class:`LagOptions` value is not
    reproduced by the R script (every field outside :data:`R_SUPPORTED_OPTIONS`
    must keep its default).

    >>> from analysis.lagged import LagOptions
    >>> src = r_script("sessions.csv", LagOptions(lag=2))
    >>> "lag = 2" in src, "library(lme4)" in src
    (True, True)
    """
    opts = _as_options(options)
    _check_supported(opts)
    d = opts.to_dict()
    lines = [f"  {k} = {_r_value(d[k])}" for k in R_SUPPORTED_OPTIONS]
    kinds = covariate_kinds(data, opts.covariates) if data is not None else {}
    kinds_r = "NULL" if not kinds else "c(" + ", ".join(
        f"{r_string(k)} = {r_string(v)}" for k, v in kinds.items()) + ")"
    lines.append(f"  covariate_kinds = {kinds_r}")
    opt_block = "opt <- list(\n" + ",\n".join(lines) + "\n)"
    return _TEMPLATE.replace("@DATA_FILE@", r_string(data_filename)).replace("@OPTIONS@", opt_block)


_TEMPLATE = r'''# Reproduces the lagged two-stage IPD meta-analysis of the Alliance <-> Symptoms
# dashboard (docs/METHODS.md sections 2-6) with lme4 and metafor (and lmerTest for
# Satterthwaite t tests).
#
# Run in the folder that holds the data file:
#     Rscript this_script.R
# Writes per_study_estimates.csv and pooled_estimates.csv (with stage1 = "riclpm" or "dpm" also
# pooled_standardized_estimates.csv) and prints a summary.
#
# Stage 1, per study and direction X -> Y with lag L:
#   Y[t+L] = b0 + bW*X_within[t] + bB*X_between + aW*Y_within[t] + aB*Y_between
#            [+ c*X_between*X_within[t]] [+ cY*Y_between*X_within[t]] [+ d*time]
#            [+ g*C + h*C*X_within[t] for each patient-level covariate C]
#            + u_patient [+ v_patient*time] + e
# (lme4::lmer, REML), or the within (fixed-effects) OLS estimator with CR1
# cluster-robust SEs by patient. Lag 0 (symptoms -> alliance only): the outcome is
# alliance rated later in the same session t, the prior outcome alliance at t - 1.
# With stage1 = "riclpm" or "dpm" (docs/METHODS.md section 15) stage 1 is instead the RI-CLPM or the
# ML-SEM dynamic panel model per study, by full-information ML in lavaan (missing = "ml").
# Stage 2: metafor::rma on the 'within' estimates, with the chosen test (opt$test; "adhoc" is
# Knapp-Hartung never narrower than z, metafor's test = "adhoc").
# One-stage (section 6b, stage1 = "lmm"): lmerTest::lmer on all studies' rows at once.

suppressPackageStartupMessages({
  library(lme4)
  library(metafor)
  library(lmerTest)  # Satterthwaite t tests (stage 1 when chosen; the one-stage model)
})

data_file <- @DATA_FILE@
@OPTIONS@
if (opt$df_method == "satterthwaite") suppressPackageStartupMessages(library(lmerTest))

# ------------------------------------------------------------------ read the canonical data
raw <- read.csv(data_file, colClasses = "character", na.strings = character(0),
                check.names = FALSE, fileEncoding = "UTF-8")
# text marked as UTF-8 (sorting and matching non-ASCII names needs the mark); the app's CSVs prefix text a
# spreadsheet would run as a formula (and text beginning with ') with one ': removing it gives the data back
raw[] <- lapply(raw, function(v) sub("^'", "", enc2utf8(v)))
names(raw) <- sub("^'", "", enc2utf8(names(raw)))
need <- c("patient", "session", "alliance", "symptoms")
if (!all(need %in% names(raw))) {
  stop("The data lack the column(s) ", paste(setdiff(need, names(raw)), collapse = ", "),
       "; canonical long data need study, patient, session, alliance and symptoms.")
}
missing_text <- function(v) is.na(v) | trimws(v) %in% c("", "NA", "NaN")
num <- function(v) suppressWarnings(as.numeric(ifelse(missing_text(v), NA, v)))
if (!("study" %in% names(raw))) raw$study <- "Study"
raw$session <- num(raw$session)
if (any(is.na(raw$session)) || any(raw$session != round(raw$session)) || any(raw$session < 0)) {
  stop("Column 'session' must hold whole numbers >= 0 in every row.")
}
raw$alliance <- num(raw$alliance)
raw$symptoms <- num(raw$symptoms)
if (!is.null(opt$sessions)) {
  raw <- raw[raw$session >= opt$sessions[1] & raw$session <= opt$sessions[2], ]
}
if (nrow(raw) == 0) stop("No rows in the analysis window.")

hybrid <- opt$centering %in% c("person_mean", "detrended")
fe <- opt$estimator == "fixed_effects"
vars_of <- list(alliance_to_symptoms = c("alliance", "symptoms"),
                symptoms_to_alliance = c("symptoms", "alliance"))

# ------------------------------------------------------------------ patient-level covariates (section 5)
# Numeric: centred at the study's mean over its patients (divided by their SD when standardizing).
# Text: a 0/1 dummy per level except the first (levels sorted over the whole analysis window).
# Internal column names c1, c1x, ... keep the model formula free of user text; 'label' names the terms.
label <- c(intercept = "intercept", within = "within", between = "between", prior_within = "prior_within",
           prior_between = "prior_between", interaction = "interaction",
           interaction_outcome = "interaction_outcome", time = "time")
covs <- list()
for (nm in opt$covariates) {
  if (!(nm %in% names(raw))) stop("The covariate column '", nm, "' is not in the data.")
  v <- raw[[nm]]
  kind <- if (!is.null(opt$covariate_kinds) && nm %in% names(opt$covariate_kinds)) {
    opt$covariate_kinds[[nm]]
  } else if (all(missing_text(v) | !is.na(num(v)))) "numeric" else "categorical"
  cv <- list(name = nm, kind = kind)
  if (kind == "numeric") {
    cv$value <- num(v)
    cv$mains <- sprintf("c%d", length(covs) + 1)
    label[cv$mains] <- nm
  } else {
    v[missing_text(v)] <- NA
    cv$levels <- sort(unique(v[!is.na(v)]), method = "radix")
    cv$value <- match(v, cv$levels)
    cv$mains <- if (length(cv$levels) > 1) sprintf("c%d_%d", length(covs) + 1, seq_along(cv$levels)[-1]) else character(0)
    label[cv$mains] <- paste0(nm, ": ", cv$levels[-1])
  }
  cv$inters <- paste0(cv$mains, "x")
  label[cv$inters] <- paste0("within \u00d7 ", label[cv$mains])
  covs[[length(covs) + 1]] <- cv
  raw[[sprintf(".cov%d", length(covs))]] <- cv$value
}
cov_mains <- unlist(lapply(covs, `[[`, "mains"))
cov_inters <- unlist(lapply(covs, `[[`, "inters"))

model_terms <- function() {
  t <- if (fe) character(0) else "intercept"
  t <- c(t, "within")
  if (hybrid && !fe) t <- c(t, "between")
  if (opt$control_prior_outcome) {
    t <- c(t, "prior_within")
    if (hybrid && !fe) t <- c(t, "prior_between")
  }
  if (opt$cross_level) t <- c(t, "interaction")
  if (opt$outcome_moderator) t <- c(t, "interaction_outcome")
  if (opt$time_trend != "none") t <- c(t, "time")
  if (!fe) t <- c(t, cov_mains)
  c(t, cov_inters)
}
terms_all <- model_terms()

gsum <- function(v, g, G) vapply(split(v, factor(g, levels = seq_len(G))), sum, numeric(1))

# ------------------------------------------------------------------ standardization (section 2)
prepare_study <- function(d) {
  d <- d[order(d$patient, d$session, method = "radix"), ]
  d$pid <- match(d$patient, unique(d$patient))
  G <- max(d$pid)
  if (anyDuplicated(paste(d$pid, d$session))) {
    stop("A patient of study ", d$study[1], " has more than one row for a session.")
  }
  problems <- character(0)
  for (v in c("alliance", "symptoms")) {
    x <- d[[v]]
    obs <- !is.na(x)
    s <- if (sum(obs) >= 2) sd(x[obs]) else NA_real_
    good <- is.finite(s) && s > 0
    if (!good) {
      problems <- c(problems, sprintf("%s has no variance in the analysis window (%d observed value(s))",
                                      v, sum(obs)))
    }
    if (opt$standardize && opt$standardize_by == "within") {
      # pooled within-patient SD: sqrt(sum of squared deviations from the patient means / (N - G))
      nobs <- tabulate(d$pid[obs], G)
      pm <- gsum(x[obs], d$pid[obs], G) / nobs
      s <- sqrt(sum((x[obs] - pm[d$pid[obs]])^2) / (sum(obs) - sum(nobs > 0)))
      if (sum(obs) >= 2 && !(is.finite(s) && s > 0)) {
        problems <- c(problems, sprintf("%s does not vary within patients (within-patient SD 0)", v))
      }
      good <- is.finite(s) && s > 0
    }
    if (opt$standardize) d[[v]] <- if (good) (x - mean(x[obs])) / s else rep(NA_real_, nrow(d))
  }
  # covariates: one value per patient
  pcov <- list()
  for (k in seq_along(covs)) {
    v <- d[[sprintf(".cov%d", k)]]
    sp <- split(v, factor(d$pid, levels = seq_len(G)))
    pcov[[k]] <- vapply(seq_len(G), function(p) {
      vp <- sp[[p]][!is.na(sp[[p]])]
      if (length(vp) && any(vp != vp[1])) {
        stop("Covariate '", covs[[k]]$name, "' must be patient-level (one value per patient), but patient ",
             d$patient[d$pid == p][1], " of study ", d$study[1], " has several values.")
      }
      if (length(vp)) as.numeric(vp[1]) else NA_real_
    }, numeric(1))
  }
  list(d = d, problems = problems, pcov = pcov)
}

# ------------------------------------------------------------------ centering (section 3)
centre <- function(d, v) {
  x <- d[[v]]
  obs <- !is.na(x)
  pid <- d$pid
  G <- max(pid)
  nobs <- tabulate(pid[obs], G)
  pm <- ifelse(nobs > 0, gsum(x[obs], pid[obs], G) / nobs, NA_real_)
  between <- pm - mean(pm[nobs > 0])
  if (opt$centering == "none") {
    return(list(within = x, between = NULL))
  }
  if (opt$centering == "grand_mean") {
    return(list(within = x - mean(x[obs]), between = NULL))
  }
  if (opt$centering == "person_mean") {
    return(list(within = x - pm[pid], between = between[pid]))
  }
  # detrended: residual of the patient's own OLS line of X on session (>= 3 observed values)
  t <- d$session
  tbar <- ifelse(nobs > 0, gsum(t[obs], pid[obs], G) / nobs, NA_real_)
  td <- ifelse(obs, t - tbar[pid], 0)
  xd <- ifelse(obs, x - pm[pid], 0)
  sxx <- gsum(td * td, pid, G)
  sxy <- gsum(td * xd, pid, G)
  ok <- nobs >= 3 & sxx > 0
  slope <- ifelse(ok, sxy / ifelse(ok, sxx, 1), NA_real_)
  centre_x <- pm[pid] + slope[pid] * (t - tbar[pid])
  list(within = x - centre_x, between = between[pid])
}

# ------------------------------------------------------------------ lag pairing (section 4)
lead_index <- function(d, yvar) {
  n <- nrow(d)
  yobs <- !is.na(d[[yvar]])
  if (opt$lag == 0) return(ifelse(yobs, seq_len(n), NA_integer_))  # same session, rated later
  if (opt$pairing == "session") {
    j <- match(paste(d$pid, d$session + opt$lag), paste(d$pid, d$session))
  } else {
    oi <- which(yobs)
    pos <- findInterval(seq_len(n), oi) + opt$lag
    j <- rep(NA_integer_, n)
    okp <- pos <= length(oi)
    cand <- oi[pos[okp]]
    j[okp] <- ifelse(d$pid[cand] == d$pid[okp], cand, NA_integer_)
  }
  j[!is.na(j) & !yobs[ifelse(is.na(j), 1L, j)]] <- NA_integer_
  j
}

# lag 0: the prior outcome is the one of session t - 1 (or the patient's previous row with an observed outcome)
previous_index <- function(d, yvar) {
  n <- nrow(d)
  yobs <- !is.na(d[[yvar]])
  if (opt$pairing == "session") {
    j <- match(paste(d$pid, d$session - 1), paste(d$pid, d$session))
  } else {
    oi <- which(yobs)
    pos <- findInterval(seq_len(n) - 1, oi)
    j <- rep(NA_integer_, n)
    okp <- pos >= 1
    cand <- oi[pos[okp]]
    j[okp] <- ifelse(d$pid[cand] == d$pid[okp], cand, NA_integer_)
  }
  j[!is.na(j) & !yobs[ifelse(is.na(j), 1L, j)]] <- NA_integer_
  j
}

model_rows <- function(ps, direction) {
  d <- ps$d
  xv <- vars_of[[direction]][1]
  yv <- vars_of[[direction]][2]
  X <- centre(d, xv)
  Y <- centre(d, yv)
  j <- lead_index(d, yv)
  prior <- if (opt$lag == 0) previous_index(d, yv) else seq_len(nrow(d))
  ok <- !is.na(j) & !is.na(X$within)
  if (!is.null(X$between)) ok <- ok & !is.na(X$between)
  if (opt$control_prior_outcome) {
    ok <- ok & !is.na(prior) & !is.na(Y$within[ifelse(is.na(prior), 1L, prior)])
    if (!is.null(Y$between) && !fe) ok <- ok & !is.na(Y$between)
  }
  for (per in ps$pcov) ok <- ok & !is.na(per[d$pid])
  m <- data.frame(patient = d$pid[ok], lead = d[[yv]][j[ok]], within = X$within[ok])
  if (!is.null(X$between)) m$between <- X$between[ok]
  if (opt$control_prior_outcome) {
    m$prior_within <- Y$within[prior[ok]]
    if (!is.null(Y$between)) m$prior_between <- Y$between[ok]
  }
  if (opt$cross_level) m$interaction <- m$between * m$within
  if (opt$outcome_moderator) m$interaction_outcome <- Y$between[ok] * m$within
  if (opt$time_trend != "none") {
    s <- d$session[ok]
    m$time <- s - mean(s)
  }
  for (k in seq_along(covs)) {
    cv <- covs[[k]]
    per <- ps$pcov[[k]]
    v <- per[m$patient]
    if (cv$kind == "numeric") {
      has <- !is.na(per)
      ctr <- v - mean(per[has])
      s <- if (sum(has) >= 2) sd(per[has]) else NA_real_
      if (opt$standardize) ctr <- if (is.finite(s) && s > 0) ctr / s else 0 * ctr
      m[[cv$mains]] <- ctr
    } else {
      for (l in seq_along(cv$mains)) m[[cv$mains[l]]] <- as.numeric(v == l + 1)
    }
    for (l in seq_along(cv$mains)) m[[cv$inters[l]]] <- m[[cv$mains[l]]] * m$within
    m[[paste0(".raw", k)]] <- v  # the covariate on its own scale (one-stage across-study part)
  }
  m
}

# covariate terms a study cannot estimate: constant in the study, or dummies that add up to the intercept
study_terms <- function(m) {
  t <- terms_all
  if (nrow(m) == 0) return(t)
  for (cv in covs) {
    for (l in seq_along(cv$mains)) {
      v <- m[[cv$mains[l]]]
      if (max(v) - min(v) == 0) t <- setdiff(t, c(cv$mains[l], cv$inters[l]))
    }
  }
  for (cv in covs) {
    if (cv$kind != "categorical") next
    left <- cv$mains[cv$mains %in% t | cv$inters %in% t]
    if (length(left) && all(rowSums(as.matrix(m[, left, drop = FALSE])) == 1)) {
      t <- setdiff(t, c(left, paste0(left, "x")))
    }
  }
  t
}

# ------------------------------------------------------------------ the per-study model (section 5)
ctl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10, maxfun = 1e5),
                   check.conv.singular = "ignore", calc.derivs = FALSE)
ctl_nm <- lmerControl(optimizer = "Nelder_Mead", optCtrl = list(FtolAbs = 1e-14, FtolRel = 1e-14, maxfun = 1e6),
                      check.conv.singular = "ignore", calc.derivs = FALSE)

collinear <- function(X) {
  B <- crossprod(X)
  dd <- sqrt(pmax(diag(B), 0))
  if (any(!(dd > 0))) return(TRUE)
  ev <- eigen(B / outer(dd, dd), symmetric = TRUE, only.values = TRUE)$values
  min(ev) <= 1e-10 * max(ev)
}

fit_rows <- function(m, terms) {
  fixed <- setdiff(terms, "intercept")
  N <- nrow(m)
  G <- length(unique(m$patient))
  if (G < 3) stop(sprintf("only %d patient(s) with a complete pair (at least 3 needed)", G))
  X <- as.matrix(m[, fixed, drop = FALSE])
  if (fe) {
    dm <- function(v) v - ave(v, m$patient)
    Xd <- apply(X, 2, dm)
    if (!is.matrix(Xd)) Xd <- matrix(Xd, ncol = length(fixed))
    yd <- dm(m$lead)
    p <- ncol(Xd)
    if (N - G - p <= 0) stop("too few rows per patient for the within (fixed-effects) estimator")
    if (collinear(Xd)) stop("the model terms are collinear")
    Binv <- solve(crossprod(Xd))
    beta <- drop(Binv %*% crossprod(Xd, yd))
    e <- drop(yd - Xd %*% beta)
    S <- rowsum(Xd * e, m$patient)
    V <- G / (G - 1) * (Binv %*% crossprod(S) %*% Binv)
    return(list(estimate = beta, se = sqrt(pmax(diag(V), 0)), df = rep(G - 1, p), singular = FALSE,
                reml = NA_real_, notes = character(0)))
  }
  if (N <= length(terms)) stop("too few rows for the number of coefficients")
  if (collinear(cbind(1, X))) stop("the model terms are collinear")
  if (G >= N) stop("every patient contributes a single row")
  random <- if (opt$time_trend == "fixed_random") "(1 + time | patient)" else "(1 | patient)"
  f <- as.formula(paste("lead ~", paste(fixed, collapse = " + "), "+", random))
  m$patient <- factor(m$patient)
  notes <- character(0)
  keep_note <- function(w) {
    notes <<- c(notes, conditionMessage(w))
    invokeRestart("muffleWarning")
  }
  fit <- withCallingHandlers(lme4::lmer(f, data = m, REML = TRUE, control = ctl), warning = keep_note)
  if (opt$time_trend == "fixed_random") {
    # The random-slope REML surface often has several optima on the boundary (a zero intercept
    # or slope variance): start bobyqa and Nelder-Mead from several points (theta = lower
    # Cholesky factor, relative to sigma) and keep the fit with the lowest REML criterion,
    # i.e. the REML estimate, which the app's own solver also finds.
    starts <- list(list(ctl_nm, NULL), list(ctl, c(0.1, 0, 0.1)), list(ctl, c(0.3, 0, 0)),
                   list(ctl, c(0, 0, 0.3)), list(ctl_nm, c(0.1, 0, 0.1)))
    for (s in starts) {
      fit2 <- withCallingHandlers(lme4::lmer(f, data = m, REML = TRUE, control = s[[1]], start = s[[2]]),
                                  warning = keep_note)
      if (REMLcrit(fit2) < REMLcrit(fit)) fit <- fit2
    }
  }
  df <- rep(Inf, length(terms))
  if (opt$df_method == "satterthwaite") {
    # t tests with Satterthwaite's df (lmerTest) at the REML estimate found above
    cf <- summary(lmerTest::as_lmerModLmerTest(fit))$coefficients
    df <- unname(cf[, "df"])
  }
  list(estimate = unname(fixef(fit)), se = unname(sqrt(diag(as.matrix(vcov(fit))))), df = df,
       singular = isSingular(fit), reml = REMLcrit(fit), notes = unique(notes))
}

# ------------------------------------------------------------------ latent-centred stage 1 (section 15)
# RI-CLPM / ML-SEM dynamic panel model by full-information ML (lavaan, missing = "ml"); waves are the
# session numbers; the values are the standardized ones of section 2.
sem_wide <- function(d, vars) {
  waves <- sort(unique(d$session))
  ids <- unique(d$patient)
  w <- data.frame(row.names = seq_along(ids))
  for (v in vars) for (t in waves) {
    col <- rep(NA_real_, length(ids))
    sub <- d[d$session == t, ]
    col[match(sub$patient, ids)] <- sub[[v]]
    w[[paste0(v, "_", t)]] <- col
  }
  keep <- vapply(waves, function(t) any(!is.na(unlist(w[paste0(vars, "_", t)]))), logical(1))
  list(w = w, waves = waves[keep])
}
sem_fit <- function(syntax, w) {
  lavaan::lavaan(syntax, data = w, missing = "ml", meanstructure = TRUE, fixed.x = FALSE, int.ov.free = FALSE,
                 int.lv.free = FALSE, auto.var = FALSE, auto.cov.lv.x = FALSE, auto.cov.y = FALSE,
                 auto.fix.first = FALSE, auto.fix.single = FALSE)
}
riclpm_syntax <- function(W) {
  A <- paste0("alliance_", W); S <- paste0("symptoms_", W); n <- length(W)
  wa <- paste0("wa", seq_len(n)); ws <- paste0("ws", seq_len(n))
  m <- c(paste("ria =~", paste0("1*", A, collapse = " + ")), paste("ris =~", paste0("1*", S, collapse = " + ")),
         paste0(wa, " =~ 1*", A), paste0(ws, " =~ 1*", S),
         sprintf("%s ~ ar_alliance*%s + symptoms_to_alliance*%s", wa[-1], wa[-n], ws[-n]),
         sprintf("%s ~ ar_symptoms*%s + alliance_to_symptoms*%s", ws[-1], ws[-n], wa[-n]),
         "ria ~~ ria", "ris ~~ ris", "ria ~~ ris", "wa1 ~~ wa1", "ws1 ~~ ws1", "wa1 ~~ ws1",
         paste0(wa[-1], " ~~ ", wa[-1]), paste0(ws[-1], " ~~ ", ws[-1]), paste0(wa[-1], " ~~ ", ws[-1]),
         paste0(A, " ~~ 0*", A), paste0(S, " ~~ 0*", S), paste0(A, " ~ 1"), paste0(S, " ~ 1"))
  paste(m, collapse = "\n")
}
dpm_syntax <- function(W, y, x) {
  n <- length(W); Y <- paste0(y, "_", W); X <- paste0(x, "_", W[-n])
  m <- c(paste("eta =~", paste0("1*", Y[-1], collapse = " + ")),
         sprintf("%s ~ ar_%s*%s + %s_to_%s*%s", Y[-1], y, Y[-n], x, y, X))
  exo <- c("eta", Y[1], X)
  for (i in seq_along(exo)) for (j in i:length(exo)) m <- c(m, paste(exo[i], "~~", exo[j]))
  m <- c(m, paste0(Y[-1], " ~~ ", Y[-1]))
  if (n >= 4) for (t in 2:(n - 2)) for (j in (t + 1):(n - 1)) m <- c(m, paste(Y[t], "~~", X[j]))
  paste(c(m, paste0(c(Y, X), " ~ 1")), collapse = "\n")
}
sem_cache <- new.env()
sem_rows <- function(st, ps, direction) {
  y <- if (direction == "alliance_to_symptoms") "symptoms" else "alliance"
  x <- setdiff(c("alliance", "symptoms"), y)
  key <- paste(opt$stage1, if (opt$stage1 == "riclpm") "" else y)
  fit <- sem_cache[[paste(st, key)]]
  if (is.null(fit)) {
    sw <- sem_wide(ps$d, c("alliance", "symptoms"))
    if (length(sw$waves) < 3) stop("the SEM estimators need at least 3 sessions with data")
    if (sum(rowSums(!is.na(sw$w)) > 0) < 10) stop("the SEM estimators need at least 10 patients with data")
    w <- sw$w
    fit <- if (opt$stage1 == "riclpm") sem_fit(riclpm_syntax(sw$waves), w) else {
      W <- sw$waves; n <- length(W)
      w <- w[, c(paste0(y, "_", W), paste0(x, "_", W[-n]))]
      sem_fit(dpm_syntax(W, y, x), w[rowSums(!is.na(w)) > 0, ])
    }
    sem_cache[[paste(st, key)]] <- fit
  }
  pe <- lavaan::parameterEstimates(fit)
  get <- function(lab) pe[pe$label == lab, ][1, ]
  rows <- rbind(get(direction), get(paste0("ar_", y)))
  # standardized within cross-lag: lavaan std.all averaged over the waves, its SE by the delta method on
  # lavaan's covariance matrix of the standardized parameters (rows = free parameters of the table)
  ss <- lavaan::standardizedSolution(fit)
  pt <- lavaan::parTable(fit)
  idx <- pt$free[pt$op == "~" & pt$label == direction]
  vstd <- lavaan::lavInspect(fit, "vcov.std.all")
  std <- c(mean(ss$est.std[ss$op == "~" & ss$label == direction]), sqrt(mean(vstd[idx, idx, drop = FALSE])))
  data.frame(study = st, direction = direction, term = c("within", "prior_within", "within_std"),
             estimate = c(rows$est, std[1]), se = c(rows$se, std[2]), df = Inf, status = if (lavaan::lavInspect(fit, "converged")) "ok" else "not converged",
             n_patients = lavaan::lavInspect(fit, "ntotal"), n_pairs = NA_integer_, reml_criterion = NA_real_,
             notes = opt$stage1, stringsAsFactors = FALSE)
}

# ------------------------------------------------------------------ stage 1 over studies
studies <- sort(unique(raw$study), method = "radix")
per <- list()
os_rows <- setNames(lapply(opt$directions, function(d) list()), opt$directions)  # one-stage input
for (st in studies) {
  ps <- prepare_study(raw[raw$study == st, ])
  for (direction in opt$directions) {
    rec <- tryCatch({
      if (length(ps$problems)) stop(paste(ps$problems, collapse = "; "))
      if (opt$stage1 != "lmm") sem_rows(st, ps, direction) else {
        m <- model_rows(ps, direction)
        if (length(unique(m$patient)) >= 3) os_rows[[direction]][[st]] <- cbind(.study = st, m)
        terms <- study_terms(m)
        r <- fit_rows(m, terms)
        data.frame(study = st, direction = direction, term = unname(label[terms]), estimate = r$estimate,
                   se = r$se, df = r$df, status = if (r$singular) "singular" else "ok",
                   n_patients = length(unique(m$patient)), n_pairs = nrow(m), reml_criterion = r$reml,
                   notes = paste(r$notes, collapse = " "), stringsAsFactors = FALSE)
      }
    }, error = function(e) {
      data.frame(study = st, direction = direction, term = "within", estimate = NA_real_, se = NA_real_,
                 df = NA_real_, status = paste("failed:", conditionMessage(e)), n_patients = NA_integer_,
                 n_pairs = NA_integer_, reml_criterion = NA_real_, notes = "", stringsAsFactors = FALSE)
    })
    per[[length(per) + 1]] <- rec
  }
}
per <- do.call(rbind, per)

# ------------------------------------------------------------------ stage 2 (section 6)
pool_term <- function(term) {
  pooled <- list()
  for (direction in opt$directions) {
    w <- per[per$direction == direction & per$term == term & !startsWith(per$status, "failed") &
               is.finite(per$se) & per$se > 0, ]
    k <- nrow(w)
    if (k == 0) next
    if (k == 1) {
      est <- w$estimate; se <- w$se; tau2 <- 0
      ci <- est + c(-1, 1) * qnorm(0.975) * se
      pval <- 2 * pnorm(-abs(est / se))
    } else {
      r <- rma(yi = w$estimate, vi = w$se^2, method = opt$pooling_method, test = opt$test)
      est <- as.numeric(r$beta); se <- r$se; tau2 <- r$tau2
      ci <- c(r$ci.lb, r$ci.ub)
      pval <- r$pval
    }
    pooled[[length(pooled) + 1]] <- data.frame(direction = direction, estimate = est, se = se, tau2 = tau2,
                                               k = k, ci_low = ci[1], ci_high = ci[2], pvalue = pval)
  }
  if (length(pooled)) do.call(rbind, pooled) else
    data.frame(direction = character(0), estimate = numeric(0), se = numeric(0), tau2 = numeric(0))
}
pooled <- pool_term("within")
# the SEM estimators' standardized within cross-lag (std.all), pooled by the same stage 2
if (opt$stage1 != "lmm") pooled_std <- pool_term("within_std")

# ------------------------------------------------------------------ one-stage model (section 6b)
# All studies at once: study-specific intercepts and nuisance terms, one within effect with a
# random slope across studies, patient intercepts nested in study, REML, Satterthwaite df.
# Interactions with the within effect are split into within-study and across-study parts (deft).
one_stage <- list()
deft_rows <- list()
if (!fe) for (direction in opt$directions) {
  parts <- os_rows[[direction]]
  if (length(parts) < 2) next
  m <- do.call(rbind, parts)
  m$.study <- factor(m$.study)
  m$.pid <- factor(paste(m$.study, m$patient, sep = "\r"))
  first <- !duplicated(m$.pid)
  smean <- function(v) {
    s <- tapply(v[first], m$.study[first], mean)
    unname(s[as.character(m$.study)])
  }
  inter_cols <- c(if (opt$cross_level) "interaction", if (opt$outcome_moderator) "interaction_outcome",
                  unlist(lapply(covs, function(cv) cv$inters)))
  nuis <- setdiff(terms_all, c("intercept", "within", inter_cols))
  rhs <- c("0 + .study", if (length(nuis)) paste0(".study:", nuis), "within")
  deft <- list()
  add_deft <- function(name, v, rawv) {
    w_name <- paste0(".deft", length(deft) + 1, "_w")
    b_name <- paste0(".deft", length(deft) + 1, "_b")
    m[[w_name]] <<- m$within * (v - smean(v))
    b <- tapply(rawv[first], m$.study[first], mean)
    b <- b - mean(b)
    m[[b_name]] <<- m$within * unname(b[as.character(m$.study)])
    deft[[length(deft) + 1]] <<- c(term = name, w = w_name, b = b_name)
  }
  if (opt$cross_level) add_deft("interaction", m$between, m$between)
  if (opt$outcome_moderator) add_deft("interaction_outcome", m$prior_between, m$prior_between)
  for (k in seq_along(covs)) {
    cv <- covs[[k]]
    for (l in seq_along(cv$mains)) {
      v <- m[[cv$mains[l]]]
      rawv <- v
      if (cv$kind == "numeric") {
        rawv <- m[[paste0(".raw", k)]]
        if (opt$standardize) {
          dev <- rawv[first] - smean(rawv)[first]
          sdp <- sqrt(sum(dev^2) / max(sum(first) - nlevels(m$.study), 1))
          if (sdp > 0) rawv <- rawv / sdp
        }
      }
      add_deft(cv$inters[l], v, rawv)
    }
  }
  # a part the data cannot estimate (e.g. the same mean in every study) is left out
  dcols <- unlist(lapply(deft, function(dd) dd[c("w", "b")]))
  dcols <- dcols[vapply(dcols, function(cn) max(abs(m[[cn]])) > 1e-12, TRUE)]
  random <- if (opt$time_trend == "fixed_random") "(1 + time | .pid)" else "(1 | .pid)"
  f <- as.formula(paste("lead ~", paste(c(rhs, dcols), collapse = " + "), "+", random,
                        "+ (0 + within | .study)"))
  fit <- tryCatch(suppressMessages(suppressWarnings(lmerTest::lmer(f, data = m, REML = TRUE, control = ctl))),
                  error = function(e) NULL)
  if (is.null(fit)) next
  cf <- summary(fit)$coefficients
  vc <- as.data.frame(VarCorr(fit))
  tau <- vc$sdcor[vc$grp == ".study"]
  est <- cf["within", "Estimate"]; se <- cf["within", "Std. Error"]; dfw <- cf["within", "df"]
  q <- qt(0.975, dfw)
  one_stage[[length(one_stage) + 1]] <- data.frame(
    direction = direction, estimate = est, se = se, df = dfw, ci_low = est - q * se, ci_high = est + q * se,
    pvalue = cf["within", "Pr(>|t|)"], tau = tau, pi_low = est - q * sqrt(se^2 + tau^2),
    pi_high = est + q * sqrt(se^2 + tau^2), k = nlevels(m$.study), n_patients = nlevels(m$.pid))
  for (dd in deft) for (part in c("w", "b")) if (dd[part] %in% rownames(cf)) {
    deft_rows[[length(deft_rows) + 1]] <- data.frame(
      direction = direction, term = unname(label[dd[["term"]]]), part = if (part == "w") "within-study" else "across-study",
      estimate = cf[dd[part], "Estimate"], se = cf[dd[part], "Std. Error"], df = cf[dd[part], "df"])
  }
}
one_stage <- if (length(one_stage)) do.call(rbind, one_stage) else data.frame()
write.csv(one_stage, "one_stage_estimates.csv", row.names = FALSE, fileEncoding = "UTF-8")
if (length(deft_rows)) write.csv(do.call(rbind, deft_rows), "one_stage_interactions.csv", row.names = FALSE,
                                 fileEncoding = "UTF-8")

write.csv(per, "per_study_estimates.csv", row.names = FALSE, fileEncoding = "UTF-8")
write.csv(pooled, "pooled_estimates.csv", row.names = FALSE, fileEncoding = "UTF-8")
if (opt$stage1 != "lmm") write.csv(pooled_std, "pooled_standardized_estimates.csv", row.names = FALSE,
                                   fileEncoding = "UTF-8")

# ------------------------------------------------------------------ summary
cat("Lagged two-stage analysis of", data_file, "\n")
opt_show <- opt[setdiff(names(opt), "covariate_kinds")]
opt_text <- mapply(function(v, nm) if (is.null(v)) (if (nm == "sessions") "all" else "none") else
  paste(v, collapse = ","), opt_show, names(opt_show))
cat("Options:", paste(names(opt_show), opt_text, sep = "=", collapse = "; "), "\n\n")
cat("Stage 1, 'within' coefficient per study:\n")
show <- per[per$term == "within", c("study", "direction", "estimate", "se", "status")]
print(format(show, digits = 4), row.names = FALSE)
cat("\nStage 2, pooled 'within' effect (", opt$pooling_method, ", ", opt$test, "):\n", sep = "")
for (i in seq_len(nrow(pooled))) {
  p <- pooled[i, ]
  cat(sprintf("  %s: %.4f (SE %.4f, 95%% CI %.4f to %.4f), tau2 = %.4f, k = %d\n",
              p$direction, p$estimate, p$se, p$ci_low, p$ci_high, p$tau2, p$k))
}
cat("\nOne-stage model (all patients at once; t test with Satterthwaite df):\n")
for (i in seq_len(nrow(one_stage))) {
  p <- one_stage[i, ]
  cat(sprintf("  %s: %.4f (SE %.4f, df %.1f, 95%% CI %.4f to %.4f), tau = %.4f, k = %d\n",
              p$direction, p$estimate, p$se, p$df, p$ci_low, p$ci_high, p$tau, p$k))
}
cat("\nWrote per_study_estimates.csv, pooled_estimates.csv and one_stage_estimates.csv\n")
'''
