"""Tests of the EPS and Sheth-Tormen baselines on fields and trajectories with known results."""

import numpy as np
import pytest
from scipy.integrate import quad

from halo_ml.analytic import (
    analytic_masses, colossus_cosmology, eps_barrier, first_upcrossing_mass, mean_matter_density,
    st_barrier,
)

COSMOLOGY = {"omega_m": 0.279, "omega_lambda": 0.721, "omega_b": 0.045, "sigma_8": 0.817, "h": 0.701, "n_s": 0.96}


def growth_factor(z, omega_m):
    # Linear growth of a flat LCDM universe, D(a) proportional to H(a) * int da / (a H)^3.
    def hubble(a):
        return np.sqrt(omega_m / a ** 3 + 1.0 - omega_m)

    def unnormalised(a):
        return hubble(a) * quad(lambda x: 1.0 / (x * hubble(x)) ** 3, 0.0, a)[0]

    return unnormalised(1.0 / (1.0 + z)) / unnormalised(1.0)


def test_growth_and_density_match_direct_formulas():
    cosmo = colossus_cosmology(COSMOLOGY)
    assert cosmo.growthFactor(99.0) == pytest.approx(growth_factor(99.0, 0.279), rel=1e-3)
    rho_crit_msun_h2_mpc3 = 2.77536627e11
    expected = 0.279 * rho_crit_msun_h2_mpc3 / 0.701
    assert mean_matter_density(cosmo) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("excess", [1.0 + 1e-5, 1.0 - 1e-5])
def test_eps_top_hat_overdensity_at_barrier(excess):
    n, box = 32, 20.0
    cell = box / n
    radius_voxels = 3.5
    centre = (n // 2, n // 2, n // 2)
    i, j, k = np.indices((n, n, n))
    inside = (i - centre[0]) ** 2 + (j - centre[1]) ** 2 + (k - centre[2]) ** 2 <= radius_voxels ** 2
    barrier = 1.686 * growth_factor(99.0, 0.279)

    # Zero-mean field whose mean inside the sphere is `excess` times the EPS barrier.
    amplitude = excess * barrier / (1.0 - inside.sum() / n ** 3)
    delta = np.where(inside, amplitude, 0.0)
    delta -= delta.mean()

    rho_m = 0.279 * 2.77536627e11 / 0.701
    sphere_mass = 4.0 / 3.0 * np.pi * rho_m * (radius_voxels * cell) ** 3
    log_sphere_mass = np.log10(sphere_mass)
    # Scales spaced by 0.05 dex with one of them exactly the sphere's mass.
    log_masses = log_sphere_mass + 0.05 * np.arange(-20, 21)
    analysis = {"analytic_mass_scales": log_masses.size, "analytic_log_mass_min": log_masses[0],
                "analytic_log_mass_max": log_masses[-1]}
    voxel = (centre[0] * n + centre[1]) * n + centre[2]
    predicted = analytic_masses(delta, [voxel], box, COSMOLOGY, 99.0, analysis)["log_mass_eps"][0]

    if excess > 1:
        assert predicted == pytest.approx(log_sphere_mass, abs=1e-9)
    else:
        # Just below the barrier at the sphere's scale: only smaller spheres, which average
        # the same overdensity over fewer voxels, can be above it, or none at all.
        assert np.isnan(predicted) or predicted < log_sphere_mass


def test_st_predicts_lower_mass_than_eps():
    cosmo = colossus_cosmology(COSMOLOGY)
    growth = float(cosmo.growthFactor(99.0))
    masses = np.logspace(13.0, 10.5, 30)
    radii = (3.0 * masses / (4.0 * np.pi * mean_matter_density(cosmo))) ** (1.0 / 3.0)
    sigma_z = cosmo.sigma(radii, 0.0) * growth
    # A trajectory rising towards small scales like sigma, crossing the EPS barrier midway.
    trajectory = 1.5 * eps_barrier(growth) * sigma_z / sigma_z[15]
    eps = first_upcrossing_mass(trajectory[None, :], masses, eps_barrier(growth))[0]
    st = first_upcrossing_mass(trajectory[None, :], masses, st_barrier(sigma_z, growth))[0]
    assert np.isfinite(eps)
    assert np.isfinite(st)
    assert st < eps


def test_st_barrier_formula():
    growth = 0.013
    sigma = np.array([0.005, 0.02])
    delta_sc = 1.686 * growth
    expected = np.sqrt(0.707) * delta_sc * (1 + 0.485 * (sigma ** 2 / (0.707 * delta_sc ** 2)) ** 0.615)
    np.testing.assert_allclose(st_barrier(sigma, growth), expected, rtol=1e-12)


def test_trajectory_below_barrier_has_no_prediction():
    masses = np.logspace(14, 11, 10)
    trajectories = np.array([np.linspace(0.1, 0.9, 10), np.linspace(0.1, 1.2, 10)])
    predicted = first_upcrossing_mass(trajectories, masses, 1.0)
    assert np.isnan(predicted[0])
    assert predicted[1] == pytest.approx(np.log10(masses[np.argmax(trajectories[1] >= 1.0)]))


def test_mean_of_field_ignored():
    rng = np.random.default_rng(2)
    delta = rng.normal(0.0, 0.03, (16, 16, 16))
    delta -= delta.mean()
    analysis = {"analytic_mass_scales": 12, "analytic_log_mass_min": 10.5, "analytic_log_mass_max": 13.5}
    voxels = rng.choice(16 ** 3, 50, replace=False)
    centred = analytic_masses(delta, voxels, 10.0, COSMOLOGY, 99.0, analysis)
    offset = analytic_masses(delta + 0.16, voxels, 10.0, COSMOLOGY, 99.0, analysis)
    for key in ("log_mass_eps", "log_mass_st"):
        np.testing.assert_allclose(offset[key], centred[key], equal_nan=True)
        assert np.isnan(centred[key]).any()
        assert np.isfinite(centred[key]).any()
