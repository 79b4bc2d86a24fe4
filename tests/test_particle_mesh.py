"""Tests of the particle-mesh integrator: CIC assignment, forces, FastPM linear growth."""

import numpy as np
import pytest

from halo_ml import initial_conditions, particle_mesh

COSMOLOGY = {"omega_m": 0.279, "omega_lambda": 0.721, "omega_b": 0.045,
             "sigma_8": 0.817, "h": 0.701, "n_s": 0.96}


@pytest.fixture(scope="module")
def growth():
    return particle_mesh.GrowthHistory(COSMOLOGY["omega_m"], COSMOLOGY["omega_lambda"])


def test_cic_conserves_mass():
    rng = np.random.default_rng(0)
    positions = rng.uniform(-5.0, 15.0, size=(1000, 3))
    weights = rng.uniform(0.5, 2.0, size=1000)
    mesh = particle_mesh.paint_cic(positions, 8, 10.0, weights=weights)
    assert mesh.sum() == pytest.approx(weights.sum(), rel=1e-6)
    assert mesh.min() >= 0


def test_cic_particle_on_node_fills_one_cell():
    mesh = particle_mesh.paint_cic(np.array([[2.5, 5.0, 7.5]]), 4, 10.0)
    assert mesh[1, 2, 3] == pytest.approx(1.0)
    assert np.count_nonzero(mesh) == 1


def test_cic_wraps_across_boundary():
    # Halfway between the last node (x = 9) and the first (x = 0 = 10): half the mass on each.
    mesh = particle_mesh.paint_cic(np.array([[9.5, 0.0, 0.0]]), 10, 10.0)
    assert mesh[9, 0, 0] == pytest.approx(0.5)
    assert mesh[0, 0, 0] == pytest.approx(0.5)


def test_cic_readout_of_linear_field_is_exact():
    # CIC interpolation reproduces a field that is linear between nodes.
    mesh_size, box = 16, 16.0
    x = np.arange(mesh_size, dtype=float)
    mesh = np.broadcast_to(x[None, :, None], (mesh_size,) * 3).copy()
    positions = np.array([[3.3, 4.25, 9.9], [0.0, 7.5, 1.0]])
    values = particle_mesh.readout_cic(mesh, positions, box)
    np.testing.assert_allclose(values, [4.25, 7.5], rtol=1e-6)


def test_force_of_plane_wave_matches_linear_theory():
    # A lattice displaced by Psi = eps sin(k q) along x has delta = -d(Psi)/dx, and the
    # Poisson equation gives F = 1.5 Omega_m Psi exactly for one plane wave.
    n, box = 32, 100.0
    k = 2.0 * np.pi / box
    lattice = initial_conditions.lattice_positions(n, box)
    displacement = np.zeros_like(lattice)
    displacement[:, 0] = 0.05 * (box / n) * np.sin(k * lattice[:, 0])
    solver = particle_mesh.ForceSolver(2 * n, box, COSMOLOGY["omega_m"])
    forces = solver.accelerations(lattice + displacement)
    expected = 1.5 * COSMOLOGY["omega_m"] * displacement[:, 0]
    amplitude = np.abs(expected).max()
    # The plane-wave component of the force; the rest is the lattice's discreteness, a few
    # percent on a mesh twice as fine as the lattice.
    wave = np.sin(k * lattice[:, 0])
    assert (forces[:, 0] @ wave) / (expected @ wave) == pytest.approx(1.0, abs=0.01)
    assert np.abs(forces[:, 0] - expected).max() < 0.05 * amplitude
    assert np.abs(forces[:, 1:]).max() < 1e-3 * amplitude


def test_kick_and_drift_are_exact_on_linear_trajectory(growth):
    # One large KDK step moves a Zel'dovich particle to where linear theory puts it.
    a0, a1 = 0.01, 1.0
    a_half = 0.5 * (a0 + a1)
    psi = 1.0
    momentum = growth.momentum_growth(a0) * psi
    force = 1.5 * COSMOLOGY["omega_m"] * growth.d1(a0) * psi
    momentum += growth.kick_factor(a0, a_half, a0) * force
    position = growth.d1(a0) * psi + growth.drift_factor(a0, a1, a_half) * momentum
    assert position == pytest.approx(growth.d1(a1) * psi, rel=1e-9)
    force = 1.5 * COSMOLOGY["omega_m"] * growth.d1(a1) * psi
    momentum += growth.kick_factor(a_half, a1, a1) * force
    assert momentum == pytest.approx(growth.momentum_growth(a1) * psi, rel=1e-9)


def test_large_scale_growth_matches_linear(growth):
    # A box of 1 Gpc/h keeps k < 0.025 h/Mpc linear at z = 0; the z=0 to z=99 power ratio of the
    # same realisation cancels sample variance, leaving the integrator's growth.
    n, box, steps = 64, 1000.0, 10
    positions, momenta = initial_conditions.initial_conditions(n, box, COSMOLOGY, 11, 0.01, growth, threads=2)
    fundamental = 2.0 * np.pi / box
    edges = np.array([1.0, 2.0, 3.0, 4.0]) * fundamental
    k, initial_power = particle_mesh.power_spectrum_modes(positions, box, 2 * n, threads=2)
    initial, _ = particle_mesh.bin_modes(k, initial_power, edges)

    positions, momenta = particle_mesh.evolve(positions, momenta, growth, box, 2 * n, 0.01, 1.0, steps, threads=2)
    k, final_power = particle_mesh.power_spectrum_modes(positions, box, 2 * n, threads=2)
    final, _ = particle_mesh.bin_modes(k, final_power, edges)

    model = initial_conditions.colossus_cosmology(COSMOLOGY)
    expected = (model.growthFactor(0.0) / model.growthFactor(99.0)) ** 2
    for ratio in final / initial:
        assert ratio == pytest.approx(expected, rel=0.05)


def test_evolution_does_not_depend_on_threads(growth):
    n, box = 16, 50.0
    results = []
    for threads in (1, 2):
        positions, momenta = initial_conditions.initial_conditions(n, box, COSMOLOGY, 5, 0.01, growth)
        results.append(particle_mesh.evolve(positions, momenta, growth, box, 2 * n, 0.01, 1.0, 3,
                                            threads=threads))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_time_steps_uniform_in_scale_factor():
    steps = particle_mesh.time_steps(0.01, 1.0, 10)
    assert len(steps) == 11
    assert steps[0] == 0.01
    assert steps[-1] == 1.0
    np.testing.assert_allclose(np.diff(steps), 0.099)
