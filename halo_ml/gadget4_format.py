"""Writing snapshots and group catalogues in the HDF5 layout of GADGET-4 (SnapFormat 3).

The files contain what GADGET-4 (commit 1e171a4 of June 2024) writes for a dark-matter-only
run with FoF and SUBFIND, checked field by field against its output with h5py. Every file has
a ``Header`` group and ``Parameters`` and ``Config`` groups whose attributes are the run's
parameters and compile-time options. Snapshots have ``PartType1`` with ``Coordinates``,
``Velocities`` and ``ParticleIDs``; the first two carry GADGET-4's unit attributes
(``a_scaling``, ``h_scaling``, ``length_scaling``, ``mass_scaling``, ``velocity_scaling``,
``to_cgs``). Catalogues have ``Group``, ``Subhalo`` and an empty ``IDs`` group. pynbody 2.8 reads them with ``GadgetHDFSnap`` and ``Gadget4SubfindHDFCatalogue``.

Units are GADGET-4's internal ones: comoving kpc/h, 1e10 Msun/h and km/s. Snapshot velocities
are peculiar velocities divided by sqrt(a), as GADGET-4 stores them.

Each file is written under a temporary name in the target folder and renamed when complete,
so an interrupted job never leaves a file that looks finished.
"""

import contextlib
import json
import os
from pathlib import Path

import h5py
import numpy as np

from halo_ml.friends_of_friends import critical_density_internal

UNIT_LENGTH_CM = 3.085678e21
UNIT_MASS_G = 1.989e43
UNIT_VELOCITY_CM_S = 1e5
N_TYPES = 6
DARK_MATTER_TYPE = 1

# Unit attributes of the particle datasets, as GADGET-4 writes them.
COORDINATE_UNITS = {"a_scaling": 1.0, "h_scaling": -1.0, "length_scaling": 1.0, "mass_scaling": 0.0,
                    "to_cgs": UNIT_LENGTH_CM, "velocity_scaling": 0.0}
VELOCITY_UNITS = {"a_scaling": 0.5, "h_scaling": 0.0, "length_scaling": 0.0, "mass_scaling": 0.0,
                  "to_cgs": UNIT_VELOCITY_CM_S, "velocity_scaling": 1.0}


@contextlib.contextmanager
def atomic_hdf5(path):
    """Open ``path`` for writing under a temporary name, and rename it into place on success."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(temporary, "w") as handle:
            yield handle
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def particle_mass(omega_m, box_size_kpc_h, particles_per_side):
    """Return the particle mass in 1e10 Msun/h: Omega_m rho_crit L^3 / N."""
    return omega_m * critical_density_internal() * box_size_kpc_h**3 / particles_per_side**3


def run_parameters(box_size_kpc_h, particles_per_side, cosmology, seed, a_start, a_end, softening_kpc_h):
    """Build the ``Parameters`` attributes of one demo run (GADGET-4 parameter names)."""
    return {
        "BoxSize": float(box_size_kpc_h),
        "ComovingIntegrationOn": np.int32(1),
        "Omega0": float(cosmology["omega_m"]),
        "OmegaLambda": float(cosmology["omega_lambda"]),
        "OmegaBaryon": float(cosmology["omega_b"]),
        "HubbleParam": float(cosmology["h"]),
        "Hubble": 0.1,
        "Sigma8": float(cosmology["sigma_8"]),
        "PrimordialIndex": float(cosmology["n_s"]),
        "UnitLength_in_cm": UNIT_LENGTH_CM,
        "UnitMass_in_g": UNIT_MASS_G,
        "UnitVelocity_in_cm_per_s": UNIT_VELOCITY_CM_S,
        "GravityConstantInternal": 0.0,
        "TimeBegin": float(a_start),
        "TimeMax": float(a_end),
        "NSample": np.int32(particles_per_side),
        "GridSize": np.int32(particles_per_side),
        "Seed": np.int32(seed % 2**31),
        "SnapFormat": np.int32(3),
        "NumFilesPerSnapshot": np.int32(1),
        "SnapshotFileBase": np.bytes_(b"snapshot"),
        "OutputListOn": np.int32(1),
        # The PM force is smoothed on the scale of one mesh cell. pynbody reads this as eps.
        "SofteningClassOfPartType1": np.int32(0),
        "SofteningComovingClass0": float(softening_kpc_h),
        "SofteningMaxPhysClass0": float(softening_kpc_h),
    }


def compile_options(particles_per_side, mesh_size, linking_length, min_group_particles):
    """Build the ``Config`` attributes: the GADGET-4 compile-time options that describe the run."""
    ids = "IDS_32BIT" if particles_per_side**3 < 2**32 else "IDS_64BIT"
    return {
        "PERIODIC": np.bytes_(b""),
        "SELFGRAVITY": np.bytes_(b""),
        "NTYPES": float(N_TYPES),
        "PMGRID": float(mesh_size),
        "NGENIC": float(particles_per_side),
        "NGENIC_2LPT": np.bytes_(b""),
        "CREATE_GRID": np.bytes_(b""),
        ids: np.bytes_(b""),
        "FOF": np.bytes_(b""),
        "FOF_LINKLENGTH": float(linking_length),
        "FOF_GROUP_MIN_LEN": float(min_group_particles),
        "FOF_PRIMARY_LINK_TYPES": float(2**DARK_MATTER_TYPE),
        "SUBFIND": np.bytes_(b""),
    }


def _per_type(value, dtype):
    array = np.zeros(N_TYPES, dtype=dtype)
    array[DARK_MATTER_TYPE] = value
    return array


def _write_common(handle, scale_factor, box_size_kpc_h, parameters, options, provenance):
    header = handle.create_group("Header")
    header.attrs["BoxSize"] = float(box_size_kpc_h)
    header.attrs["Time"] = float(scale_factor)
    header.attrs["Redshift"] = float(1.0 / scale_factor - 1.0)
    if provenance is not None:
        # Not a GADGET-4 attribute: readers that look up the standard names ignore it.
        header.attrs["HaloML_Provenance"] = json.dumps(provenance, sort_keys=True)
    parameter_group = handle.create_group("Parameters")
    for key, value in parameters.items():
        parameter_group.attrs[key] = value
    config_group = handle.create_group("Config")
    for key, value in options.items():
        config_group.attrs[key] = value
    return header


def write_snapshot(path, positions_kpc_h, velocities_km_s, ids, particle_mass_internal,
                   scale_factor, box_size_kpc_h, parameters, options, provenance=None):
    """Write one GADGET-4 HDF5 snapshot of dark-matter particles.

    Parameters
    ----------
    path : path-like
        Output file (``snapshot_NNN.hdf5``).
    positions_kpc_h : numpy.ndarray
        (N, 3) comoving positions in kpc/h, in the order they are to be written.
    velocities_km_s : numpy.ndarray
        (N, 3) peculiar velocities in km/s; divided by sqrt(a) on writing.
    ids : numpy.ndarray
        Particle IDs in the same order.
    particle_mass_internal : float
        Particle mass in 1e10 Msun/h (written to the header's mass table).
    scale_factor : float
        Of the snapshot.
    box_size_kpc_h : float
        Comoving box side.
    parameters, options : dict
        From :func:`run_parameters` and :func:`compile_options`.
    provenance : dict, optional
        Stored as JSON in the header attribute ``HaloML_Provenance``.
    """
    n_particles = len(ids)
    coordinates = np.mod(positions_kpc_h, box_size_kpc_h).astype(np.float32)
    # Rounding to float32 can turn a value just below the box size into the box size itself.
    coordinates[coordinates >= np.float32(box_size_kpc_h)] = 0.0
    velocities = (velocities_km_s / np.sqrt(scale_factor)).astype(np.float32)

    with atomic_hdf5(path) as handle:
        header = _write_common(handle, scale_factor, box_size_kpc_h, parameters, options, provenance)
        header.attrs["MassTable"] = _per_type(particle_mass_internal, np.float64)
        header.attrs["NumFilesPerSnapshot"] = np.int32(1)
        header.attrs["NumPart_ThisFile"] = _per_type(n_particles, np.uint64)
        header.attrs["NumPart_Total"] = _per_type(n_particles, np.uint64)

        particles = handle.create_group(f"PartType{DARK_MATTER_TYPE}")
        dataset = particles.create_dataset("Coordinates", data=coordinates)
        dataset.attrs.update(COORDINATE_UNITS)
        dataset = particles.create_dataset("Velocities", data=velocities)
        dataset.attrs.update(VELOCITY_UNITS)
        particles.create_dataset("ParticleIDs", data=ids)


def group_order(groups, n_particles):
    """Return the particle order SUBFIND writes: each group's members in turn, then the rest.

    Within a group the bound particles come first, from the most bound, then its unbound
    particles. Particles in no group follow in their original (ID) order.
    """
    if groups:
        grouped = np.concatenate([group.members for group in groups])
    else:
        grouped = np.zeros(0, dtype=np.int64)
    in_group = np.zeros(n_particles, dtype=bool)
    in_group[grouped] = True
    return np.concatenate([grouped, np.flatnonzero(~in_group)])


def write_group_catalogue(path, groups, ids, particle_mass_internal, scale_factor, box_size_kpc_h,
                          parameters, options, provenance=None):
    """Write ``fof_subhalo_tab_NNN.hdf5`` for groups measured by :func:`halo_ml.friends_of_friends.measure_groups`.

    Every group with a bound subhalo gets exactly one subhalo (``GroupNsubs`` 1), made of its
    bound particles. Groups where too few particles are bound have ``GroupNsubs`` 0 and
    ``GroupFirstSub`` -1. Offsets refer to the particle order of :func:`group_order`.

    Parameters
    ----------
    path : path-like
        Output file.
    groups : list of halo_ml.friends_of_friends.Group
        In group-number order.
    ids : numpy.ndarray
        Particle IDs indexed like the particle indices in ``groups``.
    particle_mass_internal, scale_factor, box_size_kpc_h, parameters, options, provenance
        As for :func:`write_snapshot`.
    """
    n_groups = len(groups)
    lengths = np.array([len(group.members) for group in groups], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if n_groups else lengths
    with_subhalo = [number for number, group in enumerate(groups) if group.n_bound > 0]
    first_sub = np.full(n_groups, -1, dtype=np.int64)
    first_sub[with_subhalo] = np.arange(len(with_subhalo))

    group_fields = {
        "GroupAscale": np.full(n_groups, scale_factor, dtype=np.float32),
        "GroupFirstSub": first_sub,
        "GroupLen": lengths.astype(np.int32),
        "GroupLenType": _type_columns(lengths, np.int32),
        "GroupMass": (lengths * particle_mass_internal).astype(np.float32),
        "GroupMassType": _type_columns(lengths * particle_mass_internal, np.float32),
        "GroupNsubs": (first_sub >= 0).astype(np.int32),
        "GroupOffsetType": _type_columns(offsets, np.int64),
        "GroupPos": _vectors([group.position for group in groups]),
        "GroupVel": _vectors([group.velocity for group in groups]),
    }
    for name in ("Crit200", "Crit500", "Mean200", "TopHat200"):
        group_fields[f"Group_M_{name}"] = np.array(
            [group.spherical_overdensity[name][1] for group in groups], dtype=np.float32)
        group_fields[f"Group_R_{name}"] = np.array(
            [group.spherical_overdensity[name][0] for group in groups], dtype=np.float32)

    subhalo_groups = [groups[number] for number in with_subhalo]
    sub_lengths = np.array([group.n_bound for group in subhalo_groups], dtype=np.int64)
    properties = [group.subhalo for group in subhalo_groups]
    half_mass = np.array([item["half_mass_radius"] for item in properties], dtype=np.float32)
    subhalo_fields = {
        "SubhaloCM": _vectors([item["centre_of_mass"] for item in properties]),
        "SubhaloGroupNr": np.array(with_subhalo, dtype=np.int64),
        "SubhaloHalfmassRad": half_mass,
        "SubhaloHalfmassRadType": _type_columns(half_mass, np.float32),
        "SubhaloIDMostbound": np.array([ids[item["most_bound_index"]] for item in properties], dtype=ids.dtype),
        "SubhaloLen": sub_lengths.astype(np.int32),
        "SubhaloLenType": _type_columns(sub_lengths, np.int32),
        "SubhaloMass": (sub_lengths * particle_mass_internal).astype(np.float32),
        "SubhaloMassType": _type_columns(sub_lengths * particle_mass_internal, np.float32),
        "SubhaloOffsetType": _type_columns(offsets[with_subhalo], np.int64),
        "SubhaloParentRank": np.zeros(len(with_subhalo), dtype=np.int32),
        "SubhaloPos": _vectors([item["position"] for item in properties]),
        "SubhaloRankInGr": np.zeros(len(with_subhalo), dtype=np.int32),
        "SubhaloVel": _vectors([item["velocity"] for item in properties]),
        "SubhaloVelDisp": np.array([item["velocity_dispersion"] for item in properties], dtype=np.float32),
        "SubhaloVmax": np.array([item["vmax"] for item in properties], dtype=np.float32),
        "SubhaloVmaxRad": np.array([item["vmax_radius"] for item in properties], dtype=np.float32),
    }

    with atomic_hdf5(path) as handle:
        header = _write_common(handle, scale_factor, box_size_kpc_h, parameters, options, provenance)
        header.attrs["Ngroups_ThisFile"] = np.uint64(n_groups)
        header.attrs["Ngroups_Total"] = np.uint64(n_groups)
        header.attrs["Nids_ThisFile"] = np.uint64(lengths.sum())
        header.attrs["Nids_Total"] = np.uint64(lengths.sum())
        header.attrs["Nsubhalos_ThisFile"] = np.uint64(len(with_subhalo))
        header.attrs["Nsubhalos_Total"] = np.uint64(len(with_subhalo))
        header.attrs["NumFiles"] = np.int32(1)
        for name, fields in (("Group", group_fields), ("Subhalo", subhalo_fields)):
            group = handle.create_group(name)
            for key, value in fields.items():
                group.create_dataset(key, data=value)
        handle.create_group("IDs")


def _type_columns(values, dtype):
    columns = np.zeros((len(values), N_TYPES), dtype=dtype)
    columns[:, DARK_MATTER_TYPE] = values
    return columns


def _vectors(rows):
    return np.asarray(rows, dtype=np.float32).reshape(-1, 3)
