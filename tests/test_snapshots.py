"""Snapshot and halo catalogue loaders: every format, units, split files and bad input."""

from pathlib import Path

import h5py
import numpy as np
import pytest

from halo_ml.snapshots import (
    GadgetBinaryLoader, GadgetHDF5Loader, HaloCatalogueError, SnapshotError, find_halo_catalogue,
    load_halo_catalogue, load_snapshot, snapshot_input_files,
)
from synthetic_gadget import (
    SOLAR_MASS_G, UNIT_MASS_G, lattice_positions, write_binary_snapshot, write_catalogue, write_simulation,
    write_snapshot,
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


@needs_data
def test_gadget4_binary_catalogue_rejected_clearly():
    snapshot = load_snapshot(DATA / "L20_N64_s1_fmt2" / "snapshot_001", {"length_unit": "kpc a h^-1"})
    with pytest.raises(HaloCatalogueError, match=r"fof_subhalo_tab_001 is GADGET-4's binary group catalogue, .* SnapFormat 3"):
        load_halo_catalogue(snapshot)
