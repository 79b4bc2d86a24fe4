"""Tests of the demo suite's halo finder: FoF groups, unbinding, spherical overdensities."""

from pathlib import Path

import numpy as np
import pytest

from halo_ml import friends_of_friends, initial_conditions, particle_mesh

REAL_RUN = Path(__file__).resolve().parents[2] / "shared" / "data" / "gadget4" / "L20_N64_s1"

COSMOLOGY = {"omega_m": 0.279, "omega_lambda": 0.721, "omega_b": 0.045,
             "sigma_8": 0.817, "h": 0.701, "n_s": 0.96}


def make_clump(rng, centre, n_particles, radius, box):
    offsets = rng.normal(scale=radius, size=(n_particles, 3))
    return np.mod(centre + offsets, box)


@pytest.fixture
def clumps():
    """Three dense clumps (one across the x = 0 face), one too small, and a sparse background."""
    rng = np.random.default_rng(1)
    box = 100.0
    parts = [
        make_clump(rng, np.array([50.0, 50.0, 50.0]), 60, 0.3, box),
        make_clump(rng, np.array([0.0, 20.0, 70.0]), 45, 0.3, box),  # straddles the boundary
        make_clump(rng, np.array([80.0, 80.0, 10.0]), 45, 0.3, box),  # ties with the previous
        make_clump(rng, np.array([20.0, 80.0, 30.0]), 10, 0.3, box),  # below min_particles
    ]
    # Background on a lattice of spacing 10, far beyond the linking length from everything.
    grid = np.arange(5.0, 100.0, 10.0)
    background = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), axis=-1).reshape(-1, 3)
    positions = np.concatenate(parts + [background])
    labels = np.concatenate([np.full(len(part), number) for number, part in enumerate(parts)]
                            + [np.full(len(background), -1)])
    return positions, labels, box


def test_fof_finds_hand_made_clumps(clumps):
    positions, labels, box = clumps
    groups = friends_of_friends.friends_of_friends(positions, box, linking_length=2.0, min_particles=20)
    # Largest first; the two clumps of 45 keep the order of their first particles.
    for clump, expected_group in ((0, 0), (1, 1), (2, 2)):
        members = np.flatnonzero(groups == expected_group)
        np.testing.assert_array_equal(members, np.flatnonzero(labels == clump))
    assert np.all(groups[labels == 3] == -1)
    assert np.all(groups[labels == -1] == -1)
    assert groups.max() == 2


def test_fof_links_across_periodic_boundary():
    box = 10.0
    positions = np.array([[0.05, 5.0, 5.0], [9.95, 5.0, 5.0], [9.85, 5.0, 5.0], [5.0, 5.0, 5.0]])
    groups = friends_of_friends.friends_of_friends(positions, box, linking_length=0.2, min_particles=2)
    np.testing.assert_array_equal(groups, [0, 0, 0, -1])


def test_fof_accepts_coordinate_equal_to_box():
    groups = friends_of_friends.friends_of_friends(
        np.array([[10.0, 1.0, 1.0], [0.1, 1.0, 1.0]]), 10.0, linking_length=0.2, min_particles=2)
    np.testing.assert_array_equal(groups, [0, 0])


def test_fof_chain_is_one_group():
    # Friends of friends: a chain of spacing 0.9 b is one group even though its ends are far apart.
    positions = np.zeros((30, 3)) + 5.0
    positions[:, 0] = np.arange(30) * 0.18
    groups = friends_of_friends.friends_of_friends(positions, 50.0, linking_length=0.2, min_particles=2)
    assert np.all(groups == 0)


def test_shrinking_sphere_finds_density_peak_across_boundary():
    rng = np.random.default_rng(3)
    box = 20.0
    dense = make_clump(rng, np.array([19.9, 10.0, 10.0]), 400, 0.1, box)
    halo = make_clump(rng, np.array([19.9, 10.0, 10.0]), 400, 1.0, box)
    centre = friends_of_friends.shrinking_sphere_centre(np.concatenate([halo, dense]), box)
    offset = friends_of_friends.periodic_offsets(centre[None, :], np.array([19.9, 10.0, 10.0]), box)
    # The last sphere contains about 20 particles of the dense clump (sigma 0.1 per axis), so the
    # centre is good to about 0.1; a wrong periodic image would be off by up to the box size.
    assert np.linalg.norm(offset) < 0.1


def test_spherical_potential_matches_shell_theorem():
    # Particles on two shells: inside the inner shell the potential is -G (M1 / r1 + M2 / r2).
    n_shell = 500
    radii = np.concatenate([np.full(n_shell, 1.0), np.full(n_shell, 3.0), [0.5]])
    mass = 0.1
    potential = friends_of_friends.spherical_potential(radii, mass, softening=1e-6)
    g = friends_of_friends.GRAVITY_INTERNAL
    assert potential[-1] == pytest.approx(-g * (n_shell * mass / 1.0 + n_shell * mass / 3.0), rel=1e-9)
    # Outside both shells the whole mass acts from the centre.
    outer = friends_of_friends.spherical_potential(np.append(radii, 10.0), mass, softening=1e-6)[-1]
    assert outer == pytest.approx(-g * (2 * n_shell + 1) * mass / 10.0, rel=1e-9)


def test_unbinding_removes_fast_particles():
    rng = np.random.default_rng(5)
    n_particles = 2000
    mass = 0.01  # 1e10 Msun/h per particle: 2e11 Msun/h in total
    offsets = rng.normal(scale=50.0, size=(n_particles, 3))  # kpc/h
    radii = np.linalg.norm(offsets, axis=1)
    potential = friends_of_friends.spherical_potential(radii, mass, softening=1.0)
    escape = np.sqrt(-2.0 * potential)
    directions = rng.normal(size=(n_particles, 3))
    directions /= np.linalg.norm(directions, axis=1)[:, None]
    # A tenth of the particles move at three times the local escape speed, the rest at a tenth.
    fast = np.arange(n_particles) < n_particles // 10
    speed = np.where(fast, 3.0, 0.1) * escape
    velocities = directions * speed[:, None]
    bound, energy = friends_of_friends.unbind(offsets, velocities, mass, softening=1.0, scale_factor=1.0)
    np.testing.assert_array_equal(bound, ~fast)
    assert np.all(energy[~fast] < 0)


def test_overdensity_radius_of_isothermal_profile():
    # rho = A / r^2 has M(<r) = 4 pi A r and mean density 3 A / r^2, which equals the threshold
    # at r = sqrt(3 A / threshold).
    amplitude, mass = 2.0, 0.05
    count = np.arange(1, 40001)
    distances = count * mass / (4.0 * np.pi * amplitude)
    threshold = 3.0 * amplitude / 40.0**2
    radius, enclosed = friends_of_friends.overdensity_radius(distances, mass, threshold)
    assert radius == pytest.approx(40.0, rel=1e-3)
    assert enclosed == pytest.approx(4.0 * np.pi * amplitude * 40.0, rel=3e-3)


def test_critical_density_matches_gadget4_mass_table():
    # GADGET-4 writes a particle mass of 0.23625352e10 Msun/h for 64^3 particles of
    # Omega_m = 0.279 in 20 Mpc/h (MassTable of its snapshots).
    mass = 0.279 * friends_of_friends.critical_density_internal() * 20000.0**3 / 64**3
    assert mass == pytest.approx(0.23625352, rel=1e-7)


def test_virial_overdensity_in_einstein_de_sitter():
    assert friends_of_friends.virial_overdensity(1.0) == pytest.approx(18.0 * np.pi**2)


@pytest.mark.skipif(not REAL_RUN.exists(), reason=f"real GADGET-4 run not found at {REAL_RUN}")
def test_group_properties_match_subfind_on_gadget4_run():
    # Measure GADGET-4's own FoF groups with this module and compare with what SUBFIND wrote.
    h5py = pytest.importorskip("h5py")
    with h5py.File(REAL_RUN / "snapshot_001.hdf5", "r") as snapshot, \
            h5py.File(REAL_RUN / "fof_subhalo_tab_001.hdf5", "r") as catalogue:
        positions = snapshot["PartType1/Coordinates"][:].astype(np.float64)
        velocities = snapshot["PartType1/Velocities"][:].astype(np.float64)
        mass = snapshot["Header"].attrs["MassTable"][1]
        box = snapshot["Header"].attrs["BoxSize"]
        lengths = catalogue["Group/GroupLen"][:]
        subfind_position = catalogue["Group/GroupPos"][:]
        subfind = {name: catalogue[f"Group/Group_M_{name}"][:] for name in ("Mean200", "Crit200", "TopHat200")}
    # The snapshot is in group order, so group g is the next lengths[g] particles.
    group_of_particle = np.full(len(positions), -1)
    group_of_particle[:lengths.sum()] = np.repeat(np.arange(len(lengths)), lengths)
    growth = particle_mesh.GrowthHistory(COSMOLOGY["omega_m"], COSMOLOGY["omega_lambda"])
    groups = friends_of_friends.measure_groups(
        group_of_particle, positions, velocities, mass, box, COSMOLOGY["omega_m"],
        growth.omega_m_of_a(1.0), 1.0, softening=9.0, min_bound_particles=20)

    for name, subfind_mass in subfind.items():
        # SUBFIND writes 0 for the few groups without a subhalo; those are not compared.
        measured = subfind_mass > 0
        ours = np.array([group.spherical_overdensity[name][1] for group in groups])
        ratio = ours[measured] / subfind_mass[measured]
        assert np.median(ratio) == pytest.approx(1.0, abs=0.02), name
        assert np.percentile(np.abs(ratio - 1.0), 80) < 0.1, name
    offsets = friends_of_friends.periodic_offsets(
        np.array([group.position for group in groups]), subfind_position, box)
    # Centres agree to a fraction of the 312 kpc/h interparticle spacing.
    assert np.median(np.linalg.norm(offsets, axis=1)) < 20.0


@pytest.mark.slow
def test_mass_function_matches_sheth_tormen():
    from colossus.lss import mass_function

    n, box, steps = 128, 100.0, 10
    growth = particle_mesh.GrowthHistory(COSMOLOGY["omega_m"], COSMOLOGY["omega_lambda"])
    positions, momenta = initial_conditions.initial_conditions(n, box, COSMOLOGY, 7, 0.01, growth, threads=2)
    positions, _ = particle_mesh.evolve(positions, momenta, growth, box, 2 * n, 0.01, 1.0, steps, threads=2)
    del momenta
    groups = friends_of_friends.friends_of_friends(positions, box, 0.2 * box / n, min_particles=100)
    sizes = np.bincount(groups[groups >= 0])
    # Particle mass in Msun/h, the unit of colossus's mass function.
    particle_mass = COSMOLOGY["omega_m"] * friends_of_friends.critical_density_internal() * (1000.0 * box) ** 3 / n**3 * 1e10

    initial_conditions.colossus_cosmology(COSMOLOGY)
    edges = np.log10(100 * particle_mass) + np.arange(0.0, 2.01, 0.25)
    log_mass = np.linspace(edges[0], edges[-1], 2001)
    density = mass_function.massFunction(10**log_mass, 0.0, mdef="fof", model="sheth99", q_out="dndlnM")
    cumulative = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(log_mass))])
    expected = np.diff(np.interp(edges, log_mass, cumulative)) * np.log(10.0) * box**3
    observed, _ = np.histogram(np.log10(sizes * particle_mass), bins=edges)

    # Bins with at least 10 expected halos; the tolerance is one Poisson sigma plus 30%.
    compared = expected >= 10
    assert compared.sum() >= 5
    for count, model in zip(observed[compared], expected[compared]):
        assert abs(count - model) <= np.sqrt(model) + 0.3 * model
