"""Tests of the GMM-MI wrapper, the truth transform and the noise reference lines."""

import json

import numpy as np
import pandas as pd
import pytest

from halo_ml import mutual_information as mi_module
from halo_ml.mutual_information import (
    MutualInformationError, estimate_mi, noise_reference, radial_bins, run_mutual_information,
    summarise_seeds, transform_halo_mass,
)


def test_gmm_mi_runs_with_installed_scikit_learn():
    # gmm-mi 0.8.2 calls BaseEstimator._validate_data, which scikit-learn 1.6 removed.
    import sklearn
    from sklearn.base import BaseEstimator

    assert hasattr(BaseEstimator, "_validate_data"), (
        f"scikit-learn {sklearn.__version__} lacks BaseEstimator._validate_data, which gmm-mi 0.8.2 "
        "needs; install scikit-learn<1.6")
    samples = np.random.default_rng(0).normal(size=(200, 2))
    mi, mi_err = estimate_mi(samples[:, 0], samples[:, 1], n_bootstrap=2)
    assert np.isfinite(mi)
    assert np.isfinite(mi_err)


@pytest.mark.parametrize("rho", [0.3, 0.6, 0.9])
def test_estimate_mi_bivariate_gaussian(rho):
    rng = np.random.default_rng(42)
    samples = rng.multivariate_normal([0.0, 0.0], [[1.0, rho], [rho, 1.0]], size=2000)
    mi, mi_err = estimate_mi(samples[:, 0], samples[:, 1], n_bootstrap=8, seed=1)
    expected = -0.5 * np.log(1.0 - rho ** 2)
    assert mi_err > 0
    assert abs(mi - expected) < 3 * mi_err


def test_estimate_mi_rejects_nan():
    x = np.linspace(0, 1, 50)
    y = x.copy()
    y[3] = np.nan
    with pytest.raises(MutualInformationError, match="NaN"):
        estimate_mi(x, y, n_bootstrap=2)


def test_transform_keeps_order_of_distinct_values():
    log_mass = np.repeat([11.0, 11.3, 12.0, 13.4], [5, 3, 2, 1])
    transformed = transform_halo_mass(log_mass, seed=3)
    assert np.all(np.isfinite(transformed))
    for lower, upper in [(11.0, 11.3), (11.3, 12.0), (12.0, 13.4)]:
        assert transformed[log_mass == lower].max() < transformed[log_mass == upper].min()


def test_transform_breaks_ties():
    log_mass = np.repeat([11.5, 12.5], 10)
    for noise in ("uniform", "gaussian"):
        assert np.unique(transform_halo_mass(log_mass, noise=noise)).size == log_mass.size


def test_transform_rejects_constant():
    with pytest.raises(MutualInformationError, match="single value"):
        transform_halo_mass(np.full(10, 12.0))


def test_noise_reference_decreases_with_noise():
    rng = np.random.default_rng(5)
    log_mass = rng.uniform(11.0, 13.4, 600)
    rows = noise_reference(log_mass, [1.5, 1.0, 0.5], n_bootstrap=3, seed=0)
    assert [row["noise_dex"] for row in rows] == [1.5, 1.0, 0.5]
    values = [row["mi"] for row in rows]
    assert values[0] < values[1] < values[2]


def test_radial_bins_labels_and_bounds():
    bins = radial_bins([0.3, 0.6])
    assert [label for label, _, _ in bins] == ["r/r200m <= 0.3", "0.3 < r/r200m <= 0.6", "r/r200m > 0.6"]
    assert bins[0][1] == -np.inf
    assert bins[1][1:] == (0.3, 0.6)
    assert bins[2][2] == np.inf


def test_summarise_seeds_mean_and_spread():
    frame = pd.DataFrame({"variant": ["raw", "raw", "averaged"], "mi": [0.3, 0.5, 0.2], "mi_err": [0.01, 0.03, 0.02]})
    summary = summarise_seeds(frame).set_index("variant")
    assert summary.loc["raw", "mi_mean"] == pytest.approx(0.4)
    assert summary.loc["raw", "mi_seed_std"] == pytest.approx(np.std([0.3, 0.5], ddof=1))
    assert summary.loc["raw", "mi_err_mean"] == pytest.approx(0.02)
    assert np.isnan(summary.loc["averaged", "mi_seed_std"])


def test_run_mutual_information_writes_radial_split(tmp_path, monkeypatch):
    # The GMM fit is replaced by the Gaussian formula on the Pearson correlation, so the test
    # checks which particles reach each estimate, not GMM-MI itself.
    def gaussian_mi(x, y, n_bootstrap=50, seed=0):
        rho = np.corrcoef(x, y)[0, 1]
        return -0.5 * np.log(1 - rho ** 2), 0.01

    monkeypatch.setattr(mi_module, "estimate_mi", gaussian_mi)
    rng = np.random.default_rng(0)
    truth = rng.uniform(11, 13.4, 300)
    frame = pd.DataFrame({"simulation": "s", "voxel": np.arange(300), "log_mass_true": truth,
                          "log_mass_pred": truth + rng.normal(0, 0.5, 300),
                          "r_over_r200m": np.repeat([0.1, 0.5, 0.9], 100)})
    frame.to_csv(tmp_path / "seed0.csv", index=False)
    analysis = {"n_bootstrap": 2, "radial_edges": [0.3, 0.6]}
    run_mutual_information(tmp_path / "seed0.csv", tmp_path / "out.json", analysis, "raw", 0)

    record = json.loads((tmp_path / "out.json").read_text())
    assert record["n"] == 300
    assert [row["n"] for row in record["radial"]] == [100, 100, 100]
    assert all(row["mi"] > 0 for row in record["radial"])
    assert record["provenance"]["parameters"] == analysis
