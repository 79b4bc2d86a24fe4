"""Read GADGET snapshots and halo catalogues through pynbody, whatever the GADGET flavour.

Each supported format has a small loader class that, as pynbody's own loaders do, first reports
whether it can read a path (``can_load``) and then reads it (``load``). :func:`load_snapshot`
and :func:`load_halo_catalogue` try the loaders in turn and raise one clear error when none
fits. Every value that leaves this module is in halo-ml's units: positions in comoving Mpc/h,
masses in Msun.

Supported inputs:

- snapshots: GADGET HDF5 (GADGET-3/4, SnapFormat 3) and legacy binary format 1 and 2
  (GADGET-2/3, and GADGET-4 with SnapFormat 1 or 2), single files or split into ``.0``, ``.1``, ...
- halo catalogues: SUBFIND as GADGET-4 writes it, in HDF5 (``fof_subhalo_tab_XXX.hdf5``) or in
  binary format 2 (``fof_subhalo_tab_XXX``, which this module decodes because pynbody cannot).
  SUBFIND as GADGET-3 writes it (binary ``groups_XXX/subhalo_tab_XXX.N`` with
  ``subhalo_ids_XXX.N``). As a fallback, a FoF-only GADGET-4 HDF5 catalogue (``fof_tab_XXX.hdf5``,
  or a ``fof_subhalo_tab`` without subhalos).
"""

import dataclasses
import logging
import re
import struct
import warnings
from pathlib import Path

import h5py
import numpy as np
import pynbody

logger = logging.getLogger(__name__)

LENGTH_UNIT = "Mpc a h^-1"
MASS_UNIT = "Msol"
VELOCITY_UNIT = "km s^-1"

# A periodic box larger than this is taken as a sign of a wrong length unit: 5 Gpc/h is
# already of the order of the Hubble radius (about 3 Gpc/h).
_MAX_PLAUSIBLE_BOX_MPC_H = 5000.0

# pynbody raises these (and not one common type) on truncated or malformed files.
_READ_ERRORS = (OSError, ValueError, KeyError, IndexError, EOFError, RuntimeError, struct.error)


class SnapshotError(ValueError):
    """A snapshot that is missing, unreadable, truncated or inconsistent; the message names the file."""


def _require_pieces(files):
    """Raise SnapshotError naming the first piece of a multi-file snapshot that is missing."""
    for file in files:
        if not file.is_file():
            raise SnapshotError(f"snapshot piece {file} is missing: the header of {files[0]} "
                                f"says the snapshot has {len(files)} files")


class HaloCatalogueError(ValueError):
    """A halo catalogue that is missing, unreadable or does not belong to its snapshot."""


@dataclasses.dataclass
class Snapshot:
    """One snapshot read through pynbody, converted to comoving Mpc/h and Msun.

    Attributes
    ----------
    path : Path
        The path the user gave (for a multi-file snapshot, the name without ``.0``).
    files : list of Path
        Every file of the snapshot.
    format : str
        Human-readable format name, for logs and the store's attributes.
    sim : pynbody.snapshot.SimSnap
        The pynbody snapshot, with ``pos`` in comoving Mpc/h and ``mass`` in Msun.
    file_length_in_mpc_h : float
        The file's length unit in comoving Mpc/h (for catalogue values that pynbody gives
        without units).
    """

    path: Path
    files: list
    format: str
    sim: object
    file_length_in_mpc_h: float = 1.0

    def __len__(self):
        return len(self.sim)

    @property
    def box_size_mpc_h(self):
        """Side of the periodic box in comoving Mpc/h."""
        return float(self.sim.properties["boxsize"].in_units(LENGTH_UNIT, **self.sim.conversion_context()))

    @property
    def scale_factor(self):
        return float(self.sim.properties["a"])

    @property
    def redshift(self):
        return 1.0 / self.scale_factor - 1.0

    def positions(self):
        """Particle positions, comoving Mpc/h, float64 array of shape (N, 3), file order."""
        return np.asarray(self.sim["pos"], dtype=np.float64)

    def ids(self):
        """Particle IDs as int64, file order."""
        return np.asarray(self.sim["iord"], dtype=np.int64)

    def masses(self):
        """Particle masses in Msun, file order."""
        return np.asarray(self.sim["mass"], dtype=np.float64)

    def cosmology(self):
        """Cosmological parameters found in the file; ``None`` for those it does not record.

        Binary GADGET headers carry only Omega_m, Omega_Lambda and h; GADGET-4 HDF5 files also
        carry Omega_b, sigma_8 and n_s in their ``Parameters`` group.
        """
        properties = self.sim.properties
        cosmology = {
            "omega_m": _float_or_none(properties.get("omegaM0")),
            "omega_lambda": _float_or_none(properties.get("omegaL0")),
            "omega_b": _float_or_none(properties.get("omegaB0")),
            "sigma_8": None,
            "h": _float_or_none(properties.get("h")),
            "n_s": None,
        }
        if self.format == GadgetHDF5Loader.format_name:
            with h5py.File(self.files[0], "r") as stream:
                parameters = stream["Parameters"].attrs if "Parameters" in stream else {}
                for key, name in (("omega_b", "OmegaBaryon"), ("sigma_8", "Sigma8"), ("n_s", "PrimordialIndex")):
                    if name in parameters:
                        cosmology[key] = float(parameters[name])
        return cosmology


def _float_or_none(value):
    return None if value is None else float(value)


# --------------------------------------------------------------------------------------------
# Snapshot loaders


class SnapshotLoader:
    """Base class of the snapshot loaders: ``can_load`` a path, then ``load`` it."""

    format_name = ""

    @classmethod
    def can_load(cls, path):
        raise NotImplementedError

    @classmethod
    def files(cls, path):
        """Return every file of the snapshot at ``path`` (one, or the pieces of a split snapshot)."""
        raise NotImplementedError

    @classmethod
    def check_integrity(cls, files):
        """Raise :class:`SnapshotError` when a file is truncated or malformed."""

    @classmethod
    def set_units(cls, sim, units):
        """Replace the units pynbody inferred by those the user configured (keys as in ``files``)."""
        units = units or {}
        length_unit = units.get("length_unit")
        if length_unit is not None:
            # The box keeps its number in the file's unit; only the unit attached to it changes.
            box_value = sim.properties["boxsize"].in_units(sim["pos"].units, **sim.conversion_context())
            sim["pos"].units = pynbody.units.Unit(length_unit)
            sim.properties["boxsize"] = float(box_value) * pynbody.units.Unit(length_unit)
        for array, key in (("mass", "mass_unit"), ("vel", "velocity_unit")):
            if units.get(key) is not None:
                sim[array].units = pynbody.units.Unit(units[key])

    @classmethod
    def load(cls, path, units=None):
        path = Path(path)
        files = cls.files(path)
        cls.check_integrity(files)
        try:
            with warnings.catch_warnings():
                # GADGET files keep the particle mass in the header and put no unit attributes
                # on the datasets. pynbody warns about both, then applies the h^-1 and a factors
                # of GADGET's comoving units, which is what halo-ml expects.
                warnings.filterwarnings("ignore", "Masses are either stored in the header", UserWarning)
                warnings.filterwarnings("ignore", "Unable to infer units from HDF attributes", UserWarning)
                sim = pynbody.load(str(cls.pynbody_path(path, files)))
                sim["mass"], sim["pos"]
            cls.set_units(sim, units)
            file_length_in_mpc_h = float(sim["pos"].units.ratio(LENGTH_UNIT, **sim.conversion_context()))
            # Reading the arrays now, so that a truncated file fails here, with its name.
            sim["pos"].convert_units(LENGTH_UNIT)
            sim["mass"].convert_units(MASS_UNIT)
            sim["iord"]
        except _READ_ERRORS as error:
            raise SnapshotError(
                f"could not read snapshot {path} as {cls.format_name}: {type(error).__name__}: {error}. "
                f"The file may be truncated or corrupt; check it, or write it again") from error
        return Snapshot(path=path, files=files, format=cls.format_name, sim=sim,
                        file_length_in_mpc_h=file_length_in_mpc_h)

    @classmethod
    def pynbody_path(cls, path, files):
        return path


class GadgetHDF5Loader(SnapshotLoader):
    """GADGET HDF5 snapshots (GADGET-3 and GADGET-4 with SnapFormat 3), one file or ``.N.hdf5`` pieces."""

    format_name = "GADGET HDF5"

    @classmethod
    def _first_file(cls, path):
        candidates = [path, path.with_name(path.name + ".hdf5")]
        stem = path.name[:-len(".hdf5")] if path.name.endswith(".hdf5") else path.name
        candidates.append(path.with_name(stem + ".0.hdf5"))
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        return None

    @classmethod
    def can_load(cls, path):
        first = cls._first_file(Path(path))
        return first is not None and h5py.is_hdf5(first)

    @classmethod
    def files(cls, path):
        first = cls._first_file(path)
        try:
            with h5py.File(first, "r") as stream:
                n_files = int(stream["Header"].attrs["NumFilesPerSnapshot"])
        except (OSError, KeyError) as error:
            raise SnapshotError(f"snapshot {first} is not a readable GADGET HDF5 snapshot "
                                f"(no Header/NumFilesPerSnapshot): {error}") from error
        if n_files == 1:
            return [first]
        stem = re.sub(r"\.0\.hdf5$", "", first.name)
        return [first.with_name(f"{stem}.{number}.hdf5") for number in range(n_files)]

    @classmethod
    def check_integrity(cls, files):
        _require_pieces(files)
        for file in files:
            try:
                with h5py.File(file, "r") as stream:
                    counts = np.asarray(stream["Header"].attrs["NumPart_ThisFile"], dtype=np.int64)
                    for kind, count in enumerate(counts):
                        if count == 0:
                            continue
                        group = stream[f"PartType{kind}"]
                        for name in ("Coordinates", "ParticleIDs"):
                            if group[name].shape[0] != count:
                                raise SnapshotError(
                                    f"snapshot {file} is inconsistent: PartType{kind}/{name} has "
                                    f"{group[name].shape[0]} rows but the header says {count}")
                        group["Coordinates"][-1]
            except (OSError, KeyError) as error:
                raise SnapshotError(f"snapshot {file} is truncated or corrupt: {error}") from error

    @classmethod
    def set_units(cls, sim, units):
        """Keep the units the file states: the unit settings are for binary snapshots only."""
        if any(value is not None for value in (units or {}).values()):
            logger.info("ignoring the configured units %s: GADGET HDF5 snapshots state their own units", units)

    @classmethod
    def pynbody_path(cls, path, files):
        # pynbody opens a split HDF5 snapshot by its common name, without ".0.hdf5".
        return files[0] if len(files) == 1 else files[0].with_name(re.sub(r"\.0\.hdf5$", "", files[0].name))


class GadgetBinaryLoader(SnapshotLoader):
    """Legacy binary snapshots in format 1 and format 2 (block-labelled), one file or ``.N`` pieces."""

    format_name = "GADGET binary"

    @classmethod
    def _first_file(cls, path):
        for candidate in (path, path.with_name(path.name + ".0")):
            if candidate.is_file():
                return candidate
        return None

    @staticmethod
    def _first_record(file):
        with open(file, "rb") as stream:
            head = stream.read(16)
        if len(head) < 16:
            return None
        for order in ("<", ">"):
            (size,) = struct.unpack(order + "i", head[:4])
            if size == 256:
                return order, 1
            if size == 8 and head[4:8] == b"HEAD":
                return order, 2
        return None

    @classmethod
    def can_load(cls, path):
        first = cls._first_file(Path(path))
        return first is not None and not h5py.is_hdf5(first) and cls._first_record(first) is not None

    @classmethod
    def files(cls, path):
        first = cls._first_file(path)
        order, _ = cls._first_record(first)
        header = cls._header_bytes(first)
        (n_files,) = struct.unpack(order + "i", header[124:128])
        if first == path or n_files <= 1:
            return [first]
        stem = first.name[:-len(".0")]
        return [first.with_name(f"{stem}.{number}") for number in range(n_files)]

    @classmethod
    def _header_bytes(cls, file):
        order, version = cls._first_record(file)
        with open(file, "rb") as stream:
            if version == 2:
                stream.seek(16)
            (size,) = struct.unpack(order + "i", stream.read(4))
            return stream.read(size)

    @classmethod
    def check_integrity(cls, files):
        # Walk the Fortran records: every record starts and ends with its byte count, so a
        # truncated or overwritten file shows as a record that runs past the end or whose two
        # markers differ.
        _require_pieces(files)
        for file in files:
            record = cls._first_record(file)
            if record is None:
                raise SnapshotError(f"snapshot {file} does not start with a GADGET header record")
            order = record[0]
            file_size = file.stat().st_size
            with open(file, "rb") as stream:
                offset = 0
                while offset < file_size:
                    stream.seek(offset)
                    marker = stream.read(4)
                    if len(marker) < 4:
                        raise SnapshotError(f"snapshot {file} is truncated at byte {offset}")
                    (size,) = struct.unpack(order + "i", marker)
                    end = offset + 4 + size
                    if size < 0 or end + 4 > file_size:
                        raise SnapshotError(
                            f"snapshot {file} is truncated or corrupt: the record at byte {offset} "
                            f"claims {size} bytes but the file has {file_size} bytes")
                    stream.seek(end)
                    (closing,) = struct.unpack(order + "i", stream.read(4))
                    if closing != size:
                        raise SnapshotError(
                            f"snapshot {file} is corrupt: the record at byte {offset} starts with "
                            f"length {size} and ends with {closing}")
                    offset = end + 4

    @classmethod
    def load(cls, path, units=None):
        snapshot = super().load(path, units)
        if (units or {}).get("length_unit") is None and snapshot.box_size_mpc_h > _MAX_PLAUSIBLE_BOX_MPC_H:
            raise SnapshotError(
                f"snapshot {path} has a box of {snapshot.box_size_mpc_h:g} Mpc/h in pynbody's default "
                f"length unit for binary GADGET files, which carry no unit metadata; set "
                f"files.length_unit (for example 'kpc a h^-1') and, if needed, files.mass_unit")
        return snapshot


SNAPSHOT_LOADERS = (GadgetHDF5Loader, GadgetBinaryLoader)


def load_snapshot(path, units=None):
    """Read a GADGET snapshot in any supported format.

    Parameters
    ----------
    path : path-like
        The snapshot file, or the common name of a split snapshot (``snapshot_000`` for
        ``snapshot_000.0``, ``snapshot_000.1``, ... or ``snapshot_000.0.hdf5``, ...).
    units : dict, optional
        ``length_unit``, ``mass_unit``, ``velocity_unit`` in pynbody's notation, for files
        without unit metadata; ``None`` values keep what pynbody infers.

    Returns
    -------
    Snapshot
        Positions in comoving Mpc/h, masses in Msun.

    Raises
    ------
    SnapshotError
        When the file is missing, in no supported format, truncated or corrupt.
    """
    path = Path(path)
    for loader in SNAPSHOT_LOADERS:
        if loader.can_load(path):
            with np.errstate(all="ignore"):
                snapshot = loader.load(path, units)
            logger.info("read %s snapshot %s (%d file(s), %d particles, a = %.6g, box %.6g Mpc/h)",
                        snapshot.format, path, len(snapshot.files), len(snapshot), snapshot.scale_factor,
                        snapshot.box_size_mpc_h)
            return snapshot
    if not (path.exists() or path.with_name(path.name + ".0").exists()
            or path.with_name(path.name + ".hdf5").exists()):
        raise SnapshotError(f"snapshot {path} not found (nor {path.name}.0 or {path.name}.hdf5 next to it); "
                            f"check the path in the configuration")
    raise SnapshotError(f"snapshot {path} is in no supported format (GADGET HDF5, or GADGET binary "
                        f"format 1 or 2); it may be corrupt or another code's output")


# --------------------------------------------------------------------------------------------
# Halo catalogue loaders


@dataclasses.dataclass
class HaloCatalogue:
    """Group membership, binding and group geometry from a FoF/SUBFIND catalogue.

    Attributes
    ----------
    path : Path
        The catalogue file (or GADGET-3 ``groups_XXX`` folder).
    format : str
        Human-readable format name.
    group_index : ndarray of int64
        0-based FoF group of each particle of the final snapshot (file order), -1 for none.
    bound : ndarray of bool
        Whether a SUBFIND subhalo binds the particle; for a FoF-only catalogue every member.
    centre_mpc_h : ndarray, shape (n_groups, 3)
        Group centre (GADGET's GroupPos, the minimum-potential position), comoving Mpc/h.
    r200m_mpc_h : ndarray, shape (n_groups,)
        Group R_200m relative to the mean density (Group_R_Mean200), comoving Mpc/h; 0 where
        the finder did not compute one.
    n_subhalos : int or None
        ``None`` for a FoF-only catalogue.
    files : list of Path
        Every file that was read, for provenance; ``[path]`` when not given.
    """

    path: Path
    format: str
    group_index: np.ndarray
    bound: np.ndarray
    centre_mpc_h: np.ndarray
    r200m_mpc_h: np.ndarray
    n_subhalos: object
    files: list = None

    def __post_init__(self):
        if self.files is None:
            self.files = [self.path]

    @property
    def n_groups(self):
        return len(self.r200m_mpc_h)


class HaloCatalogueLoader:
    """Base class of the halo catalogue loaders: ``can_load`` a path, then ``load`` it."""

    format_name = ""

    @classmethod
    def can_load(cls, path):
        raise NotImplementedError

    @classmethod
    def load(cls, snapshot, path):
        raise NotImplementedError


def _pynbody_group_indices(halos):
    # pynbody numbers halos its own way per format; the mapper turns numbers into 0-based indices.
    numbers = np.asarray(halos.get_group_array(), dtype=np.int64)
    indices = np.full(numbers.shape, -1, dtype=np.int64)
    member = numbers >= 0
    if member.any():
        indices[member] = np.asarray(halos.number_mapper.number_to_index(numbers[member]))
    return indices


def _pynbody_length_property(snapshot, halos, key, path, in_file_units=False):
    properties = halos.get_properties_all_halos(with_units=True)
    if key not in properties:
        raise HaloCatalogueError(f"halo catalogue {path} has no '{key}' property, which halo-ml needs "
                                 f"for r/R_200m")
    values = properties[key]
    units = getattr(values, "units", None)
    if (not in_file_units and isinstance(units, pynbody.units.UnitBase)
            and not isinstance(units, pynbody.units.NoUnit)):
        return np.asarray(values.in_units(LENGTH_UNIT, **snapshot.sim.conversion_context()), dtype=np.float64)
    # NOTE: without units from pynbody, the values are taken to be in the snapshot file's
    # length unit, which is how GADGET writes them.
    return np.asarray(values, dtype=np.float64) * snapshot.file_length_in_mpc_h


def _catalogue_from_pynbody(snapshot, path, format_name, groups, subhalos, centre_key, radius_key,
                            in_file_units=False):
    group_index = _pynbody_group_indices(groups)
    if subhalos is None:
        bound = group_index >= 0
    else:
        bound = (group_index >= 0) & (np.asarray(subhalos.get_group_array()) >= 0)
    return HaloCatalogue(
        path=Path(path), format=format_name, group_index=group_index, bound=bound,
        centre_mpc_h=_pynbody_length_property(snapshot, groups, centre_key, path, in_file_units).reshape(-1, 3),
        r200m_mpc_h=_pynbody_length_property(snapshot, groups, radius_key, path, in_file_units).reshape(-1),
        n_subhalos=None if subhalos is None else len(subhalos))


def _hdf5_groups(path):
    path = Path(path)
    if not path.is_file() or not h5py.is_hdf5(path):
        return None
    with h5py.File(path, "r") as stream:
        return set(stream.keys())


def _check_gadget4_catalogue_matches(snapshot, path):
    with h5py.File(path, "r") as stream:
        header = stream["Header"].attrs
        time = float(header["Time"])
        box = float(header["BoxSize"]) if "BoxSize" in header else None
        n_ids = int(header.get("Nids_Total", 0))
    _check_catalogue_matches(snapshot, path, time, box, n_ids)


def _check_catalogue_matches(snapshot, path, time, box, n_ids):
    """Raise :class:`HaloCatalogueError` unless the catalogue's time, box (file unit) and ID count fit the snapshot."""
    if not np.isclose(time, snapshot.scale_factor, rtol=1e-5):
        raise HaloCatalogueError(
            f"halo catalogue {path} is for scale factor a = {time:.6g}, but snapshot {snapshot.path} "
            f"is at a = {snapshot.scale_factor:.6g}; give the catalogue of the final snapshot")
    # Compare in the files' own length unit, which GADGET-4 shares between snapshot and catalogue.
    snapshot_box = snapshot.box_size_mpc_h / snapshot.file_length_in_mpc_h
    if box is not None and not np.isclose(box, snapshot_box, rtol=1e-5):
        raise HaloCatalogueError(
            f"halo catalogue {path} has BoxSize {box:g} but snapshot {snapshot.path} has {snapshot_box:g} "
            f"(both in the files' length unit); give the catalogue of this simulation")
    if n_ids > len(snapshot):
        raise HaloCatalogueError(
            f"halo catalogue {path} lists {n_ids} particles in groups, more than the {len(snapshot)} "
            f"particles of snapshot {snapshot.path}; give the catalogue of this snapshot")


class Gadget4SubfindHDF5Loader(HaloCatalogueLoader):
    """SUBFIND catalogues as GADGET-4 writes them (``fof_subhalo_tab_XXX.hdf5``), read by pynbody."""

    format_name = "GADGET-4 SUBFIND HDF5"

    @classmethod
    def can_load(cls, path):
        groups = _hdf5_groups(path)
        return (groups is not None and {"Header", "Group", "Subhalo"} <= groups
                and Path(path).name.startswith("fof_subhalo_tab_"))

    @classmethod
    def load(cls, snapshot, path):
        from pynbody.halo.subfindhdf import Gadget4SubfindHDFCatalogue

        _check_gadget4_catalogue_matches(snapshot, path)
        groups = Gadget4SubfindHDFCatalogue(snapshot.sim, filename=str(path))
        with h5py.File(path, "r") as stream:
            n_subhalos = int(stream["Header"].attrs.get("Nsubhalos_Total", 0))
        # SUBFIND found no bound structure at all: every FoF member counts, as for a FoF-only file.
        subhalos = Gadget4SubfindHDFCatalogue(snapshot.sim, filename=str(path), subhalos=True) \
            if n_subhalos > 0 else None
        return _catalogue_from_pynbody(snapshot, path, cls.format_name, groups, subhalos,
                                       "GroupPos", "Group_R_Mean200")


class Gadget4FoFHDF5Loader(HaloCatalogueLoader):
    """FoF-only catalogues as GADGET-4 writes them without SUBFIND (HDF5 with no ``Subhalo`` group).

    pynbody 2.8 reads GADGET-4 catalogues only under the name ``fof_subhalo_tab_*``, so this
    loader reads the few datasets it needs with h5py. GADGET-4 writes the snapshot's particles in
    group order, so group g is the ``GroupLenType[g, 1]`` particles from ``GroupOffsetType[g, 1]``.
    """

    format_name = "GADGET-4 FoF HDF5 (no subhalos)"

    @classmethod
    def can_load(cls, path):
        groups = _hdf5_groups(path)
        return groups is not None and {"Header", "Group"} <= groups and "Subhalo" not in groups

    @classmethod
    def load(cls, snapshot, path):
        _check_gadget4_catalogue_matches(snapshot, path)
        with h5py.File(path, "r") as stream:
            group = stream["Group"]
            lengths = group["GroupLenType"][:, 1].astype(np.int64)
            offsets = group["GroupOffsetType"][:, 1].astype(np.int64)
            centre = group["GroupPos"][:].astype(np.float64) * snapshot.file_length_in_mpc_h
            r200m = group["Group_R_Mean200"][:].astype(np.float64) * snapshot.file_length_in_mpc_h
        group_index = _members_from_offsets(offsets, lengths, snapshot, path)
        return HaloCatalogue(path=Path(path), format=cls.format_name, group_index=group_index,
                             bound=group_index >= 0, centre_mpc_h=centre.reshape(-1, 3),
                             r200m_mpc_h=r200m.reshape(-1), n_subhalos=None)


class Gadget3SubfindBinaryLoader(HaloCatalogueLoader):
    """SUBFIND catalogues as GADGET-3 writes them (binary ``groups_XXX/subhalo_tab_XXX.N``), read by pynbody."""

    format_name = "GADGET-3 SUBFIND binary"

    @classmethod
    def can_load(cls, path):
        path = Path(path)
        return path.is_dir() and path.name.startswith("groups_") and any(path.glob("subhalo_tab_*"))

    @classmethod
    def load(cls, snapshot, path):
        from pynbody.halo.subfind import SubfindCatalogue

        # NOTE: tested on synthetic files in the layout pynbody 2.8 reads, not on real GADGET-3 output.
        n_subhalos = cls._total_subhalos(path)
        if n_subhalos == 0:
            raise HaloCatalogueError(
                f"halo catalogue {path} contains no subhalos, and pynbody {pynbody.__version__} cannot read "
                f"a GADGET-3 SUBFIND catalogue without subhalos; give a catalogue with subhalos")
        groups = SubfindCatalogue(snapshot.sim, filename=str(path))
        subhalos = SubfindCatalogue(snapshot.sim, filename=str(path), subhalos=True)
        # pynbody attaches its default GADGET units to the catalogue, not the configured
        # files.length_unit, so the values are taken in the file's unit, which GADGET-3 shares
        # between snapshot and catalogue.
        catalogue = _catalogue_from_pynbody(snapshot, path, cls.format_name, groups, subhalos, "pos", "rmean_200",
                                            in_file_units=True)
        number = path.name.removeprefix("groups_")
        catalogue.files = sorted(path.glob(f"subhalo_tab_{number}.*")) + sorted(path.glob(f"subhalo_ids_{number}.*"))
        return catalogue

    @staticmethod
    def _total_subhalos(path):
        # Header of subhalo_tab_XXX.0: int Ngroups, TotNgroups, Nids, long long TotNids, int NTask,
        # Nsubgroups, TotNsubgroups.
        number = path.name.removeprefix("groups_")
        first = path / f"subhalo_tab_{number}.0"
        header = first.read_bytes()[:32] if first.is_file() else b""
        if len(header) < 32:
            raise HaloCatalogueError(f"halo catalogue file {first} is missing or shorter than its 32-byte header")
        return int(np.frombuffer(header, dtype=np.int32)[7])


class Gadget4BinaryCatalogueLoader(HaloCatalogueLoader):
    """GADGET-4's own binary group catalogue in format 2 (SnapFormat 2, block-labelled), read directly.

    pynbody 2.8 has no reader for it. Each block is a Fortran record holding a 4-character label
    and the length of the next record plus 8, then a record with the values of one field for every
    group (labels starting with ``F``) or subhalo (``S``). The 80-byte header record contains int64
    Ngroups, Nsubhalos, Nids and their totals over all files, int32 NumFiles and 4 bytes of padding,
    then float64 Time, Redshift and BoxSize. As in the HDF5 catalogue, the snapshot's particles are
    in group order, so ``GroupOffsetType`` and ``SubhaloOffsetType`` are positions in the snapshot.
    tests/test_snapshots.py compares the decoded fields with GADGET-4's HDF5 catalogue of the same
    simulation. SnapFormat 1 files, which have no block labels, are not recognised.
    """

    format_name = "GADGET-4 SUBFIND binary (format 2)"

    # Label: (HDF5 name, kind of number, values per group or subhalo). The element size comes from
    # the record length, so builds that write double precision or 64-bit integers read too.
    _FIELDS = {
        "FLEN": ("GroupLen", "i", 1),
        "FLTY": ("GroupLenType", "i", 6),
        "FLOT": ("GroupOffsetType", "i", 6),
        "FPOS": ("GroupPos", "f", 3),
        "FRM2": ("Group_R_Mean200", "f", 1),
        "SLTY": ("SubhaloLenType", "i", 6),
        "SLOT": ("SubhaloOffsetType", "i", 6),
    }
    _HEADER_BYTES = 80
    _DARK_MATTER_TYPE = 1

    @classmethod
    def can_load(cls, path):
        path = Path(path)
        if not path.is_file() or h5py.is_hdf5(path):
            return False
        with open(path, "rb") as stream:
            head = stream.read(8)
        return len(head) == 8 and head[4:8] == b"HEAD" and path.name.startswith(("fof_subhalo_tab", "fof_tab"))

    @classmethod
    def load(cls, snapshot, path):
        path = Path(path)
        first = cls._read_file(path)
        header = first[0]
        files = cls._files(path, header["num_files"])
        pieces = [first if file == path else cls._read_file(file) for file in files]
        fields = {}
        for name, _, _ in cls._FIELDS.values():
            parts = [piece_fields[name] for _, piece_fields in pieces if name in piece_fields]
            fields[name] = np.concatenate(parts) if parts else np.empty(0)
        _check_catalogue_matches(snapshot, path, header["time"], header["box_size"], header["total_ids"])

        group_lengths = fields["GroupLenType"].reshape(-1, 6)[:, cls._DARK_MATTER_TYPE]
        group_offsets = fields["GroupOffsetType"].reshape(-1, 6)[:, cls._DARK_MATTER_TYPE]
        if len(group_lengths) != header["total_groups"]:
            raise HaloCatalogueError(f"halo catalogue {path} lists {len(group_lengths)} groups in its files "
                                     f"but its header says {header['total_groups']}; the files may be incomplete")
        # Two blocks that must agree: a mismatch means the blocks are not laid out as this reader assumes.
        if not np.array_equal(fields["GroupLen"], fields["GroupLenType"].reshape(-1, 6).sum(axis=1)):
            raise HaloCatalogueError(
                f"halo catalogue {path}: GroupLen (block FLEN) differs from the sum of GroupLenType (FLTY); "
                f"the file is corrupt or written in a layout this reader does not know")
        group_index = _members_from_offsets(group_offsets, group_lengths, snapshot, path)

        n_subhalos = header["total_subhalos"]
        if n_subhalos > 0:
            subhalo_lengths = fields["SubhaloLenType"].reshape(-1, 6)[:, cls._DARK_MATTER_TYPE]
            subhalo_offsets = fields["SubhaloOffsetType"].reshape(-1, 6)[:, cls._DARK_MATTER_TYPE]
            bound = (group_index >= 0) & (_members_from_offsets(subhalo_offsets, subhalo_lengths, snapshot, path) >= 0)
        else:
            bound = group_index >= 0
        return HaloCatalogue(
            path=path, format=cls.format_name, group_index=group_index, bound=bound,
            centre_mpc_h=fields["GroupPos"].astype(np.float64).reshape(-1, 3) * snapshot.file_length_in_mpc_h,
            r200m_mpc_h=fields["Group_R_Mean200"].astype(np.float64).reshape(-1) * snapshot.file_length_in_mpc_h,
            n_subhalos=n_subhalos if n_subhalos > 0 else None, files=files)

    @staticmethod
    def _files(path, num_files):
        if num_files <= 1:
            return [path]
        # NOTE: split catalogues (name.0, name.1, ...) follow the snapshots' naming; no split
        # GADGET-4 binary catalogue has been read yet.
        stem = re.sub(r"\.\d+$", "", path.name)
        return [path.with_name(f"{stem}.{number}") for number in range(num_files)]

    @classmethod
    def _read_file(cls, path):
        """Decode one file into its header (a dict) and the fields in ``_FIELDS`` (HDF5 name -> flat array)."""
        if not path.is_file():
            raise HaloCatalogueError(f"halo catalogue piece {path} is missing")
        order, blocks = _labelled_records(path)
        raw = blocks.get("HEAD", b"")
        if len(raw) != cls._HEADER_BYTES:
            raise HaloCatalogueError(
                f"halo catalogue {path} has no {cls._HEADER_BYTES}-byte HEAD block, so it is not a GADGET-4 "
                f"group catalogue in format 2")
        counts = np.frombuffer(raw, dtype=order + "i8", count=6)
        header = {
            "groups": int(counts[0]), "subhalos": int(counts[1]),
            "total_groups": int(counts[3]), "total_subhalos": int(counts[4]), "total_ids": int(counts[5]),
            "num_files": int(np.frombuffer(raw, dtype=order + "i4", count=1, offset=48)[0]),
        }
        header["time"], header["redshift"], header["box_size"] = (
            float(value) for value in np.frombuffer(raw, dtype=order + "f8", count=3, offset=56))

        fields = {}
        for label, (name, kind, components) in cls._FIELDS.items():
            rows = header["groups"] if label.startswith("F") else header["subhalos"]
            if rows == 0:
                continue
            if label not in blocks:
                raise HaloCatalogueError(f"halo catalogue {path} has no {label} block ({name}), which halo-ml needs")
            raw = blocks[label]
            item_size, remainder = divmod(len(raw), rows * components)
            if remainder or item_size not in (4, 8):
                raise HaloCatalogueError(
                    f"halo catalogue {path}: block {label} ({name}) has {len(raw)} bytes, which is not "
                    f"{rows} x {components} values of 4 or 8 bytes; the file is corrupt or in another layout")
            fields[name] = np.frombuffer(raw, dtype=f"{order}{kind}{item_size}")
        return header, fields


def _labelled_records(path):
    """Read a GADGET format-2 file into its byte order ('<' or '>') and {label: payload bytes}.

    Of two blocks with one label, the first is kept. Raises :class:`HaloCatalogueError` when a record runs past the end of the file or its two
    length markers differ.
    """
    data = Path(path).read_bytes()
    order = "<" if data[:4] == struct.pack("<i", 8) else ">"
    blocks = {}
    offset = 0
    label = None
    while offset < len(data):
        if offset + 4 > len(data):
            raise HaloCatalogueError(f"halo catalogue {path} is truncated at byte {offset}")
        (size,) = struct.unpack(order + "i", data[offset:offset + 4])
        end = offset + 4 + size
        if size < 0 or end + 4 > len(data) or data[end:end + 4] != data[offset:offset + 4]:
            raise HaloCatalogueError(
                f"halo catalogue {path} is truncated or corrupt: the record at byte {offset} claims {size} "
                f"bytes, the file has {len(data)} bytes, or its closing length marker differs")
        payload = data[offset + 4:end]
        if label is None:
            if size != 8:
                raise HaloCatalogueError(f"halo catalogue {path}: expected a block label record at byte {offset}")
            label = payload[:4].decode("ascii", errors="replace")
        else:
            # GADGET-4 (commit 1e171a4, June 2024) labels both SubhaloSpin and SubhaloVelDisp "SSPI".
            blocks.setdefault(label, payload)
            label = None
        offset = end + 4
    return order, blocks


def _members_from_offsets(offsets, lengths, snapshot, path):
    """Return each snapshot particle's 0-based structure index (-1 for none) from file offsets and lengths."""
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    if np.any(offsets + lengths > len(snapshot)):
        raise HaloCatalogueError(
            f"halo catalogue {path} has groups or subhalos that end beyond the {len(snapshot)} particles of "
            f"snapshot {snapshot.path}; give the catalogue of this snapshot")
    # File positions of every member: each structure's offset plus 0, 1, ..., length - 1.
    first_member = np.cumsum(lengths) - lengths
    positions = np.repeat(offsets - first_member, lengths) + np.arange(int(lengths.sum()))
    index = np.full(len(snapshot), -1, dtype=np.int64)
    index[positions] = np.repeat(np.arange(len(lengths)), lengths)
    return index


HALO_CATALOGUE_LOADERS = (Gadget4SubfindHDF5Loader, Gadget4FoFHDF5Loader, Gadget3SubfindBinaryLoader,
                          Gadget4BinaryCatalogueLoader)


def find_halo_catalogue(snapshot_path):
    """Return the catalogue file GADGET writes next to a snapshot, or ``None`` when there is none.

    ``snapshot_XXX[.hdf5]`` pairs with ``fof_subhalo_tab_XXX[.hdf5]`` or ``fof_tab_XXX[.hdf5]``
    in the same folder (GADGET-4), or with the folder ``groups_XXX`` (GADGET-3).
    """
    path = Path(snapshot_path)
    match = re.search(r"_(\d+)(\.\d+)?(\.hdf5)?$", path.name)
    if match is None:
        return None
    number = match.group(1)
    folder = path.parent
    candidates = [folder / f"{stem}_{number}{suffix}"
                  for stem in ("fof_subhalo_tab", "fof_tab") for suffix in (".hdf5", ".0.hdf5", "", ".0")]
    candidates.append(folder / f"groups_{number}")
    for candidate in candidates:
        if candidate.exists():
            return candidate
    return None


def load_halo_catalogue(snapshot, path=None):
    """Read the halo catalogue of ``snapshot`` in any supported format.

    Parameters
    ----------
    snapshot : Snapshot
        The final (z=0) snapshot the catalogue belongs to.
    path : path-like, optional
        The catalogue file (or GADGET-3 ``groups_XXX`` folder); ``None`` looks next to the snapshot.

    Raises
    ------
    HaloCatalogueError
        When no catalogue is found, it is in no supported format, or it belongs to another snapshot.
    """
    if path is None:
        path = find_halo_catalogue(snapshot.path)
        if path is None:
            raise HaloCatalogueError(
                f"no halo catalogue found next to snapshot {snapshot.path} (looked for fof_subhalo_tab_XXX, "
                f"fof_tab_XXX and groups_XXX); set files.halo_catalogue")
    path = Path(path)
    if not path.exists():
        raise HaloCatalogueError(f"halo catalogue {path} not found; check files.halo_catalogue")
    for loader in HALO_CATALOGUE_LOADERS:
        if loader.can_load(path):
            try:
                catalogue = loader.load(snapshot, path)
            except HaloCatalogueError:
                raise
            except _READ_ERRORS as error:
                raise HaloCatalogueError(
                    f"could not read halo catalogue {path} as {loader.format_name}: "
                    f"{type(error).__name__}: {error}") from error
            logger.info("read %s catalogue %s: %d FoF groups, %s subhalos", catalogue.format, path,
                        catalogue.n_groups, "no" if catalogue.n_subhalos is None else catalogue.n_subhalos)
            return catalogue
    raise HaloCatalogueError(
        f"halo catalogue {path} is in no supported format (GADGET-4 fof_subhalo_tab or fof_tab HDF5, "
        f"GADGET-4 fof_subhalo_tab binary format 2, GADGET-3 SUBFIND groups_XXX folder)")


def snapshot_input_files(path):
    """Return the files a workflow rule should list as inputs for the snapshot at ``path``.

    A split snapshot (``name.0``, ``name.1``, ... or ``name.0.hdf5``, ...) gives its pieces;
    anything else gives ``[path]``, also when the file does not exist yet (an output of another
    rule) or at all (so that Snakemake reports it as a missing input).
    """
    path = Path(path)
    if path.exists():
        return [str(path)]
    for pattern in (f"{path.name}.[0-9]*", f"{path.name.removesuffix('.hdf5')}.[0-9]*.hdf5"):
        pieces = sorted(path.parent.glob(pattern))
        if pieces:
            return [str(piece) for piece in pieces]
    return [str(path)]
