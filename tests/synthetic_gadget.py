"""Write small synthetic simulations in GADGET-4's HDF5 layout, with known labels and positions.

``write_simulation(..., layout="gadget3")`` writes GADGET-3's binary snapshots and SUBFIND
catalogue instead.

Used by the ingest tests and by benchmarks/bench_ingest.py. Files follow GADGET-4's conventions:
lengths in kpc/h, masses in 1e10 Msun/h, the particle mass in the header's mass table, and the
z=0 particles written in group order (group 0's subhalo members, its unbound members, group 1,
... then the particles outside groups), which is what pynbody's GADGET-4 catalogue reader expects.
"""

from pathlib import Path

import h5py
import numpy as np

UNIT_LENGTH_CM = 3.085678e21
UNIT_MASS_G = 1.989e43
UNIT_VELOCITY_CM_S = 1e5
SOLAR_MASS_G = 1.98842e33
COSMOLOGY = {"Omega0": 0.279, "OmegaLambda": 0.721, "OmegaBaryon": 0.045, "HubbleParam": 0.701,
             "Sigma8": 0.817, "PrimordialIndex": 0.96}


def lattice_positions(n, box_size, offset=0.0):
    """Return the (n^3, 3) lattice sites in comoving Mpc/h, voxel order (k fastest)."""
    index = np.indices((n, n, n)).reshape(3, -1).T
    return (index + offset) * (box_size / n)


def write_snapshot(path, positions_mpc_h, ids, box_size, scale_factor, particle_mass_code=1.0, n_files=1,
                   id_dtype=np.uint32):
    """Write a GADGET-4 HDF5 snapshot (one file, or ``n_files`` pieces ``<stem>.<i>.hdf5``)."""
    path = Path(path)
    total = len(ids)
    bounds = np.linspace(0, total, n_files + 1).astype(np.int64)
    if n_files == 1:
        targets = [path]
    else:
        stem = path.name.removesuffix(".hdf5")
        targets = [path.with_name(f"{stem}.{number}.hdf5") for number in range(n_files)]
    for number, target in enumerate(targets):
        start, stop = bounds[number], bounds[number + 1]
        with h5py.File(target, "w") as stream:
            header = stream.create_group("Header")
            header.attrs["BoxSize"] = box_size * 1000.0
            header.attrs["MassTable"] = np.array([0.0, particle_mass_code, 0, 0, 0, 0])
            header.attrs["NumFilesPerSnapshot"] = np.int32(n_files)
            header.attrs["NumPart_ThisFile"] = np.array([0, stop - start, 0, 0, 0, 0], dtype=np.uint64)
            header.attrs["NumPart_Total"] = np.array([0, total, 0, 0, 0, 0], dtype=np.uint64)
            header.attrs["Time"] = scale_factor
            header.attrs["Redshift"] = 1.0 / scale_factor - 1.0
            _write_parameters(stream, box_size)
            stream.create_group("Config")
            particles = stream.create_group("PartType1")
            particles.create_dataset("Coordinates", data=(positions_mpc_h[start:stop] * 1000.0).astype(np.float32))
            particles.create_dataset("ParticleIDs", data=ids[start:stop].astype(id_dtype))
            particles.create_dataset("Velocities", data=np.zeros((stop - start, 3), dtype=np.float32))
    return targets


def _write_parameters(stream, box_size):
    parameters = stream.create_group("Parameters")
    parameters.attrs["UnitLength_in_cm"] = UNIT_LENGTH_CM
    parameters.attrs["UnitMass_in_g"] = UNIT_MASS_G
    parameters.attrs["UnitVelocity_in_cm_per_s"] = UNIT_VELOCITY_CM_S
    parameters.attrs["BoxSize"] = box_size * 1000.0
    parameters.attrs["ComovingIntegrationOn"] = np.int32(1)
    for key, value in COSMOLOGY.items():
        parameters.attrs[key] = value


def write_catalogue(path, groups, box_size, scale_factor, particle_mass_code=1.0, fof_only=False):
    """Write a GADGET-4 ``fof_subhalo_tab`` HDF5 catalogue.

    Parameters
    ----------
    groups : list of dict
        In file order, each with ``bound`` (particles bound to its one subhalo, 0 for none),
        ``length`` (all FoF members), ``centre`` (Mpc/h) and ``r200m`` (Mpc/h).
    fof_only : bool
        Write a FoF-only catalogue, as GADGET-4 does without SUBFIND: no Subhalo group.
    """
    n_groups = len(groups)
    lengths = np.array([group["length"] for group in groups], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    has_subhalo = np.array([group["bound"] > 0 for group in groups])
    n_subhalos = int(has_subhalo.sum())
    with h5py.File(path, "w") as stream:
        header = stream.create_group("Header")
        for key, value in (("Ngroups", n_groups), ("Nsubhalos", n_subhalos), ("Nids", int(lengths.sum()))):
            header.attrs[f"{key}_ThisFile"] = np.uint64(value)
            header.attrs[f"{key}_Total"] = np.uint64(value)
        header.attrs["NumFiles"] = np.int32(1)
        header.attrs["Time"] = scale_factor
        header.attrs["Redshift"] = 1.0 / scale_factor - 1.0
        header.attrs["BoxSize"] = box_size * 1000.0
        _write_parameters(stream, box_size)
        stream.create_group("Config")

        group = stream.create_group("Group")
        type_lengths = np.zeros((n_groups, 6), dtype=np.int32)
        type_lengths[:, 1] = lengths
        type_offsets = np.zeros((n_groups, 6), dtype=np.int64)
        type_offsets[:, 1] = offsets
        group["GroupLen"] = lengths
        group["GroupLenType"] = type_lengths
        group["GroupOffsetType"] = type_offsets
        group["GroupMass"] = (lengths * particle_mass_code).astype(np.float32)
        group["GroupPos"] = np.array([g["centre"] for g in groups], dtype=np.float32).reshape(-1, 3) * 1000.0
        group["Group_R_Mean200"] = np.array([g["r200m"] for g in groups], dtype=np.float32) * 1000.0
        group["GroupNsubs"] = has_subhalo.astype(np.int32)
        first_sub = np.cumsum(has_subhalo) - 1
        group["GroupFirstSub"] = np.where(has_subhalo, first_sub, -1).astype(np.int64)
        if fof_only:
            del group["GroupNsubs"], group["GroupFirstSub"]
            header.attrs["Nsubhalos_ThisFile"] = header.attrs["Nsubhalos_Total"] = np.uint64(0)
            return

        subhalo = stream.create_group("Subhalo")
        bound = np.array([g["bound"] for g in groups], dtype=np.int32)[has_subhalo]
        sub_type_lengths = np.zeros((n_subhalos, 6), dtype=np.int32)
        sub_type_lengths[:, 1] = bound
        sub_type_offsets = np.zeros((n_subhalos, 6), dtype=np.int64)
        sub_type_offsets[:, 1] = offsets[has_subhalo]
        subhalo["SubhaloLen"] = bound
        subhalo["SubhaloLenType"] = sub_type_lengths
        subhalo["SubhaloOffsetType"] = sub_type_offsets
        subhalo["SubhaloGroupNr"] = np.flatnonzero(has_subhalo).astype(np.int64)
        subhalo["SubhaloRankInGr"] = np.zeros(n_subhalos, dtype=np.int32)
        subhalo["SubhaloMass"] = (bound * particle_mass_code).astype(np.float32)
        subhalo["SubhaloPos"] = group["GroupPos"][:][has_subhalo]


def write_simulation(folder, n=16, box_size=20.0, displacement=0.2, offset=0.0, ids="lattice", shuffle=True,
                     n_groups=4, n_files=1, seed=0, particle_mass_code=1.0, layout="gadget4"):
    """Write snapshot_000.hdf5 (a=0.01), snapshot_001.hdf5 (a=1) and fof_subhalo_tab_001.hdf5.

    With ``layout="gadget3"`` the files are GADGET-3's instead: binary (format 1) snapshots
    ``snapshot_000`` and ``snapshot_001``, the z=0 particles in random order, and the binary SUBFIND
    catalogue ``groups_001`` (split into ``n_files`` files, as the snapshots are).

    The initial positions are the lattice sites (voxel order, k fastest) plus a known
    displacement, below half a spacing, of up to ``displacement`` lattice spacings per axis.
    IDs are ``voxel + 1`` (``ids="lattice"``) or a random permutation (``ids="random"``).

    Returns
    -------
    dict
        ``voxel_of_id`` (mapping ID -> voxel), ``ids``, ``group_of_voxel`` (-1 none),
        ``bound_of_voxel`` (bool), ``group_bound_counts``, ``n``, ``box_size``, ``paths``.
    """
    if layout not in ("gadget4", "gadget3"):
        raise ValueError(f"unknown layout {layout!r}; expected 'gadget4' or 'gadget3'")
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spacing = box_size / n
    voxels = np.arange(n ** 3)
    initial = lattice_positions(n, box_size, offset) + rng.uniform(-displacement, displacement, (n ** 3, 3)) * spacing
    initial %= box_size
    particle_ids = voxels + 1 if ids == "lattice" else rng.permutation(n ** 3) + 1

    # z=0: the first groups take consecutive random particles, packed in a ball around a centre.
    members = rng.permutation(n ** 3)
    sizes = rng.integers(40, 120, n_groups)
    final = rng.uniform(0.0, box_size, (n ** 3, 3))
    groups, group_of_voxel, bound_of_voxel = [], np.full(n ** 3, -1), np.zeros(n ** 3, dtype=bool)
    start = 0
    for number, size in enumerate(sizes):
        # The last group is FoF-only (no subhalo), so it must stay unlabelled.
        bound = 0 if number == n_groups - 1 else int(size * 0.8)
        chosen = members[start:start + size]
        centre = rng.uniform(0.0, box_size, 3)
        r200m = 0.3
        direction = rng.normal(size=(size, 3))
        direction /= np.linalg.norm(direction, axis=1)[:, None]
        final[chosen] = (centre + direction * rng.uniform(0, r200m, (size, 1))) % box_size
        group_of_voxel[chosen[:bound]] = number
        bound_of_voxel[chosen[:bound]] = True
        groups.append({"length": int(size), "bound": bound, "centre": centre, "r200m": r200m})
        start += size
    final_order = np.concatenate([members[:start], rng.permutation(members[start:])])

    initial_order = rng.permutation(n ** 3) if shuffle else voxels
    if layout == "gadget3":
        paths = {
            "initial_snapshot": folder / "snapshot_000",
            "final_snapshot": folder / "snapshot_001",
            "halo_catalogue": folder / "groups_001",
        }
        # GADGET-3 keeps the z=0 particles in their own order; only the catalogue's ID list is in group order.
        final_order = rng.permutation(n ** 3)
        write_binary_snapshot(paths["initial_snapshot"], initial[initial_order], particle_ids[initial_order],
                              box_size, 0.01, particle_mass_code, n_files=n_files)
        write_binary_snapshot(paths["final_snapshot"], final[final_order], particle_ids[final_order], box_size,
                              1.0, particle_mass_code, n_files=n_files)
        write_gadget3_subfind(folder, 1, groups, particle_ids[members[:start]], n_files=n_files)
        return _simulation_truth(particle_ids, voxels, initial, final, group_of_voxel, bound_of_voxel, groups, n,
                                 box_size, paths)
    paths = {
        "initial_snapshot": folder / "snapshot_000.hdf5",
        "final_snapshot": folder / "snapshot_001.hdf5",
        "halo_catalogue": folder / "fof_subhalo_tab_001.hdf5",
    }
    write_snapshot(paths["initial_snapshot"], initial[initial_order], particle_ids[initial_order], box_size, 0.01,
                   particle_mass_code, n_files=n_files)
    write_snapshot(paths["final_snapshot"], final[final_order], particle_ids[final_order], box_size, 1.0,
                   particle_mass_code, n_files=n_files)
    write_catalogue(paths["halo_catalogue"], groups, box_size, 1.0, particle_mass_code)
    return _simulation_truth(particle_ids, voxels, initial, final, group_of_voxel, bound_of_voxel, groups, n,
                             box_size, paths)


def _simulation_truth(particle_ids, voxels, initial, final, group_of_voxel, bound_of_voxel, groups, n, box_size,
                      paths):
    return {
        "voxel_of_id": dict(zip(particle_ids.tolist(), voxels.tolist())) if n <= 32 else None,
        "ids": particle_ids,
        "initial": initial,
        "final": final,
        "group_of_voxel": group_of_voxel,
        "bound_of_voxel": bound_of_voxel,
        "groups": groups,
        "n": n,
        "box_size": box_size,
        "paths": paths,
    }


def write_binary_snapshot(path, positions_mpc_h, ids, box_size, scale_factor, particle_mass_code=1.0,
                          n_files=1, block_labels=False):
    """Write a legacy binary GADGET snapshot: format 1, or format 2 with ``block_labels``.

    Lengths in kpc/h (the file carries no units). ``n_files`` > 1 writes ``<path>.0``, ``<path>.1``, ...
    """
    path = Path(path)
    total = len(ids)
    bounds = np.linspace(0, total, n_files + 1).astype(np.int64)
    targets = [path] if n_files == 1 else [path.with_name(f"{path.name}.{number}") for number in range(n_files)]
    for number, target in enumerate(targets):
        start, stop = bounds[number], bounds[number + 1]
        header = np.zeros(256, dtype=np.uint8)
        fields = [
            (0, np.array([0, stop - start, 0, 0, 0, 0], dtype=np.int32)),
            (24, np.array([0.0, particle_mass_code, 0, 0, 0, 0], dtype=np.float64)),
            (72, np.array([scale_factor, 1.0 / scale_factor - 1.0], dtype=np.float64)),
            (96, np.array([0, total, 0, 0, 0, 0], dtype=np.uint32)),
            (124, np.array([n_files], dtype=np.int32)),
            (128, np.array([box_size * 1000.0, COSMOLOGY["Omega0"], COSMOLOGY["OmegaLambda"],
                            COSMOLOGY["HubbleParam"]], dtype=np.float64)),
        ]
        for offset, values in fields:
            raw = values.tobytes()
            header[offset:offset + len(raw)] = np.frombuffer(raw, dtype=np.uint8)
        blocks = [
            ("HEAD", header.tobytes()),
            ("POS ", (positions_mpc_h[start:stop] * 1000.0).astype(np.float32).tobytes()),
            ("VEL ", np.zeros((stop - start, 3), dtype=np.float32).tobytes()),
            ("ID  ", ids[start:stop].astype(np.uint32).tobytes()),
        ]
        with open(target, "wb") as stream:
            for label, payload in blocks:
                if block_labels:
                    _write_record(stream, label.encode() + np.int32(len(payload) + 8).tobytes())
                _write_record(stream, payload)
    return targets


def _write_record(stream, payload):
    marker = np.int32(len(payload)).tobytes()
    stream.write(marker + payload + marker)


def write_gadget3_subfind(folder, number, groups, member_ids, n_files=1, id_dtype=np.uint32):
    """Write a GADGET-3 binary SUBFIND catalogue: ``groups_XXX/subhalo_tab_XXX.N`` and ``subhalo_ids_XXX.N``.

    The layout is the one pynbody 2.8's ``SubfindCatalogue`` reads. The files have no Fortran
    record markers. Each starts with a header of int Ngroups, TotNgroups, Nids, long long TotNids,
    int NTask, Nsubgroups, TotNsubgroups, then contains one column after another. ``subhalo_ids``
    ends its header with the file's ID offset in place of the two subhalo counts. Lengths are in
    kpc/h and masses in 1e10 Msun/h, as in the snapshots. pynbody reads no ``group_tab_XXX.N``
    file, so none is written.

    Parameters
    ----------
    folder : path-like
        Where ``groups_XXX`` is created.
    number : int
        The snapshot number XXX.
    groups : list of dict
        As for :func:`write_catalogue`: ``length``, ``bound`` (0 for a group without subhalo),
        ``centre`` and ``r200m`` in comoving Mpc/h.
    member_ids : ndarray
        Particle IDs of the FoF members in group order: group 0's ``bound`` subhalo members, its
        unbound members, then group 1, and so on.
    n_files : int
        Files per catalogue; whole groups go to each file, as SUBFIND writes them.
    id_dtype : numpy dtype
        The ID type of the snapshot, which pynbody takes for the catalogue's IDs too.
    """
    directory = Path(folder) / f"groups_{number:03d}"
    directory.mkdir(parents=True, exist_ok=True)
    lengths = np.array([group["length"] for group in groups], dtype=np.int32)
    offsets = (np.cumsum(lengths) - lengths).astype(np.int32)
    bound = np.array([group["bound"] for group in groups], dtype=np.int32)
    has_subhalo = bound > 0
    n_subhalos_total = int(has_subhalo.sum())
    first_subhalo = (np.cumsum(has_subhalo) - has_subhalo).astype(np.int32)
    centre_kpc = np.array([group["centre"] for group in groups], dtype=np.float32).reshape(-1, 3) * 1000.0
    r200m_kpc = np.array([group["r200m"] for group in groups], dtype=np.float32) * 1000.0
    mass_code = lengths.astype(np.float32)
    n_ids_total = int(lengths.sum())

    pieces = np.array_split(np.arange(len(groups)), n_files)
    for file_number, rows in enumerate(pieces):
        sub_rows = rows[has_subhalo[rows]]
        n_ids = int(lengths[rows].sum())
        header = (np.array([len(rows), len(groups), n_ids], dtype=np.int32).tobytes()
                  + np.int64(n_ids_total).tobytes()
                  + np.array([n_files, len(sub_rows), n_subhalos_total], dtype=np.int32).tobytes())
        zeros_sub = np.zeros(len(sub_rows), dtype=np.float32)
        columns = [
            lengths[rows], offsets[rows], mass_code[rows], centre_kpc[rows],
            # Group_M_Mean200, Group_R_Mean200, then M and R for Crit200 and TopHat200.
            mass_code[rows], r200m_kpc[rows], mass_code[rows], r200m_kpc[rows], mass_code[rows], r200m_kpc[rows],
            np.zeros(len(rows), dtype=np.int32), np.zeros(len(rows), dtype=np.float32),  # contamination
            has_subhalo[rows].astype(np.int32), first_subhalo[rows],
            # One subhalo per group with subhalos: its bound members come first in the group.
            bound[sub_rows], offsets[sub_rows], np.zeros(len(sub_rows), dtype=np.int32),
            bound[sub_rows].astype(np.float32), centre_kpc[sub_rows],
            np.zeros((len(sub_rows), 3), dtype=np.float32), centre_kpc[sub_rows],  # velocity, centre of mass
            np.zeros((len(sub_rows), 3), dtype=np.float32),  # spin
            zeros_sub, zeros_sub, zeros_sub, zeros_sub,  # velocity dispersion, Vmax, its radius, half-mass radius
            member_ids[offsets[sub_rows]].astype(id_dtype), sub_rows.astype(np.int32),
        ]
        with open(directory / f"subhalo_tab_{number:03d}.{file_number}", "wb") as stream:
            stream.write(header)
            for column in columns:
                stream.write(np.ascontiguousarray(column).tobytes())

        start = int(offsets[rows[0]]) if len(rows) else 0
        ids_header = (np.array([len(rows), len(groups), n_ids], dtype=np.int32).tobytes()
                      + np.int64(n_ids_total).tobytes() + np.array([n_files, start], dtype=np.int32).tobytes())
        with open(directory / f"subhalo_ids_{number:03d}.{file_number}", "wb") as stream:
            stream.write(ids_header)
            stream.write(member_ids[start:start + n_ids].astype(id_dtype).tobytes())
    return directory


def read_format2_blocks(path):
    """Return {label: payload bytes} of a little-endian format-2 file, walking its records by hand.

    A second reader, independent of halo_ml's, that tests compare against. Of two blocks with one
    label, the first is kept.
    """
    data = Path(path).read_bytes()
    blocks, offset, label = {}, 0, None
    while offset < len(data):
        size = int(np.frombuffer(data, dtype="<i4", count=1, offset=offset)[0])
        payload = data[offset + 4:offset + 4 + size]
        if label is None:
            label = payload[:4].decode()
        else:
            blocks.setdefault(label, payload)
            label = None
        offset += size + 8
    return blocks
