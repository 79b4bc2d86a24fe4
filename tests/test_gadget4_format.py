"""Tests of the demo suite's GADGET-4 files: layout against real GADGET-4 output, and pynbody."""

import json
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from halo_ml import demo_suite, friends_of_friends, gadget4_format

REAL_RUN = Path(__file__).resolve().parents[2] / "shared" / "data" / "gadget4" / "L20_N64_s1"
needs_real_run = pytest.mark.skipif(
    not REAL_RUN.exists(), reason=f"real GADGET-4 run not found at {REAL_RUN}")

COSMOLOGY = {"omega_m": 0.279, "omega_lambda": 0.721, "omega_b": 0.045,
             "sigma_8": 0.817, "h": 0.701, "n_s": 0.96}
SETTINGS = {"particles_per_side": 32, "box_size_mpc_h": 20.0, "initial_redshift": 99.0,
            "pm_steps": 10, "force_mesh_factor": 2, "fof_linking_length": 0.2,
            "fof_min_particles": 32, "subhalo_min_particles": 20}
N = SETTINGS["particles_per_side"]


@pytest.fixture(scope="module")
def simulation(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    demo_suite.simulate("demo_test", 17, SETTINGS, COSMOLOGY, folder, threads=2)
    return folder


def read_layout(path):
    """Return {object path: (kind, dtype, trailing shape, attribute names)} of an HDF5 file."""
    layout = {}

    def visit(name, item):
        if isinstance(item, h5py.Dataset):
            layout[name] = ("dataset", item.dtype.str, item.shape[1:], sorted(item.attrs))
        else:
            layout[name] = ("group", None, None, sorted(item.attrs))

    with h5py.File(path, "r") as handle:
        handle.visititems(visit)
    return layout


@needs_real_run
@pytest.mark.parametrize("filename", demo_suite.OUTPUT_FILES)
def test_layout_matches_gadget4(simulation, filename):
    ours = read_layout(simulation / filename)
    real = read_layout(REAL_RUN / filename)
    # Subhalo fields we do not compute (SubhaloSpin) may be missing, nothing may be extra.
    assert set(ours) - set(real) == set()
    missing = set(real) - set(ours)
    assert missing <= {"Subhalo/SubhaloSpin"}
    for name in ours:
        kind, dtype, shape, attributes = ours[name]
        real_kind, real_dtype, real_shape, real_attributes = real[name]
        assert (kind, dtype, shape) == (real_kind, real_dtype, real_shape), name
        if kind == "dataset":
            assert attributes == real_attributes, name


@needs_real_run
def test_header_attributes_match_gadget4(simulation):
    for filename in demo_suite.OUTPUT_FILES:
        with h5py.File(simulation / filename, "r") as ours, h5py.File(REAL_RUN / filename, "r") as real:
            ours_header, real_header = dict(ours["Header"].attrs), dict(real["Header"].attrs)
            expected = set(real_header) - {"Git_commit", "Git_date"}
            assert set(ours_header) - {"HaloML_Provenance"} == expected
            for key in expected:
                assert np.asarray(ours_header[key]).dtype == np.asarray(real_header[key]).dtype, key
            for key in ("UnitLength_in_cm", "UnitMass_in_g", "UnitVelocity_in_cm_per_s", "Omega0",
                        "OmegaLambda", "HubbleParam", "BoxSize", "Hubble"):
                assert ours["Parameters"].attrs[key] == real["Parameters"].attrs[key], key


@needs_real_run
def test_pynbody_units_match_gadget4(simulation):
    pynbody = pytest.importorskip("pynbody")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = pynbody.load(str(simulation / "snapshot_001.hdf5"))
        real = pynbody.load(str(REAL_RUN / "snapshot_001.hdf5"))
        for key in ("pos", "vel", "mass"):
            assert ours[key].units == real[key].units, key
        ours.physical_units()
        real.physical_units()
        assert float(ours.properties["boxsize"].in_units("Mpc")) == pytest.approx(
            float(real.properties["boxsize"].in_units("Mpc")), rel=1e-12)
        # Same cosmology and box with 8 times fewer particles: 8 times the particle mass.
        assert float(ours["mass"][0]) == pytest.approx(8.0 * float(real["mass"][0]), rel=1e-6)


def test_initial_snapshot_ids_follow_lattice(simulation):
    with h5py.File(simulation / "snapshot_000.hdf5", "r") as handle:
        ids = handle["PartType1/ParticleIDs"][:]
        coordinates = handle["PartType1/Coordinates"][:].astype(np.float64)
        box = handle["Header"].attrs["BoxSize"]
        time = handle["Header"].attrs["Time"]
    assert time == pytest.approx(0.01)
    index = ids.astype(np.int64) - 1
    lattice = np.stack([index // (N * N), (index // N) % N, index % N], axis=1) * (box / N)
    offset = coordinates - lattice
    offset -= box * np.round(offset / box)
    assert np.abs(offset).max() < 0.5 * box / N


def test_final_snapshot_in_group_order(simulation):
    with h5py.File(simulation / "snapshot_001.hdf5", "r") as snapshot, \
            h5py.File(simulation / "fof_subhalo_tab_001.hdf5", "r") as catalogue:
        ids = snapshot["PartType1/ParticleIDs"][:]
        lengths = catalogue["Group/GroupLen"][:]
        offsets = catalogue["Group/GroupOffsetType"][:, 1]
        sub_lengths = catalogue["Subhalo/SubhaloLen"][:]
        sub_offsets = catalogue["Subhalo/SubhaloOffsetType"][:, 1]
        sub_groups = catalogue["Subhalo/SubhaloGroupNr"][:]
        first_sub = catalogue["Group/GroupFirstSub"][:]
        n_subs = catalogue["Group/GroupNsubs"][:]
        header = dict(catalogue["Header"].attrs)
    assert len(lengths) > 0
    np.testing.assert_array_equal(np.sort(ids), np.arange(1, N**3 + 1))
    np.testing.assert_array_equal(offsets, np.concatenate([[0], np.cumsum(lengths)[:-1]]))
    assert np.all(np.diff(lengths) <= 0)
    assert header["Nids_Total"] == lengths.sum()
    assert header["Ngroups_Total"] == len(lengths)
    assert header["Nsubhalos_Total"] == len(sub_lengths)
    # Each subhalo starts where its group starts and contains at most the group's particles.
    np.testing.assert_array_equal(sub_offsets, offsets[sub_groups])
    assert np.all(sub_lengths <= lengths[sub_groups])
    np.testing.assert_array_equal(first_sub[sub_groups], np.arange(len(sub_lengths)))
    np.testing.assert_array_equal(n_subs, (first_sub >= 0).astype(np.int32))


def test_catalogue_groups_are_fof_groups_of_snapshot(simulation):
    # Re-run FoF on the positions read back from the file: the written groups must be its groups.
    with h5py.File(simulation / "snapshot_001.hdf5", "r") as snapshot, \
            h5py.File(simulation / "fof_subhalo_tab_001.hdf5", "r") as catalogue:
        coordinates = snapshot["PartType1/Coordinates"][:].astype(np.float64)
        box = snapshot["Header"].attrs["BoxSize"]
        lengths = catalogue["Group/GroupLen"][:]
    groups = friends_of_friends.friends_of_friends(coordinates, box, 0.2 * box / N, 32)
    written = np.repeat(np.arange(len(lengths)), lengths)
    # float32 rounding of the coordinates may flip a link at the linking length; allow 0.5%.
    agreement = np.mean(groups[:len(written)] == written)
    assert agreement > 0.995
    assert groups.max() + 1 == pytest.approx(len(lengths), abs=1)


def test_pynbody_reports_fof_masses(simulation):
    pynbody = pytest.importorskip("pynbody")
    with h5py.File(simulation / "fof_subhalo_tab_001.hdf5", "r") as catalogue:
        lengths = catalogue["Group/GroupLen"][:]
        r200 = catalogue["Group/Group_R_Mean200"][:]
    # Expected mass: N particles of Omega_m rho_crit L^3 / n^3 in GADGET's mass unit (1.989e43 g/h),
    # converted with pynbody's own solar mass (1.98842e33 g in pynbody 2.8, not GADGET's 1.989e33).
    unit_in_msun = pynbody.units.Unit(f"{gadget4_format.UNIT_MASS_G} g").ratio("Msol")
    particle_mass_msun = (gadget4_format.particle_mass(COSMOLOGY["omega_m"], 20000.0, N)
                          * unit_in_msun / COSMOLOGY["h"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = pynbody.load(str(simulation / "snapshot_001.hdf5"))
        snapshot.physical_units()
        halos = snapshot.halos()
        assert len(halos) == len(lengths)
        for number in range(min(len(lengths), 5)):
            halo_mass = np.sum(halos[number]["mass"], dtype=np.float64)
            assert halo_mass == pytest.approx(lengths[number] * particle_mass_msun, rel=1e-5)
            assert float(halos[number].properties["GroupMass"].in_units("Msol")) == pytest.approx(
                lengths[number] * particle_mass_msun, rel=1e-5)
        group_array = halos.get_group_array()
        np.testing.assert_array_equal(np.bincount(group_array[group_array >= 0]), lengths)
    assert np.all(r200 > 0)


def test_provenance_in_header(simulation):
    with h5py.File(simulation / "snapshot_001.hdf5", "r") as handle:
        record = json.loads(handle["Header"].attrs["HaloML_Provenance"])
    assert record["seeds"] == {"initial_conditions": 17}
    assert record["config"]["demo"]["particles_per_side"] == N
    assert record["config"]["cosmology"] == COSMOLOGY


def test_same_seed_same_data(simulation, tmp_path):
    demo_suite.simulate("demo_test", 17, SETTINGS, COSMOLOGY, tmp_path, threads=1)
    for filename in demo_suite.OUTPUT_FILES:
        ours, again = read_layout(simulation / filename), read_layout(tmp_path / filename)
        assert ours == again
        with h5py.File(simulation / filename, "r") as first, h5py.File(tmp_path / filename, "r") as second:
            for name, (kind, *_rest) in ours.items():
                if kind == "dataset":
                    np.testing.assert_array_equal(first[name][()], second[name][()], err_msg=name)


def test_interrupted_write_leaves_no_file(tmp_path):
    target = tmp_path / "snapshot_000.hdf5"
    with pytest.raises(RuntimeError):
        with gadget4_format.atomic_hdf5(target) as handle:
            handle.create_group("Header")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
