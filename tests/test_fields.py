"""Density and potential fields: Poisson solve against analytic modes, SPH against cloud-in-cell."""

from pathlib import Path

import numpy as np
import pytest

from halo_ml.fields import cic_density_contrast, cic_interpolate, solve_poisson, sph_density_contrast
from halo_ml.snapshots import load_snapshot

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gadget4"
needs_data = pytest.mark.skipif(not DATA.exists(), reason=f"GADGET-4 sample data not found at {DATA}")


@pytest.mark.parametrize("mode", [(1, 0, 0), (0, 3, 0), (2, -1, 5)])
def test_poisson_single_mode_analytic(mode):
    n, box = 32, 50.0
    x = (np.indices((n, n, n)).T * box / n).T
    k = 2.0 * np.pi * np.array(mode) / box
    phase = np.tensordot(k, x, axes=1) + 0.3
    delta = np.cos(phase)

    phi = solve_poisson(delta, box)

    expected = -np.cos(phase) / np.dot(k, k)
    assert phi.dtype == np.float32
    np.testing.assert_allclose(phi, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def test_poisson_drops_mean():
    delta = np.full((8, 8, 8), 2.5)
    np.testing.assert_array_equal(solve_poisson(delta, 10.0), 0.0)


def test_poisson_rejects_non_cubic_grid():
    with pytest.raises(ValueError, match="cubic grid"):
        solve_poisson(np.zeros((4, 4, 8)), 1.0)


def test_cic_uniform_lattice_is_zero():
    n, box = 8, 10.0
    centres = (np.indices((n, n, n)).reshape(3, -1).T + 0.5) * box / n
    np.testing.assert_allclose(cic_density_contrast(centres, box, n), 0.0, atol=1e-12)


def test_cic_particle_split_between_cells():
    # One particle on the face between cells 0 and 1 along x (and on cell centres along y, z),
    # with 7 more on distant cell centres: the first gives half its mass to each of two cells.
    box, n = 8.0, 8
    positions = np.array([[1.0, 0.5, 0.5]] + [[0.5 + a, 4.5, 4.5] for a in range(7)])
    delta = cic_density_contrast(positions, box, n)
    mean = 8 / n ** 3
    assert delta[0, 0, 0] == pytest.approx(0.5 / mean - 1.0)
    assert delta[1, 0, 0] == pytest.approx(0.5 / mean - 1.0)
    assert delta[3, 4, 4] == pytest.approx(1.0 / mean - 1.0)
    assert cic_interpolate(delta, positions[1:2], box)[0] == pytest.approx(1.0 / mean - 1.0)


@needs_data
def test_sph_density_on_gadget4_sample():
    snapshot = load_snapshot(DATA / "L20_N64_s1" / "snapshot_000.hdf5")
    positions = snapshot.positions()

    delta_sph = sph_density_contrast(snapshot.sim, n_neighbours=32, threads=2)
    grid = cic_density_contrast(positions, snapshot.box_size_mpc_h, 64)
    delta_cic = cic_interpolate(grid, positions, snapshot.box_size_mpc_h)

    assert delta_sph.shape == (64 ** 3,)
    assert abs(delta_sph.mean()) < 0.01
    assert np.corrcoef(delta_sph, delta_cic)[0, 1] > 0.9
