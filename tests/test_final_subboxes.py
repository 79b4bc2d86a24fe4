"""Tests of halo_ml.final_subboxes: SPH-rendered z=0 cubes on small synthetic stores."""

import numpy as np
import pandas as pd
import pytest
import zarr

from halo_ml.final_subboxes import FinalDensityField, SubboxError, chunk_rows, render_final_subboxes
from synthetic_store import PARTICLE_MASS_MSUN, make_store

N = 16
BOX = 20.0
CLUMP_PARTICLES = 1024
CLUMP_SIGMA = 0.12


def clump_positions(centre, seed=0):
    """Put a Gaussian clump of CLUMP_PARTICLES at ``centre`` and the other particles far away."""
    rng = np.random.default_rng(seed)
    clump = centre + rng.normal(0.0, CLUMP_SIGMA, (CLUMP_PARTICLES, 3))
    # The rest fill a 5 Mpc/h cube half a box away, out of reach of a cube around the clump.
    rest = np.asarray(centre) + BOX / 2 + rng.uniform(-2.5, 2.5, (N**3 - CLUMP_PARTICLES, 3))
    return np.mod(np.concatenate([clump, rest]), BOX).reshape(N, N, N, 3)


def clump_store(path, centre, seed=0):
    return make_store(path, n=N, box_size=BOX, final_position=clump_positions(centre, seed))


def rendered_mass(density, cube_size, mean_density):
    voxel_volume = (cube_size / density.shape[-1]) ** 3
    return density.astype(np.float64).sum() * voxel_volume * mean_density


@pytest.mark.parametrize("centre", [(10.0, 10.0, 10.0), (0.05, 19.9, 10.0)], ids=["inside", "across-edge"])
def test_clump_mass_in_rendered_cube(tmp_path, centre):
    field = FinalDensityField(clump_store(tmp_path / "clump.zarr", np.array(centre)))
    mean_density = N**3 * PARTICLE_MASS_MSUN / BOX**3

    density = field.render(np.array(centre), 17, 2.0)

    assert density.shape == (17, 17, 17)
    assert density.dtype == np.float32
    clump_mass = CLUMP_PARTICLES * PARTICLE_MASS_MSUN
    assert rendered_mass(density, 2.0, mean_density) == pytest.approx(clump_mass, rel=0.03)


def test_translation_wraps_periodically(tmp_path):
    centre = np.array([10.0, 10.0, 10.0])
    shift = np.array([10.3, -9.95, 4.4])
    positions = clump_positions(centre)
    still = make_store(tmp_path / "still.zarr", n=N, box_size=BOX, final_position=positions)
    moved = make_store(tmp_path / "moved.zarr", n=N, box_size=BOX, final_position=np.mod(positions + shift, BOX))

    reference = FinalDensityField(still).render(centre, 9, 1.5)
    shifted = FinalDensityField(moved).render(np.mod(centre + shift, BOX), 9, 1.5)

    np.testing.assert_allclose(shifted, reference, rtol=1e-3, atol=1e-3 * reference.max())


def test_uniform_lattice_renders_mean_density(tmp_path):
    field = FinalDensityField(make_store(tmp_path / "lattice.zarr", n=N, box_size=BOX))
    density = field.render(np.array([7.0, 3.0, 12.0]), 9, 4.0)
    assert density.mean() == pytest.approx(1.0, rel=0.05)


def test_chunks_write_their_rows(tmp_path):
    centre = np.array([10.0, 10.0, 10.0])
    store = clump_store(tmp_path / "clump.zarr", centre)
    voxels = np.array([0, 5, 17, 300, 1000])
    i, j, k = np.unravel_index(voxels, (N, N, N))
    samples = pd.DataFrame({"simulation": "clump", "voxel": voxels, "i": i, "j": j, "k": k})
    samples.to_csv(tmp_path / "samples.csv", index=False)
    settings = {"cube_voxels": 5, "z0_cube_size_mpc_h": 1.0, "z0_chunks": 2}

    for chunk in (0, 1):
        render_final_subboxes(tmp_path / "samples.csv", chunk, {"clump": store}, settings,
                              tmp_path / f"chunk{chunk}.zarr")

    first = zarr.open_group(str(tmp_path / "chunk0.zarr"), mode="r")
    second = zarr.open_group(str(tmp_path / "chunk1.zarr"), mode="r")
    assert first["density"].shape == (3, 5, 5, 5)
    assert second["density"].shape == (2, 5, 5, 5)
    np.testing.assert_array_equal(np.concatenate([first["voxel"][:], second["voxel"][:]]), voxels)
    assert first.attrs["simulation_names"] == ["clump"]
    assert "provenance" in first.attrs
    # Each cube is the one rendered directly around its particle's z=0 position.
    field = FinalDensityField(store)
    for row, voxel in enumerate(voxels[3:]):
        np.testing.assert_allclose(second["density"][row], field.render(field.positions[voxel], 5, 1.0), rtol=1e-6)


def test_chunk_rows_cover_split():
    rows = np.concatenate([chunk_rows(10, 3, chunk) for chunk in range(3)])
    np.testing.assert_array_equal(rows, np.arange(10))
    with pytest.raises(SubboxError, match="inputs.z0_chunks is 3"):
        chunk_rows(10, 3, 3)


def test_cube_too_large_for_box(tmp_path):
    field = FinalDensityField(make_store(tmp_path / "lattice.zarr", n=N, box_size=BOX))
    with pytest.raises(SubboxError, match="inputs.z0_cube_size_mpc_h is 18.0, too large"):
        field.render(np.array([10.0, 10.0, 10.0]), 9, 18.0)


def test_missing_store_attribute(tmp_path):
    store = make_store(tmp_path / "bare.zarr", n=N, box_size=BOX)
    group = zarr.open_group(store, mode="r+")
    attributes = dict(group.attrs)
    del attributes["particle_mass_msun"]
    group.attrs.clear()
    group.attrs.update(attributes)
    with pytest.raises(SubboxError, match=r"bare\.zarr has no 'particle_mass_msun'"):
        FinalDensityField(store)
