"""Ingest end to end: the store's contents against values computed another way, and bad input."""

from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr

from halo_ml.halo_labels import FOF_ONLY_DEFINITION, SUBFIND_DEFINITION
from halo_ml.ingest import ingest_simulation
from halo_ml.lagrangian import LagrangianMappingError
from halo_ml.snapshots import HaloCatalogueError, SnapshotError
from synthetic_gadget import SOLAR_MASS_G, read_format2_blocks, write_catalogue, write_simulation, write_snapshot

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gadget4"
needs_data = pytest.mark.skipif(not DATA.exists(), reason=f"GADGET-4 sample data not found at {DATA}")
SETTINGS = {"sph_neighbours": 32, "threads": 2, "chunk_voxels": 32}
ARRAYS = {
    "density_contrast": ((), np.float32),
    "potential": ((), np.float32),
    "halo_id": ((), np.int64),
    "log_halo_mass": ((), np.float32),
    "r_over_r200m": ((), np.float32),
    "final_position": ((3,), np.float32),
}


def assert_no_store(folder):
    """Neither a store nor a temporary one may be left in ``folder``."""
    assert [path.name for path in folder.iterdir() if "zarr" in path.name] == []


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory):
    store = tmp_path_factory.mktemp("stores") / "L20_N64_s1.zarr"
    run = DATA / "L20_N64_s1"
    ingest_simulation(run / "snapshot_000.hdf5", run / "snapshot_001.hdf5", None, store, SETTINGS)
    return zarr.open_group(store, mode="r")


@needs_data
def test_sample_store_layout(sample_store):
    for name, (trailing, dtype) in ARRAYS.items():
        assert sample_store[name].shape == (64, 64, 64) + trailing, name
        assert sample_store[name].dtype == dtype, name
    attributes = sample_store.attrs
    assert attributes["particles_per_side"] == 64
    assert attributes["box_size_mpc_h"] == pytest.approx(20.0)
    assert attributes["initial_redshift"] == pytest.approx(99.0)
    assert attributes["cosmology"]["sigma_8"] == pytest.approx(0.817)
    assert attributes["halo_definition"] == SUBFIND_DEFINITION
    assert "particle IDs" in attributes["voxel_mapping"]
    assert attributes["source_files"]["initial_snapshot"][0]["path"].endswith("snapshot_000.hdf5")
    assert len(attributes["source_files"]["halo_catalogue"][0]["sha256"]) == 64
    assert attributes["provenance"]["packages"]["pynbody"]


@needs_data
def test_sample_labels_match_catalogue(sample_store):
    with h5py.File(DATA / "L20_N64_s1" / "fof_subhalo_tab_001.hdf5", "r") as stream:
        subhalo_length = stream["Subhalo/SubhaloLen"][:]
        subhalo_mass = stream["Subhalo/SubhaloMass"][:].astype(np.float64)
        subhalo_group = stream["Subhalo/SubhaloGroupNr"][:]
        unit_mass_g = stream["Parameters"].attrs["UnitMass_in_g"]
        h = stream["Parameters"].attrs["HubbleParam"]
    group_mass_msun = np.bincount(subhalo_group, weights=subhalo_mass) * unit_mass_g / h / SOLAR_MASS_G
    halo_id = sample_store["halo_id"][...]
    log_mass = sample_store["log_halo_mass"][...]

    assert np.count_nonzero(halo_id >= 0) == subhalo_length.sum()
    assert np.count_nonzero(np.isfinite(log_mass)) == subhalo_length.sum()
    assert np.unique(halo_id[halo_id >= 0]).size == np.count_nonzero(group_mass_msun > 0)
    assert sample_store.attrs["n_halos"] == np.count_nonzero(group_mass_msun > 0)
    assert np.nanmax(log_mass) == pytest.approx(np.log10(group_mass_msun.max()), abs=1e-5)
    assert np.array_equal(np.isfinite(log_mass), halo_id >= 0)


@needs_data
def test_sample_fields(sample_store):
    delta = sample_store["density_contrast"][...]
    potential = sample_store["potential"][...]
    ratio = sample_store["r_over_r200m"][...]
    final = sample_store["final_position"][...]

    assert abs(float(delta.mean())) < 0.01
    assert abs(float(potential.mean())) < 1e-6
    # Overdense regions sit in potential wells: the potential and density are anticorrelated.
    assert np.corrcoef(delta.ravel(), potential.ravel())[0, 1] < -0.3
    assert np.nanmin(ratio) >= 0.0
    assert np.nanmedian(ratio) < 1.0
    assert final.min() >= 0.0
    assert final.max() < 20.0


@needs_data
def test_sample_final_positions_by_id(sample_store):
    # GADGET-4's N-GenIC IDs: ID - 1 is the flat voxel index, so voxel v contains particle ID v + 1.
    with h5py.File(DATA / "L20_N64_s1" / "snapshot_001.hdf5", "r") as stream:
        ids = stream["PartType1/ParticleIDs"][:].astype(np.int64)
        coordinates = stream["PartType1/Coordinates"][:] / 1000.0
    expected = np.empty_like(coordinates)
    expected[ids - 1] = coordinates
    stored = sample_store["final_position"][...].reshape(-1, 3)
    np.testing.assert_allclose(stored, expected % 20.0, atol=2e-5)


@pytest.mark.parametrize("ids", ["lattice", "random"])
def test_synthetic_ingest_exact(tmp_path, ids):
    truth = write_simulation(tmp_path / "sim", n=16, ids=ids, offset=0.5 if ids == "random" else 0.0, n_files=2)
    paths = truth["paths"]
    store = tmp_path / "sim.zarr"

    ingest_simulation(paths["initial_snapshot"].with_name("snapshot_000"),
                      paths["final_snapshot"].with_name("snapshot_001"), paths["halo_catalogue"], store, SETTINGS)

    group = zarr.open_group(store, mode="r")
    np.testing.assert_array_equal(group["halo_id"][...].ravel(), truth["group_of_voxel"])
    np.testing.assert_allclose(group["final_position"][...].reshape(-1, 3), truth["final"], atol=1e-5)
    expected_mass = [np.log10(g["bound"] * 1.989e43 / 0.701 / SOLAR_MASS_G) for g in truth["groups"][:-1]]
    labelled = truth["group_of_voxel"] >= 0
    np.testing.assert_allclose(group["log_halo_mass"][...].ravel()[labelled],
                               np.array(expected_mass)[truth["group_of_voxel"][labelled]], rtol=1e-6)
    assert group.attrs["n_halos"] == len(truth["groups"]) - 1


def test_fof_only_ingest_labels_all_members(tmp_path):
    truth = write_simulation(tmp_path / "sim", n=16)
    paths = truth["paths"]
    fof_path = paths["halo_catalogue"].with_name("fof_tab_001.hdf5")
    write_catalogue(fof_path, truth["groups"], truth["box_size"], 1.0, fof_only=True)

    ingest_simulation(paths["initial_snapshot"], paths["final_snapshot"], fof_path, tmp_path / "s.zarr", SETTINGS)

    group = zarr.open_group(tmp_path / "s.zarr", mode="r")
    assert group.attrs["halo_definition"] == FOF_ONLY_DEFINITION
    assert np.count_nonzero(group["halo_id"][...] >= 0) == sum(g["length"] for g in truth["groups"])


def test_failed_ingest_keeps_old_store(tmp_path):
    truth = write_simulation(tmp_path / "sim", n=8, n_groups=2)
    paths = truth["paths"]
    store = tmp_path / "out" / "s.zarr"
    ingest_simulation(paths["initial_snapshot"], paths["final_snapshot"], None, store, SETTINGS)
    before = sorted(path.name for path in store.rglob("*"))

    with pytest.raises(SnapshotError):
        ingest_simulation(paths["initial_snapshot"], tmp_path / "missing_001.hdf5", None, store, SETTINGS)

    assert sorted(path.name for path in store.rglob("*")) == before
    assert [path.name for path in store.parent.iterdir()] == ["s.zarr"]


def test_missing_snapshot_leaves_no_store(tmp_path):
    with pytest.raises(SnapshotError, match=r"snapshot .*absent_000\.hdf5 not found"):
        ingest_simulation(tmp_path / "absent_000.hdf5", tmp_path / "absent_001.hdf5", None,
                          tmp_path / "s.zarr", SETTINGS)
    assert_no_store(tmp_path)


def test_truncated_snapshot_leaves_no_store(tmp_path):
    truth = write_simulation(tmp_path, n=8, n_groups=2)
    final = truth["paths"]["final_snapshot"]
    final.write_bytes(final.read_bytes()[:5000])
    with pytest.raises(SnapshotError, match=r"snapshot_001\.hdf5 .*(truncated|corrupt|supported format)"):
        ingest_simulation(truth["paths"]["initial_snapshot"], final, None, tmp_path / "s.zarr", SETTINGS)
    assert_no_store(tmp_path)


def test_different_ids_leave_no_store(tmp_path):
    truth = write_simulation(tmp_path, n=8, n_groups=2)
    paths = truth["paths"]
    with h5py.File(paths["final_snapshot"], "r+") as stream:
        ids = stream["PartType1/ParticleIDs"]
        ids[0] = 10 ** 6
    with pytest.raises(SnapshotError, match=r"IDs of snapshot .*snapshot_001\.hdf5 differ .* \(1 of 512 IDs are not in the initial snapshot, for example ID 1000000\)"):
        ingest_simulation(paths["initial_snapshot"], paths["final_snapshot"], None, tmp_path / "s.zarr", SETTINGS)
    assert_no_store(tmp_path)


def test_particle_count_not_cube_leaves_no_store(tmp_path):
    rng = np.random.default_rng(0)
    positions = rng.uniform(0, 10.0, (500, 3))
    write_snapshot(tmp_path / "snapshot_000.hdf5", positions, np.arange(500) + 1, 10.0, 0.01)
    with pytest.raises(LagrangianMappingError, match=r"snapshot_000\.hdf5 has 500 particles, which is not a cube"):
        ingest_simulation(tmp_path / "snapshot_000.hdf5", tmp_path / "snapshot_001.hdf5", None,
                          tmp_path / "s.zarr", SETTINGS)
    assert_no_store(tmp_path)


def test_mapping_not_one_to_one_leaves_no_store(tmp_path):
    # Initial positions scattered at random: the lattice IDs no longer match them, and the
    # nearest lattice sites collide.
    truth = write_simulation(tmp_path, n=8, n_groups=2)
    rng = np.random.default_rng(1)
    with h5py.File(truth["paths"]["initial_snapshot"], "r+") as stream:
        stream["PartType1/Coordinates"][...] = rng.uniform(0, 20000.0, (512, 3))
    with pytest.raises(LagrangianMappingError, match=r"snapshot_000\.hdf5 do not map one to one onto the 8\^3"):
        ingest_simulation(truth["paths"]["initial_snapshot"], truth["paths"]["final_snapshot"], None,
                          tmp_path / "s.zarr", SETTINGS)
    assert_no_store(tmp_path)


def test_positions_outside_box_leave_no_store(tmp_path):
    truth = write_simulation(tmp_path, n=8, n_groups=2)
    with h5py.File(truth["paths"]["initial_snapshot"], "r+") as stream:
        stream["PartType1/Coordinates"][3] = [50000.0, 10.0, 10.0]
    with pytest.raises(LagrangianMappingError, match=r"snapshot_000\.hdf5 has 1 particle\(s\) more than one box length outside"):
        ingest_simulation(truth["paths"]["initial_snapshot"], truth["paths"]["final_snapshot"], None,
                          tmp_path / "s.zarr", SETTINGS)
    assert_no_store(tmp_path)


@needs_data
def test_catalogue_of_other_simulation_leaves_no_store(tmp_path):
    with pytest.raises(HaloCatalogueError, match=r"L20_N64_s1/fof_subhalo_tab_001\.hdf5 does not match snapshot .*L20_N64_s2/snapshot_001\.hdf5"):
        ingest_simulation(DATA / "L20_N64_s2" / "snapshot_000.hdf5", DATA / "L20_N64_s2" / "snapshot_001.hdf5",
                          DATA / "L20_N64_s1" / "fof_subhalo_tab_001.hdf5", tmp_path / "s.zarr", SETTINGS)
    assert_no_store(tmp_path)


def test_positions_just_outside_box_wrapped(tmp_path):
    # Two copies of one simulation (same seed), because pynbody keeps the first one's files open.
    reference_paths = write_simulation(tmp_path / "reference", n=8, n_groups=2)["paths"]
    paths = write_simulation(tmp_path / "shifted", n=8, n_groups=2)["paths"]
    reference = tmp_path / "reference.zarr"
    ingest_simulation(reference_paths["initial_snapshot"], reference_paths["final_snapshot"], None, reference,
                      SETTINGS)
    with h5py.File(paths["initial_snapshot"], "r+") as stream:
        coordinates = stream["PartType1/Coordinates"]
        shifted = coordinates[...]
        shifted[:10, 0] -= 20000.0
        coordinates[...] = shifted

    ingest_simulation(paths["initial_snapshot"], paths["final_snapshot"], None, tmp_path / "s.zarr", SETTINGS)

    wrapped = zarr.open_group(tmp_path / "s.zarr", mode="r")
    expected = zarr.open_group(reference, mode="r")
    np.testing.assert_array_equal(wrapped["halo_id"][...], expected["halo_id"][...])
    np.testing.assert_allclose(wrapped["density_contrast"][...], expected["density_contrast"][...], atol=1e-5)


@pytest.mark.parametrize("n_files", [1, 2])
def test_gadget3_binary_ingest_labels(tmp_path, n_files):
    truth = write_simulation(tmp_path / "sim", n=16, layout="gadget3", n_files=n_files)
    paths = truth["paths"]
    units = {"length_unit": "kpc a h^-1", "mass_unit": "1e10 Msol h^-1"}

    ingest_simulation(paths["initial_snapshot"], paths["final_snapshot"], None, tmp_path / "s.zarr", SETTINGS,
                      units=units)

    group = zarr.open_group(tmp_path / "s.zarr", mode="r")
    halo_id = group["halo_id"][...].ravel()
    log_mass = group["log_halo_mass"][...].ravel()
    # The particle mass is 1 in units of 1e10 Msun/h, so a group's mass is its bound count times 1e10 / h.
    expected_log_mass = np.array([np.log10(g["bound"] * 1e10 / 0.701) if g["bound"] else np.nan
                                  for g in truth["groups"]])
    labelled = truth["group_of_voxel"] >= 0
    assert group.attrs["halo_catalogue_format"] == "GADGET-3 SUBFIND binary"
    assert group.attrs["halo_definition"] == SUBFIND_DEFINITION
    np.testing.assert_array_equal(halo_id, truth["group_of_voxel"])
    np.testing.assert_allclose(log_mass[labelled], expected_log_mass[truth["group_of_voxel"][labelled]], rtol=1e-6)
    assert np.all(np.isnan(log_mass[~labelled]))
    assert group.attrs["n_halos"] == len(truth["groups"]) - 1
    assert np.nanmax(log_mass) == pytest.approx(np.nanmax(expected_log_mass), abs=1e-6)
    centre = np.array([g["centre"] for g in truth["groups"]])[truth["group_of_voxel"][labelled]]
    offset = (truth["final"][labelled] - centre + truth["box_size"] / 2) % truth["box_size"] - truth["box_size"] / 2
    expected_ratio = np.linalg.norm(offset, axis=1) / 0.3
    np.testing.assert_allclose(group["r_over_r200m"][...].ravel()[labelled], expected_ratio, rtol=1e-4, atol=1e-4)


@needs_data
def test_gadget4_format2_store_matches_hdf5(sample_store, tmp_path):
    run = DATA / "L20_N64_s1_fmt2"
    # GADGET-4's mass unit, 1.989e43 g/h, as in the HDF5 files' UnitMass_in_g.
    units = {"length_unit": "kpc a h^-1", "mass_unit": "1.989e43 g h^-1"}
    ingest_simulation(run / "snapshot_000", run / "snapshot_001", None, tmp_path / "s.zarr", SETTINGS, units=units)
    binary = zarr.open_group(tmp_path / "s.zarr", mode="r")

    for name in ("density_contrast", "potential", "final_position"):
        np.testing.assert_allclose(binary[name][...], sample_store[name][...], rtol=1e-5, atol=2e-5, err_msg=name)
    assert binary.attrs["particle_mass_msun"] == pytest.approx(sample_store.attrs["particle_mass_msun"], rel=1e-6)
    assert binary.attrs["halo_catalogue_format"] == "GADGET-4 SUBFIND binary (format 2)"

    # The binary catalogue comes from a second group-finder run (424 subhalos, against 423 in
    # the HDF5 catalogue), which numbers groups of equal size differently. The FoF groups are
    # therefore compared as a partition, in which each halo_id of one store maps to one of the other.
    binary_id = binary["halo_id"][...].ravel()
    hdf5_id = sample_store["halo_id"][...].ravel()
    both = (binary_id >= 0) & (hdf5_id >= 0)
    pairs = np.unique(np.stack([hdf5_id[both], binary_id[both]]), axis=1)
    assert pairs.shape[1] == np.unique(pairs[0]).size == np.unique(pairs[1]).size
    assert binary.attrs["n_halos"] == sample_store.attrs["n_halos"]
    # Unbinding differs between the two runs for a few particles only.
    assert np.count_nonzero((binary_id >= 0) != (hdf5_id >= 0)) < 1e-3 * np.count_nonzero(hdf5_id >= 0)

    blocks = read_format2_blocks(run / "fof_subhalo_tab_001")
    subhalo_length = np.frombuffer(blocks["SLTY"], dtype="<i4").reshape(-1, 6)[:, 1]
    subhalo_group = np.frombuffer(blocks["SGNR"], dtype="<i8")
    bound_count = np.bincount(subhalo_group, weights=subhalo_length)
    log_mass = binary["log_halo_mass"][...]
    assert np.count_nonzero(binary_id >= 0) == subhalo_length.sum()
    assert np.nanmax(log_mass) == pytest.approx(
        np.log10(bound_count.max() * binary.attrs["particle_mass_msun"]), abs=1e-5)
    assert np.nanmax(np.abs(log_mass - sample_store["log_halo_mass"][...])) < 0.01
