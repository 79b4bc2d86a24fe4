"""Particle -> Lagrangian voxel mapping: exactness, shuffled files, wrapping and its errors."""

import logging

import numpy as np
import pytest

from halo_ml.lagrangian import (
    LagrangianMappingError, map_to_voxels, particles_per_side, scatter_to_grid, wrap_positions,
)
from synthetic_gadget import lattice_positions

N = 16
BOX = 20.0


def displaced_lattice(offset=0.0, amplitude=0.3, seed=1):
    """Lattice sites plus a known displacement of up to ``amplitude`` spacings per axis, wrapped."""
    rng = np.random.default_rng(seed)
    sites = lattice_positions(N, BOX, offset)
    return (sites + rng.uniform(-amplitude, amplitude, sites.shape) * BOX / N) % BOX


@pytest.mark.parametrize("offset", [0.0, 0.5])
@pytest.mark.parametrize("ids_follow_lattice", [True, False])
def test_mapping_exact_with_shuffled_order(offset, ids_follow_lattice):
    rng = np.random.default_rng(2)
    positions = displaced_lattice(offset)
    true_voxel = np.arange(N ** 3)
    ids = true_voxel + 1 if ids_follow_lattice else rng.permutation(N ** 3) + 7
    order = rng.permutation(N ** 3)

    voxel, description = map_to_voxels(positions[order], ids[order], BOX, "synthetic")

    np.testing.assert_array_equal(voxel, true_voxel[order])
    assert ("particle IDs" in description) == ids_follow_lattice
    assert f"offset {offset}" in description


def test_mapping_ids_with_first_axis_fastest():
    positions = displaced_lattice()
    i, j, k = np.unravel_index(np.arange(N ** 3), (N, N, N))
    ids = (k * N + j) * N + i

    voxel, description = map_to_voxels(positions, ids, BOX, "synthetic")

    np.testing.assert_array_equal(voxel, np.arange(N ** 3))
    assert "i fastest" in description


def test_mapping_ids_contradicting_positions_fall_back():
    # IDs that number a lattice, but not this one: the positions must win.
    rng = np.random.default_rng(3)
    positions = displaced_lattice(amplitude=0.2)
    ids = rng.permutation(N ** 3)

    voxel, description = map_to_voxels(positions, ids, BOX, "synthetic")

    np.testing.assert_array_equal(voxel, np.arange(N ** 3))
    assert description.startswith("nearest lattice site")


def test_mapping_not_one_to_one_raises():
    # Displacements beyond half a spacing and IDs unrelated to the lattice: voxels collide.
    rng = np.random.default_rng(4)
    positions = displaced_lattice(amplitude=0.9)
    ids = rng.permutation(N ** 3)

    with pytest.raises(LagrangianMappingError, match=r"snap_x\.hdf5 do not map one to one .* voxel\(s\) hold no particle"):
        map_to_voxels(positions, ids, BOX, "snap_x.hdf5")


def test_particle_count_not_cube_raises():
    assert particles_per_side(64 ** 3, "s") == 64
    with pytest.raises(LagrangianMappingError, match=r"snap_y has 4097 particles, which is not a cube"):
        particles_per_side(4097, "snap_y")


def test_wrap_positions_within_one_box(caplog):
    positions = np.array([[-1.0, 5.0, 21.0], [3.0, 4.0, 5.0], [39.5, -19.0, 0.0]])

    with caplog.at_level(logging.INFO, logger="halo_ml.lagrangian"):
        wrapped = wrap_positions(positions.copy(), BOX, "snap_z")

    np.testing.assert_allclose(wrapped, [[19.0, 5.0, 1.0], [3.0, 4.0, 5.0], [19.5, 1.0, 0.0]])
    assert "wrapped 2 particle(s) of snap_z" in caplog.text


def test_wrap_positions_far_outside_raises():
    positions = np.array([[1.0, 2.0, 3.0], [45.0, 1.0, 1.0]])
    with pytest.raises(LagrangianMappingError, match=r"snap_w has 1 particle\(s\) more than one box length outside"):
        wrap_positions(positions, BOX, "snap_w")


def test_scatter_to_grid_places_values():
    voxel = np.array([5, 0, 7])
    grid = scatter_to_grid(np.array([1.0, 2.0, 3.0]), voxel, 2)
    assert grid.shape == (2, 2, 2)
    assert grid[0, 0, 0] == 2.0
    assert grid[1, 0, 1] == 1.0
    assert grid[1, 1, 1] == 3.0
    assert np.isnan(grid[0, 1, 0])
