"""Mutual information (MI) between predicted and true halo masses, estimated with GMM-MI.

GMM-MI (Piras et al. 2023, Mach. Learn.: Sci. Technol. 4, 025006) fits a Gaussian mixture to
the joint sample and chooses the number of components by cross-validation. It then refits the
mixture on bootstrap resamples and integrates the MI of each fit by Monte Carlo. The estimate is the mean over
the bootstrap fits and its uncertainty their standard deviation, both in nats.

The true log masses are transformed before the fit, as in footnote 1 of Lucie-Smith et al.
(2024, PRD 109, 063524): they fill a bounded interval and take few distinct values at the high
mass end (a halo contributes one value for all its particles), and a Gaussian mixture describes
neither hard edges nor spikes well. :func:`transform_halo_mass` spreads each distinct value
over an interval smaller than the gaps to its neighbours, rescales to (-1, 1) and applies
arctanh. The truth can be read back from the result, so the MI is unchanged while the density
estimate becomes easier.
"""

import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from halo_ml.logs import log_duration
from halo_ml.provenance import provenance

logger = logging.getLogger(__name__)

# Fewer points than this make the cross-validated component choice meaningless.
MIN_SAMPLES = 20
# Added to the diagonal of every component's covariance (data of unit variance). GMM-MI's
# default of 1e-15 lets a component collapse onto a few tied points, which stops the fit.
# With 1e-6, the MI of a bivariate Gaussian with rho = 0.9 drops by about 4e-6 nats, because
# rho becomes rho / (1 + 1e-6).
REG_COVAR = 1e-6


class MutualInformationError(ValueError):
    """Invalid input to an MI estimate; the message names the file or value and the fix."""


def estimate_mi(x, y, n_bootstrap=50, seed=0):
    """Estimate the MI between two continuous variables with GMM-MI.

    Parameters
    ----------
    x, y : array-like, shape (n,)
        Paired samples; both must be finite.
    n_bootstrap : int
        Number of bootstrap refits (GMM-MI's ``n_bootstrap``); at least 2.
    seed : int
        Seed of the permutation applied to the rows before the fit. GMM-MI 0.8.2 seeds its
        bootstrap draws with the refit index, so without the permutation every call on the
        same data would draw the same resamples.

    Returns
    -------
    mi, mi_err : float
        Mean and standard deviation of the MI over the bootstrap refits, in nats.
    """
    from gmm_mi.mi import EstimateMI
    from gmm_mi.param_holders import GMMFitParamHolder, MIDistParamHolder

    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise MutualInformationError(f"MI needs paired samples, but x has {x.size} values and y has {y.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise MutualInformationError("MI input contains NaN or infinite values; drop those rows first")
    if x.size < MIN_SAMPLES:
        raise MutualInformationError(f"MI needs at least {MIN_SAMPLES} samples, got {x.size}")
    if n_bootstrap < 2:
        raise MutualInformationError(f"n_bootstrap is {n_bootstrap}; a bootstrap error needs at least 2 refits")

    if np.std(x) == 0 or np.std(y) == 0:
        raise MutualInformationError("MI input is constant; the MI with a constant is undefined")

    order = np.random.default_rng(seed).permutation(x.size)
    # MI is invariant under affine maps of each variable; unit variance makes REG_COVAR a
    # fixed fraction of the data's scale.
    samples = np.column_stack([_standardise(x[order]), _standardise(y[order])])
    # A fresh estimator for every dataset: an EstimateMI instance keeps the fitted
    # components and cross-validation results of the previous call.
    estimator = EstimateMI(gmm_fit_params=GMMFitParamHolder(reg_covar=REG_COVAR))
    try:
        mi, mi_err = estimator.fit_estimate(samples, mi_dist_params=MIDistParamHolder(n_bootstrap=n_bootstrap))
    except ValueError as error:
        raise MutualInformationError(f"GMM-MI failed on {x.size} samples: {error}") from error
    return float(mi), float(mi_err)


def _standardise(values):
    return (values - values.mean()) / values.std()


def transform_halo_mass(log_mass, noise="uniform", seed=0):
    """Map true log halo masses to an unbounded variable that a Gaussian mixture fits well.

    Each distinct value v gets its own interval, reaching 0.49 of the way to the neighbouring
    distinct value on each side; the end values borrow the gap of their one neighbour. Every
    particle with that value moves to a random point of the interval, drawn uniformly or from a
    Gaussian with a standard deviation of half the interval's half-width, truncated to it. The
    intervals do not overlap, so the true value is a function of the noisy one and the MI with
    any prediction is unchanged. The union of intervals is then mapped linearly onto (-1, 1) and
    passed through arctanh.

    Parameters
    ----------
    log_mass : array-like, shape (n,)
        True log10(M / Msun).
    noise : {"uniform", "gaussian"}
        Distribution of the added noise.
    seed : int
        Seed of the noise.

    Returns
    -------
    numpy.ndarray, shape (n,)
        The transformed values (dimensionless).
    """
    log_mass = np.asarray(log_mass, dtype=np.float64).ravel()
    if not np.all(np.isfinite(log_mass)):
        raise MutualInformationError("true log masses contain NaN or infinite values; drop particles without a halo first")
    distinct, index = np.unique(log_mass, return_inverse=True)
    if distinct.size < 2:
        raise MutualInformationError("true log masses take a single value; the MI with a constant is undefined")

    gaps = np.diff(distinct)
    below = 0.49 * np.concatenate([gaps[:1], gaps])[index]
    above = 0.49 * np.concatenate([gaps, gaps[-1:]])[index]

    rng = np.random.default_rng(seed)
    if noise == "uniform":
        fraction = rng.uniform(-1.0, 1.0, size=log_mass.size)
    elif noise == "gaussian":
        fraction = np.clip(rng.normal(0.0, 0.5, size=log_mass.size), -1.0, 1.0)
    else:
        raise MutualInformationError(f"noise is {noise!r}; use 'uniform' or 'gaussian'")
    noisy = log_mass + np.where(fraction < 0, fraction * below, fraction * above)

    low = distinct[0] - 0.49 * gaps[0]
    high = distinct[-1] + 0.49 * gaps[-1]
    rescaled = 2.0 * (noisy - low) / (high - low) - 1.0
    # A draw at an interval's outer edge would map to +-1 and an infinite arctanh.
    limit = np.nextafter(1.0, 0.0)
    return np.arctanh(np.clip(rescaled, -limit, limit))


def mi_of_predictions(log_mass_true, log_mass_pred, n_bootstrap=50, seed=0):
    """Estimate the MI between predicted and (transformed) true log masses.

    Returns
    -------
    dict
        ``mi`` and ``mi_err`` in nats, and ``n`` (number of particles).
    """
    truth = transform_halo_mass(log_mass_true, seed=seed)
    mi, mi_err = estimate_mi(log_mass_pred, truth, n_bootstrap=n_bootstrap, seed=seed)
    return {"mi": mi, "mi_err": mi_err, "n": int(np.size(truth))}


def radial_bins(edges):
    """Return ``[(label, r_min, r_max), ...]`` for the r/r200m bins (-inf, e0], (e0, e1], (e1, inf)."""
    edges = [float(edge) for edge in edges]
    if sorted(edges) != edges or len(set(edges)) != len(edges):
        raise MutualInformationError(f"analysis.radial_edges {edges} must increase strictly")
    bounds = [-np.inf, *edges, np.inf]
    labels = [f"r/r200m <= {edges[0]:g}"]
    labels += [f"{lo:g} < r/r200m <= {hi:g}" for lo, hi in zip(edges[:-1], edges[1:])]
    labels.append(f"r/r200m > {edges[-1]:g}")
    return [(label, bounds[i], bounds[i + 1]) for i, label in enumerate(labels)]


def noise_reference(log_mass_true, noise_dex, n_bootstrap=50, seed=0):
    """Compute the MI of mock predictions made of the truth plus Gaussian noise.

    These are the reference lines of Fig. 4 of Lucie-Smith et al. (2024): a model whose
    log-mass errors are Gaussian with standard deviation ``sigma`` dex has this MI.

    Parameters
    ----------
    log_mass_true : array-like
        True log10(M / Msun).
    noise_dex : sequence of float
        Standard deviations of the noise, in dex.

    Returns
    -------
    list of dict
        One row per noise level: ``noise_dex``, ``mi``, ``mi_err`` (nats), ``n``.
    """
    log_mass_true = np.asarray(log_mass_true, dtype=np.float64)
    rows = []
    for index, sigma_dex in enumerate(noise_dex):
        rng = np.random.default_rng([seed, index])
        mock = log_mass_true + rng.normal(0.0, sigma_dex, size=log_mass_true.size)
        with log_duration(logger, f"MI of truth + {sigma_dex} dex Gaussian noise"):
            result = mi_of_predictions(log_mass_true, mock, n_bootstrap=n_bootstrap, seed=seed)
        rows.append({"noise_dex": float(sigma_dex), **result})
    return rows


def summarise_seeds(frame, value="mi", error="mi_err", by="variant"):
    """Combine per-seed MI rows into one row per group.

    Returns
    -------
    pandas.DataFrame
        Columns ``<by>``, ``n_seeds``, ``mi_mean`` (mean over seeds), ``mi_seed_std`` (standard
        deviation over seeds, ddof=1, NaN for one seed) and ``mi_err_mean`` (mean bootstrap error).
    """
    grouped = frame.groupby(by, sort=False)
    return pd.DataFrame({
        "n_seeds": grouped[value].count(),
        "mi_mean": grouped[value].mean(),
        "mi_seed_std": grouped[value].std(ddof=1),
        "mi_err_mean": grouped[error].mean(),
    }).reset_index()


def read_predictions(path):
    """Read a predictions CSV and check its columns and values."""
    required = ["simulation", "voxel", "log_mass_true", "log_mass_pred", "r_over_r200m"]
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise MutualInformationError(f"predictions file {path} not found; run the predict rule first") from None
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise MutualInformationError(f"predictions file {path} lacks column(s) {missing}; expected {required}")
    for column in ("log_mass_true", "log_mass_pred"):
        if not np.all(np.isfinite(frame[column])):
            raise MutualInformationError(f"predictions file {path} has NaN or infinite values in '{column}'")
    return frame


def run_mutual_information(predictions_path, output_path, analysis, variant, seed):
    """Write the MI of one model (overall and per r/r200m bin) as JSON.

    Parameters
    ----------
    predictions_path : path-like
        ``predictions/<variant>/seed<k>.csv``.
    output_path : path-like
        ``mi/<variant>/seed<k>.json``.
    analysis : dict
        The ``analysis`` configuration section (``n_bootstrap``, ``radial_edges``).
    variant : str
    seed : int
        Training seed of the model; it also seeds the MI estimate.
    """
    frame = read_predictions(predictions_path)
    n_bootstrap = analysis["n_bootstrap"]
    with log_duration(logger, f"MI of {variant} seed {seed} ({len(frame)} particles)"):
        overall = mi_of_predictions(frame["log_mass_true"], frame["log_mass_pred"], n_bootstrap, seed)

    radial = []
    for label, r_min, r_max in radial_bins(analysis["radial_edges"]):
        subset = frame[(frame["r_over_r200m"] > r_min) & (frame["r_over_r200m"] <= r_max)]
        row = {"bin": label, "r_min": _finite_or_none(r_min), "r_max": _finite_or_none(r_max), "n": len(subset)}
        if len(subset) < MIN_SAMPLES or subset["log_mass_true"].nunique() < 2:
            logger.warning("r/r200m bin '%s' of %s seed %s has %d particles; its MI is left empty",
                           label, variant, seed, len(subset))
            row.update(mi=None, mi_err=None)
        else:
            with log_duration(logger, f"MI of {variant} seed {seed}, {label}"):
                row.update(mi_of_predictions(subset["log_mass_true"], subset["log_mass_pred"], n_bootstrap, seed))
        radial.append(row)

    record = {
        "variant": variant,
        "seed": int(seed),
        **overall,
        "radial": radial,
        "provenance": provenance(inputs=[predictions_path], seeds={"mi": int(seed)}, parameters=analysis),
    }
    write_json_atomic(output_path, record)
    return record


def run_noise_reference(samples_path, output_path, analysis):
    """Write the MI of truth + Gaussian noise for each ``analysis.noise_dex`` as CSV."""
    samples = pd.read_csv(samples_path)
    if "log_mass" not in samples.columns:
        raise MutualInformationError(f"samples file {samples_path} lacks the column 'log_mass'")
    rows = noise_reference(samples["log_mass"].to_numpy(), analysis["noise_dex"],
                           n_bootstrap=analysis["n_bootstrap"], seed=analysis.get("seed", 0))
    record = provenance(inputs=[samples_path], seeds={"noise": analysis.get("seed", 0)}, parameters=analysis)
    write_csv_atomic(pd.DataFrame(rows), output_path, record)


def write_json_atomic(path, record):
    """Write ``record`` as JSON through a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(record, indent=2, sort_keys=True, default=_json_default) + "\n")
    os.replace(temporary, path)


def write_csv_atomic(frame, path, record):
    """Write ``frame`` as CSV and ``record`` as ``<path>.provenance.json``, both atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path.with_name(path.name + ".provenance.json"), record)
    temporary = path.with_name(f".{path.name}.tmp")
    frame.to_csv(temporary, index=False)
    os.replace(temporary, path)


def _finite_or_none(value):
    return float(value) if np.isfinite(value) else None


def _json_default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
