"""Snapshot and halo catalogue loaders: every format, units, split files and bad input."""

from pathlib import Path

import h5py
import numpy as np
import pytest

from halo_ml.snapshots import (
    Gadget3SubfindBinaryLoader, Gadget4BinaryCatalogueLoader, GadgetBinaryLoader, GadgetHDF5Loader,
    HaloCatalogueError, SnapshotError, find_halo_catalogue, load_halo_catalogue, load_snapshot, snapshot_input_files,
)
from synthetic_gadget import (
    SOLAR_MASS_G, UNIT_MASS_G, lattice_positions, read_format2_blocks, write_binary_snapshot, write_catalogue,
    write_simulation, write_snapshot,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gadget4"
needs_data = pytest.mark.skipif(not DATA.exists(), reason=f"GADGET-4 sample data not found at {DATA}")
KPC = {"length_unit": "kpc a h^-1", "mass_unit": "1e10 Msol h^-1"}

N, BOX = 8, 10.0


@pytest.fixture
def lattice():
    positions = lattice_positions(N, BOX) + 0.1
    ids = np.arange(N ** 3) + 1
    return positions, ids


def expected_mass_msun(mass_code, h=0.701):
    return mass_code * UNIT_MASS_G / h / SOLAR_MASS_G


@pytest.mark.parametrize("n_files", [1, 3])
def test_hdf5_snapshot_units_and_split_files(tmp_path, lattice, n_files):
    positions, ids = lattice
    write_snapshot(tmp_path / "snap_000.hdf5", positions, ids, BOX, 0.01, particle_mass_code=0.5, n_files=n_files)

    for name in ("snap_000.hdf5", "snap_000"):
        snapshot = load_snapshot(tmp_path / name)

        assert snapshot.format == GadgetHDF5Loader.format_name
        assert len(snapshot.files) == n_files
        assert len(snapshot) == N ** 3
        assert snapshot.box_size_mpc_h == pytest.approx(BOX)
        np.testing.assert_allclose(snapshot.positions(), positions, atol=1e-5)
        np.testing.assert_array_equal(snapshot.ids(), ids)
        np.testing.assert_allclose(snapshot.masses(), expected_mass_msun(0.5), rtol=1e-6)
        assert snapshot.redshift == pytest.approx(99.0)


@pytest.mark.parametrize("block_labels", [False, True], ids=["format1", "format2"])
@pytest.mark.parametrize("n_files", [1, 2])
def test_binary_snapshot_formats(tmp_path, lattice, block_labels, n_files):
    positions, ids = lattice
    write_binary_snapshot(tmp_path / "snap_000", positions, ids, BOX, 0.01, particle_mass_code=0.25,
                          n_files=n_files, block_labels=block_labels)

    snapshot = load_snapshot(tmp_path / "snap_000", KPC)

    assert snapshot.format == GadgetBinaryLoader.format_name
    assert len(snapshot.files) == n_files
    assert snapshot.box_size_mpc_h == pytest.approx(BOX)
    np.testing.assert_allclose(snapshot.positions(), positions, atol=1e-5)
    np.testing.assert_array_equal(snapshot.ids(), ids)
    # 1e10 Msun/h through pynbody's unit system, whose Msun is the same 1.98842e33 g.
    np.testing.assert_allclose(snapshot.masses(), 0.25e10 / 0.701, rtol=1e-6)
    assert snapshot.cosmology()["omega_m"] == pytest.approx(0.279)


def test_binary_snapshot_without_units_raises(tmp_path, lattice):
    positions, ids = lattice
    write_binary_snapshot(tmp_path / "snap_000", positions, ids, BOX, 0.01)
    with pytest.raises(SnapshotError, match=r"snap_000 has a box of 10000 Mpc/h .* set files\.length_unit"):
        load_snapshot(tmp_path / "snap_000")


def test_snapshot_input_files_lists_pieces(tmp_path, lattice):
    positions, ids = lattice
    write_binary_snapshot(tmp_path / "bin_000", positions, ids, BOX, 0.01, n_files=2)
    write_snapshot(tmp_path / "hdf_000.hdf5", positions, ids, BOX, 0.01, n_files=2)
    assert snapshot_input_files(tmp_path / "bin_000") == [str(tmp_path / "bin_000.0"), str(tmp_path / "bin_000.1")]
    assert snapshot_input_files(tmp_path / "hdf_000.hdf5") == [str(tmp_path / "hdf_000.0.hdf5"),
                                                              str(tmp_path / "hdf_000.1.hdf5")]
    assert snapshot_input_files(tmp_path / "later_000.hdf5") == [str(tmp_path / "later_000.hdf5")]


def test_missing_snapshot_raises(tmp_path):
    with pytest.raises(SnapshotError, match=r"snapshot .*nothing_000\.hdf5 not found"):
        load_snapshot(tmp_path / "nothing_000.hdf5")


def test_missing_piece_of_split_snapshot_raises(tmp_path, lattice):
    positions, ids = lattice
    write_snapshot(tmp_path / "snap_000.hdf5", positions, ids, BOX, 0.01, n_files=2)
    (tmp_path / "snap_000.1.hdf5").unlink()
    with pytest.raises(SnapshotError, match=r"snapshot piece .*snap_000\.1\.hdf5 is missing"):
        load_snapshot(tmp_path / "snap_000")


def test_unknown_format_raises(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a snapshot at all\n" * 10)
    with pytest.raises(SnapshotError, match=r"notes\.txt is in no supported format"):
        load_snapshot(path)


def test_truncated_hdf5_snapshot_raises(tmp_path, lattice):
    positions, ids = lattice
    path = tmp_path / "snap_000.hdf5"
    write_snapshot(path, positions, ids, BOX, 0.01)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SnapshotError, match=r"snap_000\.hdf5 .*(truncated|corrupt|supported format)"):
        load_snapshot(path)


def test_truncated_binary_snapshot_raises(tmp_path, lattice):
    positions, ids = lattice
    path = tmp_path / "snap_000"
    write_binary_snapshot(path, positions, ids, BOX, 0.01, block_labels=True)
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(SnapshotError, match=r"snap_000 is truncated or corrupt: the record at byte \d+ claims"):
        load_snapshot(path, KPC)


def test_corrupt_binary_record_raises(tmp_path, lattice):
    positions, ids = lattice
    path = tmp_path / "snap_000"
    write_binary_snapshot(path, positions, ids, BOX, 0.01)
    data = bytearray(path.read_bytes())
    # The closing length marker of the header record sits right after its 256 bytes.
    data[260:264] = np.int32(99).tobytes()
    path.write_bytes(bytes(data))
    with pytest.raises(SnapshotError, match=r"snap_000 is corrupt: the record at byte 0 starts with length 256 and ends with 99"):
        load_snapshot(path, KPC)


def test_fof_only_catalogue_fallback(tmp_path):
    truth = write_simulation(tmp_path, n=16)
    fof_path = tmp_path / "fof_tab_001.hdf5"
    write_catalogue(fof_path, truth["groups"], truth["box_size"], 1.0, fof_only=True)
    snapshot = load_snapshot(truth["paths"]["final_snapshot"])

    catalogue = load_halo_catalogue(snapshot, fof_path)

    assert catalogue.n_subhalos is None
    assert catalogue.n_groups == len(truth["groups"])
    assert int(catalogue.bound.sum()) == sum(group["length"] for group in truth["groups"])
    np.testing.assert_allclose(catalogue.r200m_mpc_h, 0.3, rtol=1e-6)


def test_find_halo_catalogue_next_to_snapshot(tmp_path):
    (tmp_path / "fof_subhalo_tab_005.hdf5").touch()
    (tmp_path / "groups_007").mkdir()
    assert find_halo_catalogue(tmp_path / "snapshot_005.hdf5") == tmp_path / "fof_subhalo_tab_005.hdf5"
    assert find_halo_catalogue(tmp_path / "snapshot_007") == tmp_path / "groups_007"
    assert find_halo_catalogue(tmp_path / "snapshot_009") is None


def test_missing_halo_catalogue_raises(tmp_path):
    truth = write_simulation(tmp_path, n=8, n_groups=1)
    truth["paths"]["halo_catalogue"].unlink()
    snapshot = load_snapshot(truth["paths"]["final_snapshot"])
    with pytest.raises(HaloCatalogueError, match=r"no halo catalogue found next to snapshot .*snapshot_001\.hdf5"):
        load_halo_catalogue(snapshot)
    with pytest.raises(HaloCatalogueError, match=r"halo catalogue .*tab_999\.hdf5 not found"):
        load_halo_catalogue(snapshot, tmp_path / "tab_999.hdf5")


def test_catalogue_of_other_time_raises(tmp_path):
    truth = write_simulation(tmp_path, n=8, n_groups=1)
    snapshot = load_snapshot(truth["paths"]["initial_snapshot"])
    with pytest.raises(HaloCatalogueError, match=r"fof_subhalo_tab_001\.hdf5 is for scale factor a = 1, but snapshot .*snapshot_000\.hdf5 is at a = 0\.01"):
        load_halo_catalogue(snapshot, truth["paths"]["halo_catalogue"])


@needs_data
def test_gadget4_hdf5_sample_units():
    path = DATA / "L20_N64_s1" / "snapshot_001.hdf5"
    snapshot = load_snapshot(path)
    with h5py.File(path, "r") as stream:
        coordinates = stream["PartType1/Coordinates"][:]
        mass_code = stream["Header"].attrs["MassTable"][1]
        unit_mass_g = stream["Parameters"].attrs["UnitMass_in_g"]

    assert snapshot.box_size_mpc_h == pytest.approx(20.0)
    np.testing.assert_allclose(snapshot.positions(), coordinates / 1000.0, atol=1e-5)
    np.testing.assert_allclose(snapshot.masses(), mass_code * unit_mass_g / 0.701 / SOLAR_MASS_G, rtol=1e-5)
    assert snapshot.cosmology() == pytest.approx(
        {"omega_m": 0.279, "omega_lambda": 0.721, "omega_b": 0.045, "sigma_8": 0.817, "h": 0.701, "n_s": 0.96})


@needs_data
def test_gadget4_format2_sample_matches_hdf5():
    hdf5 = load_snapshot(DATA / "L20_N64_s1" / "snapshot_000.hdf5")
    binary = load_snapshot(DATA / "L20_N64_s1_fmt2" / "snapshot_000", {"length_unit": "kpc a h^-1"})

    assert binary.format == GadgetBinaryLoader.format_name
    hdf5_positions = hdf5.positions()[np.argsort(hdf5.ids())]
    binary_positions = binary.positions()[np.argsort(binary.ids())]
    np.testing.assert_allclose(binary_positions, hdf5_positions, atol=1e-5)


@pytest.mark.parametrize("n_files", [1, 2])
def test_gadget3_subfind_catalogue(tmp_path, n_files):
    truth = write_simulation(tmp_path, n=16, layout="gadget3", n_files=n_files)
    snapshot = load_snapshot(truth["paths"]["final_snapshot"], KPC)
    groups = truth["groups"]

    catalogue = load_halo_catalogue(snapshot)

    assert catalogue.format == Gadget3SubfindBinaryLoader.format_name
    assert catalogue.n_groups == len(groups)
    assert catalogue.n_subhalos == sum(group["bound"] > 0 for group in groups)
    # The catalogue's lengths are in the snapshot's kpc/h, not in pynbody's default Mpc/h.
    np.testing.assert_allclose(catalogue.centre_mpc_h, [group["centre"] for group in groups], atol=1e-4)
    np.testing.assert_allclose(catalogue.r200m_mpc_h, 0.3, rtol=1e-6)
    voxel_of_id = truth["voxel_of_id"]
    voxels = np.array([voxel_of_id[int(particle_id)] for particle_id in snapshot.ids()])
    assert np.count_nonzero(catalogue.group_index >= 0) == sum(group["length"] for group in groups)
    np.testing.assert_array_equal(catalogue.bound, truth["bound_of_voxel"][voxels])
    np.testing.assert_array_equal(np.where(catalogue.bound, catalogue.group_index, -1), truth["group_of_voxel"][voxels])


def test_gadget3_catalogue_without_subhalos_raises(tmp_path):
    # With one group, write_simulation gives it no subhalo.
    truth = write_simulation(tmp_path, n=8, n_groups=1, layout="gadget3")
    snapshot = load_snapshot(truth["paths"]["final_snapshot"], KPC)
    with pytest.raises(HaloCatalogueError, match=r"groups_001 contains no subhalos, and pynbody .* cannot read"):
        load_halo_catalogue(snapshot)


@needs_data
def test_gadget4_binary_catalogue_matches_hdf5():
    run = DATA / "L20_N64_s1_fmt2"
    binary = load_snapshot(run / "snapshot_001", {"length_unit": "kpc a h^-1"})
    hdf5 = load_snapshot(DATA / "L20_N64_s1" / "snapshot_001.hdf5")
    blocks = read_format2_blocks(run / "fof_subhalo_tab_001")

    catalogue = load_halo_catalogue(binary)
    header, fields = Gadget4BinaryCatalogueLoader._read_file(run / "fof_subhalo_tab_001")

    with h5py.File(DATA / "L20_N64_s1" / "fof_subhalo_tab_001.hdf5", "r") as stream:
        reference = {name: stream[f"Group/{name}"][:] for name in
                     ("GroupLenType", "GroupOffsetType", "GroupPos", "Group_R_Mean200", "GroupLen")}
        attributes = dict(stream["Header"].attrs)
    assert catalogue.format == Gadget4BinaryCatalogueLoader.format_name
    assert header["total_groups"] == attributes["Ngroups_Total"]
    assert catalogue.n_groups == attributes["Ngroups_Total"]
    assert header["total_ids"] == attributes["Nids_Total"]
    assert header["time"] == pytest.approx(attributes["Time"], rel=1e-12)
    assert header["box_size"] == pytest.approx(attributes["BoxSize"])
    # FoF is deterministic: group sizes and offsets agree row by row.
    np.testing.assert_array_equal(fields["GroupLenType"].reshape(-1, 6), reference["GroupLenType"])
    np.testing.assert_array_equal(fields["GroupOffsetType"].reshape(-1, 6), reference["GroupOffsetType"])
    np.testing.assert_array_equal(np.frombuffer(blocks["FLEN"], dtype="<i4"), reference["GroupLen"])

    # The binary catalogue comes from a second group-finder run on the same z=0 snapshot
    # (SUBFIND found 424 subhalos there and 423 in the HDF5 file), which also orders groups of
    # equal length differently. Groups are therefore matched by their members' IDs.
    binary_ids, hdf5_ids = binary.ids(), hdf5.ids()
    key_of_binary = {int(binary_ids[catalogue.group_index == g].min()): g for g in range(catalogue.n_groups)}
    lengths, offsets = reference["GroupLenType"][:, 1], reference["GroupOffsetType"][:, 1]
    matched = np.array([key_of_binary[int(hdf5_ids[o:o + l].min())] for o, l in zip(offsets, lengths)])
    assert sorted(matched.tolist()) == list(range(catalogue.n_groups))
    np.testing.assert_array_equal(np.bincount(catalogue.group_index[catalogue.group_index >= 0])[matched], lengths)
    centre_kpc = np.frombuffer(blocks["FPOS"], dtype="<f4").reshape(-1, 3)[matched]
    np.testing.assert_allclose(catalogue.centre_mpc_h[matched], centre_kpc / 1000.0, rtol=1e-6)
    same_centre = np.all(np.abs(centre_kpc - reference["GroupPos"]) < 1e-3, axis=1)
    same_radius = np.isclose(catalogue.r200m_mpc_h[matched] * 1000.0, reference["Group_R_Mean200"], rtol=1e-6)
    assert np.count_nonzero(same_centre) >= 0.95 * catalogue.n_groups
    assert np.count_nonzero(same_radius) >= 0.95 * catalogue.n_groups
    subhalo_lengths = np.frombuffer(blocks["SLTY"], dtype="<i4").reshape(-1, 6)[:, 1]
    assert np.count_nonzero(catalogue.bound) == subhalo_lengths.sum()
    assert catalogue.n_subhalos == len(subhalo_lengths)


@needs_data
def test_truncated_gadget4_binary_catalogue_raises(tmp_path):
    run = DATA / "L20_N64_s1_fmt2"
    snapshot = load_snapshot(run / "snapshot_001", {"length_unit": "kpc a h^-1"})
    path = tmp_path / "fof_subhalo_tab_001"
    path.write_bytes((run / "fof_subhalo_tab_001").read_bytes()[:5000])
    with pytest.raises(HaloCatalogueError, match=r"fof_subhalo_tab_001 is truncated or corrupt: the record at byte \d+"):
        load_halo_catalogue(snapshot, path)
