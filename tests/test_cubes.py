"""Tests of halo_ml.cubes: periodic cutting, shell averaging, the z0 reader and input checks."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
import zarr

from halo_ml.cubes import (
    CubeError, GridCubeSource, ShellAverage, StoredCubeSource, open_cube_source, shell_edges, shell_index,
)
from halo_ml.final_subboxes import write_subbox_store
from synthetic_store import make_store

INPUTS = {"cube_voxels": 7, "shells": 3, "shell_radius_min_voxels": 1.0}
GATHERS = ["numpy", "torch"]


def samples_table(simulation, voxels, n):
    i, j, k = np.unravel_index(np.asarray(voxels), (n, n, n))
    return pd.DataFrame({"simulation": simulation, "voxel": voxels, "i": i, "j": j, "k": k})


def rolled_cube(grid, centre, cube_voxels):
    half = (cube_voxels - 1) // 2
    shift = [half - index for index in centre]
    return np.roll(grid, shift, axis=(0, 1, 2))[:cube_voxels, :cube_voxels, :cube_voxels]


@pytest.mark.parametrize("gather", GATHERS)
def test_cut_matches_numpy_roll_at_edges(gather):
    n, c = 16, 9
    grid = np.random.default_rng(1).standard_normal((n, n, n)).astype(np.float32)
    centres = np.array([[0, 0, 0], [15, 15, 15], [0, 15, 3], [7, 1, 14], [8, 8, 8]])
    source = GridCubeSource([grid], np.zeros(len(centres), int), centres, c, gather=gather)

    cubes = source(np.arange(len(centres)))

    assert cubes.shape == (len(centres), 1, c, c, c)
    assert cubes.dtype == torch.float32
    for row, centre in enumerate(centres):
        np.testing.assert_array_equal(cubes[row, 0].numpy(), rolled_cube(grid, centre, c))


@pytest.mark.parametrize("gather", GATHERS)
def test_cut_picks_each_sample_simulation(gather):
    n, c = 8, 5
    grids = [np.full((n, n, n), value, dtype=np.float32) for value in (1.0, 2.0, 3.0)]
    centres = np.array([[1, 2, 3]] * 4)
    source = GridCubeSource(grids, [2, 0, 1, 2], centres, c, gather=gather)

    cubes = source(torch.tensor([3, 1, 0]))

    # rows 3, 1, 0 belong to simulations 2, 0, 2, whose grids contain 3, 1, 3
    assert cubes[:, 0, 0, 0, 0].tolist() == [3.0, 1.0, 3.0]


def test_cube_covering_whole_grid():
    n = c = 7
    grid = np.arange(n**3, dtype=np.float32).reshape(n, n, n)
    source = GridCubeSource([grid], [0], [[3, 3, 3]], c)
    np.testing.assert_array_equal(source([0])[0, 0].numpy(), grid)


def test_shell_edges_of_paper_cube():
    edges = shell_edges(75, 20, 2.0)
    np.testing.assert_allclose(edges[:21], np.linspace(2.0, 37.5, 21))
    np.testing.assert_allclose(np.diff(edges), 1.775)
    corner = math.sqrt(3) * 37
    assert edges[-2] <= corner < edges[-1]


def test_shell_index_inner_ball_and_bounds():
    index = shell_index(75, 20, 2.0)
    offsets = np.arange(75) - 37
    squared = offsets[:, None, None] ** 2 + offsets[None, :, None] ** 2 + offsets[None, None, :] ** 2
    # r < 2 contains r in {0, 1, sqrt 2, sqrt 3}: 1 + 6 + 12 + 8 voxels.
    assert np.count_nonzero(index == 0) == 27
    np.testing.assert_array_equal(index == 0, squared < 4)
    assert index[37, 37, 37] == 0
    assert index[37, 37, 39] == 1  # r = 2 starts the first shell
    assert index.max() == len(shell_edges(75, 20, 2.0)) - 1


def test_shell_average_one_value_per_shell():
    c, shells, radius_min = 11, 4, 1.5
    cubes = torch.randn(3, c, c, c, dtype=torch.float32)
    averaged = ShellAverage(c, shells, radius_min)(cubes).numpy()

    edges = shell_edges(c, shells, radius_min)
    offsets = np.arange(c) - (c - 1) / 2
    radius = np.sqrt(offsets[:, None, None] ** 2 + offsets[None, :, None] ** 2 + offsets[None, None, :] ** 2)
    regions = [radius < edges[0]] + [(radius >= low) & (radius < high) for low, high in zip(edges[:-1], edges[1:])]
    covered = np.zeros(radius.shape, dtype=int)
    for mask in regions:
        covered += mask
        if not mask.any():
            continue
        for batch in range(3):
            values = averaged[batch][mask]
            np.testing.assert_allclose(values, values[0])
            np.testing.assert_allclose(values[0], cubes[batch].numpy()[mask].mean(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(covered, 1)


def test_shell_average_keeps_radial_field():
    c, shells, radius_min = 15, 5, 2.0
    index = shell_index(c, shells, radius_min)
    profile = np.random.default_rng(3).standard_normal(index.max() + 1).astype(np.float32)
    field = torch.from_numpy(profile[index])[None]

    np.testing.assert_allclose(ShellAverage(c, shells, radius_min)(field).numpy(), field.numpy(), rtol=1e-5)


def test_averaged_variant_is_shell_average_of_raw(tmp_path):
    n = 16
    store = make_store(tmp_path / "a.zarr", n=n)
    samples = samples_table("a", [0, 100, 4095], n)
    raw = open_cube_source("raw", samples, {"a": store}, None, INPUTS, "cpu")
    averaged = open_cube_source("averaged", samples, {"a": store}, None, INPUTS, "cpu")

    expected = ShellAverage(7, 3, 1.0)(raw([0, 1, 2])[:, 0])
    np.testing.assert_allclose(averaged([0, 1, 2])[:, 0].numpy(), expected.numpy(), rtol=1e-6)


def test_potential_variant_reads_potential(tmp_path):
    n = 16
    potential = np.random.default_rng(5).standard_normal((n, n, n))
    store = make_store(tmp_path / "a.zarr", n=n, potential=potential)
    source = open_cube_source("potential", samples_table("a", [17], n), {"a": store}, None, INPUTS, "cpu")

    cube = source([0])[0, 0].numpy()
    np.testing.assert_allclose(cube, rolled_cube(potential, (0, 1, 1), 7).astype(np.float32))
    assert len(source) == 1
    assert source.cube_voxels == 7


@pytest.mark.parametrize("in_memory_limit_bytes", [0, 2**20], ids=["per-batch", "in-memory"])
def test_z0_source_reads_rows_in_sample_order(tmp_path, in_memory_limit_bytes):
    c = 5
    density = np.arange(4 * c**3, dtype=np.float32).reshape(4, c, c, c)
    record = {"test": True}
    write_subbox_store(tmp_path / "chunk0.zarr", density[:2], np.array(["a", "b"]), np.array([10, 11]), record, 2.0)
    write_subbox_store(tmp_path / "chunk1.zarr", density[2:], np.array(["b", "a"]), np.array([12, 13]), record, 2.0)
    samples = pd.DataFrame({"simulation": ["a", "b", "b", "a"], "voxel": [13, 11, 12, 10]})

    source = StoredCubeSource(samples, [tmp_path / "chunk0.zarr", tmp_path / "chunk1.zarr"], c,
                              in_memory_limit_bytes=in_memory_limit_bytes)
    cubes = source(np.array([2, 0, 3, 1]))

    assert cubes.shape == (4, 1, c, c, c)
    expected_rows = [2, 3, 0, 1]  # sample rows 2, 0, 3, 1 live in density rows 2, 3, 0, 1
    for position, row in enumerate(expected_rows):
        np.testing.assert_array_equal(cubes[position, 0].numpy(), density[row])


def test_z0_source_missing_sample(tmp_path):
    c = 5
    write_subbox_store(tmp_path / "chunk0.zarr", np.zeros((1, c, c, c), np.float32), np.array(["a"]),
                       np.array([10]), {}, 2.0)
    samples = pd.DataFrame({"simulation": ["a", "a"], "voxel": [10, 99]})
    with pytest.raises(CubeError, match="voxel 99.*cut_final_subboxes"):
        open_cube_source("z0", samples, {}, [tmp_path / "chunk0.zarr"], {"cube_voxels": c}, "cpu")
    with pytest.raises(CubeError, match="inputs.cube_voxels is 7"):
        open_cube_source("z0", samples[:1], {}, [tmp_path / "chunk0.zarr"], {"cube_voxels": 7}, "cpu")


def test_store_shape_mismatch_names_store(tmp_path):
    store = make_store(tmp_path / "bad.zarr", n=16)
    zarr.open_group(store, mode="r+").attrs["particles_per_side"] = 32
    with pytest.raises(CubeError, match=r"bad\.zarr.*particles_per_side is 32"):
        open_cube_source("raw", samples_table("bad", [0], 16), {"bad": store}, None, INPUTS, "cpu")


def test_cube_larger_than_grid(tmp_path):
    store = make_store(tmp_path / "small.zarr", n=8)
    with pytest.raises(CubeError, match=r"inputs.cube_voxels is 9, larger than the grid of store .*small\.zarr"):
        open_cube_source("raw", samples_table("small", [0], 8), {"small": store}, None, {"cube_voxels": 9}, "cpu")


def test_even_cube_rejected(tmp_path):
    store = make_store(tmp_path / "a.zarr", n=8)
    with pytest.raises(CubeError, match="inputs.cube_voxels is 6.*odd"):
        open_cube_source("raw", samples_table("a", [0], 8), {"a": store}, None, {"cube_voxels": 6}, "cpu")


def test_stores_of_different_resolution(tmp_path):
    stores = {"a": make_store(tmp_path / "a.zarr", n=8), "b": make_store(tmp_path / "b.zarr", n=16)}
    samples = pd.concat([samples_table("a", [0], 8), samples_table("b", [0], 16)])
    with pytest.raises(CubeError, match=r"b\.zarr has 16 particles per side but store .*a\.zarr has 8"):
        open_cube_source("raw", samples, stores, None, {"cube_voxels": 5}, "cpu")


def test_missing_store_and_unknown_variant(tmp_path):
    samples = samples_table("a", [0], 8)
    with pytest.raises(CubeError, match="no store given for simulation"):
        open_cube_source("raw", samples, {}, None, {"cube_voxels": 5}, "cpu")
    with pytest.raises(CubeError, match="not found"):
        open_cube_source("raw", samples, {"a": tmp_path / "absent.zarr"}, None, {"cube_voxels": 5}, "cpu")
    with pytest.raises(CubeError, match="unknown variant 'smooth'"):
        open_cube_source("smooth", samples, {}, None, {"cube_voxels": 5}, "cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_cut_and_average_match_cpu(tmp_path):
    n = 16
    store = make_store(tmp_path / "a.zarr", n=n)
    samples = samples_table("a", np.arange(0, n**3, 97), n)
    for variant in ("raw", "averaged"):
        cpu = open_cube_source(variant, samples, {"a": store}, None, INPUTS, "cpu")
        cuda = open_cube_source(variant, samples, {"a": store}, None, INPUTS, "cuda")
        rows = np.arange(len(samples))[::-1].copy()
        on_device = cuda(torch.as_tensor(rows, device="cuda"))
        assert on_device.device.type == "cuda"
        np.testing.assert_allclose(on_device.cpu().numpy(), cpu(rows).numpy(), rtol=1e-5, atol=1e-6)
