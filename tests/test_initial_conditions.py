"""Tests of the demo suite's initial conditions: growth factors, power spectrum, lattice, seeds."""

import numpy as np
import pytest

from halo_ml import initial_conditions, particle_mesh

COSMOLOGY = {"omega_m": 0.279, "omega_lambda": 0.721, "omega_b": 0.045,
             "sigma_8": 0.817, "h": 0.701, "n_s": 0.96}


@pytest.fixture(scope="module")
def growth():
    return particle_mesh.GrowthHistory(COSMOLOGY["omega_m"], COSMOLOGY["omega_lambda"])


@pytest.mark.parametrize("redshift", [99.0, 9.0, 1.0, 0.5, 0.0])
def test_linear_growth_matches_colossus(growth, redshift):
    model = initial_conditions.colossus_cosmology(COSMOLOGY)
    expected = model.growthFactor(redshift)
    assert growth.d1(1.0 / (1.0 + redshift)) == pytest.approx(expected, rel=1e-4)


def test_growth_rates_in_matter_domination(growth):
    # At a = 1e-3 Lambda is negligible: Einstein-de Sitter gives f1 = 1, f2 = 2, D2 = -3/7 D1^2.
    a = 1e-3
    assert growth.f1(a) == pytest.approx(1.0, abs=1e-6)
    assert growth.f2(a) == pytest.approx(2.0, abs=1e-6)
    assert growth.d2(a) / growth.d1(a) ** 2 == pytest.approx(-3.0 / 7.0, rel=1e-6)


def test_linear_growth_rate_matches_colossus(growth):
    model = initial_conditions.colossus_cosmology(COSMOLOGY)
    for redshift in (9.0, 1.0, 0.0):
        a = 1.0 / (1.0 + redshift)
        # colossus returns dD/dz with D(0) = 1; dlnD/dlna = -(1 + z) dD/dz / D.
        derivative = model.growthFactor(redshift, derivative=1)
        expected = -(1.0 + redshift) * derivative / model.growthFactor(redshift)
        assert growth.f1(a) == pytest.approx(expected, rel=1e-3)


def test_power_spectrum_is_sigma8_normalised():
    # Independent check of the input spectrum: integrate P(k) W^2(kR) k^2 dk / (2 pi^2) for R = 8.
    k = np.logspace(-4, 2, 20000)
    power = initial_conditions.linear_power_spectrum(k, COSMOLOGY)
    x = 8.0 * k
    window = 3.0 * (np.sin(x) - x * np.cos(x)) / x**3
    sigma_squared = np.trapezoid(power * window**2 * k**3, np.log(k)) / (2.0 * np.pi**2)
    assert np.sqrt(sigma_squared) == pytest.approx(COSMOLOGY["sigma_8"], rel=2e-3)


def test_particle_power_spectrum_matches_linear(growth):
    n, box = 64, 20.0
    a = 0.01
    fundamental = 2.0 * np.pi / box
    # Bins up to half the particle Nyquist frequency pi n / L = 32 k_f; the lowest bin is wide
    # so that six realisations average its sample variance down to about 2%.
    edges = np.array([1.0, 6.0, 11.0, 16.0]) * fundamental
    measured, expected = [], []
    for seed in range(6):
        positions, _ = initial_conditions.initial_conditions(n, box, COSMOLOGY, seed, a, growth, threads=2)
        k, power = particle_mesh.power_spectrum_modes(positions, box, 2 * n, threads=2)
        linear = initial_conditions.linear_power_spectrum(k, COSMOLOGY) * growth.d1(a) ** 2
        measured.append(particle_mesh.bin_modes(k, power, edges)[0])
        expected.append(particle_mesh.bin_modes(k, linear, edges)[0])
    ratio = np.mean(measured, axis=0) / np.mean(expected, axis=0)
    for bin_ratio in ratio:
        assert bin_ratio == pytest.approx(1.0, abs=0.05)


def test_particle_ids_follow_lattice():
    n, box = 8, 4.0
    ids = initial_conditions.particle_ids(n)
    lattice = initial_conditions.lattice_positions(n, box)
    index = ids.astype(np.int64) - 1
    i, j, k = index // (n * n), (index // n) % n, index % n
    expected = np.stack([i, j, k], axis=1) * (box / n)
    np.testing.assert_array_equal(lattice, expected)
    assert ids.dtype == np.uint32
    assert ids[0] == 1


def test_displacements_are_small_at_z99(growth):
    n, box = 32, 20.0
    positions, _ = initial_conditions.initial_conditions(n, box, COSMOLOGY, 7, 0.01, growth)
    offset = positions - initial_conditions.lattice_positions(n, box)
    offset -= box * np.round(offset / box)
    spacing = box / n
    # GADGET-4's N-GenIC run of the same cosmology, box and grid moves no particle farther than
    # 0.43 spacings by z = 99; a few times that would mean a unit or growth error.
    assert np.abs(offset).max() < spacing
    assert np.all((positions >= 0) & (positions < box))


def test_momenta_follow_linear_growth_rate(growth):
    # At z = 99 the 2LPT term is below 1% of the displacement, so p = a^2 E f1 (x - q).
    n, box, a = 32, 20.0, 0.01
    positions, momenta = initial_conditions.initial_conditions(n, box, COSMOLOGY, 3, a, growth)
    offset = positions - initial_conditions.lattice_positions(n, box)
    offset -= box * np.round(offset / box)
    expected = a**2 * growth.hubble(a) * growth.f1(a) * offset
    assert np.std(momenta - expected) < 0.01 * np.std(expected)


def test_same_seed_same_field():
    first = initial_conditions.gaussian_random_field(16, 10.0, COSMOLOGY, 42, threads=1)
    second = initial_conditions.gaussian_random_field(16, 10.0, COSMOLOGY, 42, threads=2)
    other = initial_conditions.gaussian_random_field(16, 10.0, COSMOLOGY, 43)
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(first, other)


def test_field_has_zero_mean():
    field = initial_conditions.gaussian_random_field(16, 10.0, COSMOLOGY, 1)
    assert field[0, 0, 0] == 0
