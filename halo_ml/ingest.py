"""Ingest one simulation: GADGET snapshots and halo catalogue -> a Lagrangian zarr store.

The store (layout in docs/store.md) contains every field indexed by Lagrangian voxel: the z=99
SPH density contrast, its periodic potential, and each particle's z=0 halo labels and
position. It is written under a temporary name next to its final path and renamed only when
complete, so a failed run never leaves a store that looks finished.
"""

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import zarr
from tqdm import tqdm

from . import __version__
from .fields import solve_poisson, sph_density_contrast
from .halo_labels import label_particles
from .lagrangian import map_to_voxels, particles_per_side, scatter_to_grid, wrap_positions
from .logs import log_duration
from .provenance import provenance
from .snapshots import SnapshotError, load_halo_catalogue, load_snapshot

logger = logging.getLogger(__name__)

STORE_FORMAT_VERSION = 1
_STEPS = ("read initial snapshot", "read final snapshot and catalogue", "map particles to voxels",
          "halo labels", "SPH density", "Poisson solve", "write store")


def ingest_simulation(initial_snapshot, final_snapshot, halo_catalogue, store_path, settings, units=None):
    """Build the Lagrangian store of one simulation.

    Parameters
    ----------
    initial_snapshot, final_snapshot : path-like
        The z=99 and z=0 snapshots (any format :func:`halo_ml.snapshots.load_snapshot` reads).
    halo_catalogue : path-like or None
        The final snapshot's halo catalogue; ``None`` looks for it next to the final snapshot.
    store_path : path-like
        The zarr store to write (``results/<run>/stores/<sim>.zarr``).
    settings : dict
        The ``ingest`` configuration section: ``sph_neighbours``, ``threads``, ``chunk_voxels``.
    units : dict, optional
        ``length_unit``, ``mass_unit``, ``velocity_unit`` for snapshots without unit metadata.

    Raises
    ------
    ValueError
        A subclass (:class:`~halo_ml.snapshots.SnapshotError`,
        :class:`~halo_ml.snapshots.HaloCatalogueError`,
        :class:`~halo_ml.lagrangian.LagrangianMappingError`) naming the file and the problem.
        No store is written then.
    """
    store_path = Path(store_path)
    n_neighbours = int(settings.get("sph_neighbours", 32))
    threads = int(settings.get("threads", 1))
    progress = tqdm(total=len(_STEPS), desc=f"ingest {store_path.name}", unit="step")

    def step(index):
        progress.set_postfix_str(_STEPS[index])
        return log_duration(logger, _STEPS[index])

    with step(0):
        initial = load_snapshot(initial_snapshot, units)
        n = particles_per_side(len(initial), initial.path)
        box_size = initial.box_size_mpc_h
        initial_ids = initial.ids()
        particle_mass_msun = _particle_mass(initial)
    progress.update()

    # Every input is read and checked before the expensive fields, so bad input fails fast.
    with step(1):
        final = load_snapshot(final_snapshot, units)
        _check_same_simulation(initial, final)
        final_voxel_order = _match_ids(initial_ids, final.ids(), final.path)
        catalogue = load_halo_catalogue(final, halo_catalogue)
    progress.update()

    with step(2):
        positions = wrap_positions(initial.positions(), box_size, initial.path)
        voxel, mapping = map_to_voxels(positions, initial_ids, box_size, initial.path)
        # pynbody's periodic tree, used for the SPH density below, expects positions inside the box.
        initial.sim["pos"][...] = positions
        del positions
        final_voxel = final_voxel_order(voxel)
    progress.update()

    with step(3):
        labels = label_particles(final, catalogue)
        final_positions = wrap_positions(final.positions(), box_size, final.path)
        grids = {
            "halo_id": scatter_to_grid(labels.halo_id, final_voxel, n, fill=-1, dtype=np.int64),
            "log_halo_mass": scatter_to_grid(labels.log_halo_mass, final_voxel, n),
            "r_over_r200m": scatter_to_grid(labels.r_over_r200m, final_voxel, n),
            "final_position": scatter_to_grid(final_positions, final_voxel, n),
        }
        del final_positions
    progress.update()

    with step(4) as details:
        delta = sph_density_contrast(initial.sim, n_neighbours=n_neighbours, threads=threads)
        grids["density_contrast"] = scatter_to_grid(delta, voxel, n)
        details["mean density contrast"] = f"{float(np.mean(delta)):.4f}"
        del delta
    progress.update()

    with step(5):
        grids["potential"] = solve_poisson(grids["density_contrast"], box_size, workers=threads)
    progress.update()

    with step(6):
        source_files = {"initial_snapshot": initial.files, "final_snapshot": final.files,
                        "halo_catalogue": catalogue.files}
        record = provenance(
            inputs=[path for paths in source_files.values() for path in paths],
            parameters={"ingest": dict(settings), "units": units, "voxel_mapping": mapping})
        attributes = {
            "box_size_mpc_h": box_size,
            "particles_per_side": n,
            "particle_mass_msun": particle_mass_msun,
            "initial_redshift": initial.redshift,
            "final_redshift": final.redshift,
            "cosmology": initial.cosmology(),
            "halo_definition": labels.halo_definition,
            "n_halos": labels.n_halos,
            "voxel_mapping": mapping,
            "sph_neighbours": n_neighbours,
            "snapshot_format": initial.format,
            "halo_catalogue_format": catalogue.format,
            "source_files": {
                role: [{"path": os.fspath(path), "sha256": record["inputs"][os.fspath(path)][Path(path).name]}
                       for path in paths]
                for role, paths in source_files.items()},
            "provenance": record,
            "halo_ml_version": __version__,
            "store_format_version": STORE_FORMAT_VERSION,
        }
        write_store(store_path, grids, attributes, chunk_voxels=int(settings.get("chunk_voxels", 64)))
    progress.update()
    progress.close()
    logger.info("wrote store %s (%d^3 voxels, %d halos)", store_path, n, labels.n_halos)
    return store_path


def _check_same_simulation(initial, final):
    if len(initial) != len(final):
        raise SnapshotError(
            f"snapshot {final.path} has {len(final)} particles but the initial snapshot {initial.path} has "
            f"{len(initial)}; give two snapshots of the same simulation")
    if not np.isclose(initial.box_size_mpc_h, final.box_size_mpc_h, rtol=1e-6):
        raise SnapshotError(
            f"snapshot {final.path} has a box of {final.box_size_mpc_h:g} Mpc/h but the initial snapshot "
            f"{initial.path} has {initial.box_size_mpc_h:g} Mpc/h; give two snapshots of the same simulation")
    if final.scale_factor <= initial.scale_factor:
        raise SnapshotError(
            f"the final snapshot {final.path} (a = {final.scale_factor:.4g}) is not later than the initial "
            f"snapshot {initial.path} (a = {initial.scale_factor:.4g}); check the order of the two files")


def _particle_mass(snapshot):
    masses = snapshot.masses()
    mass = float(np.mean(masses))
    if not np.allclose(masses, mass, rtol=1e-5):
        raise SnapshotError(f"snapshot {snapshot.path} has particles of different masses (from {masses.min():.4g} "
                            f"to {masses.max():.4g} Msun); halo-ml expects one species of equal-mass particles")
    return mass


def _match_ids(initial_ids, final_ids, final_source):
    """Check that both snapshots hold the same IDs; return a function voxel(initial) -> voxel(final)."""
    initial_order = np.argsort(initial_ids, kind="stable")
    final_order = np.argsort(final_ids, kind="stable")
    initial_sorted = initial_ids[initial_order]
    final_sorted = final_ids[final_order]
    if not np.array_equal(initial_sorted, final_sorted):
        unknown = final_sorted[~np.isin(final_sorted, initial_sorted)]
        example = f", for example ID {int(unknown[0])}" if unknown.size else ""
        raise SnapshotError(
            f"the particle IDs of snapshot {final_source} differ from those of the initial snapshot "
            f"({unknown.size} of {len(final_ids)} IDs are not in the initial snapshot{example}); give two "
            f"snapshots of the same simulation")

    def final_voxels(initial_voxel):
        final_voxel = np.empty_like(initial_voxel)
        final_voxel[final_order] = initial_voxel[initial_order]
        return final_voxel

    return final_voxels


def write_store(store_path, grids, attributes, chunk_voxels=64):
    """Write a zarr v3 group atomically: to a temporary folder next to ``store_path``, then rename.

    Parameters
    ----------
    store_path : Path
        Final path of the store; an existing store there is replaced only after the new one is complete.
    grids : dict of str to ndarray
        Arrays whose first three axes are the (n, n, n) Lagrangian grid.
    attributes : dict
        JSON-serialisable group attributes.
    chunk_voxels : int
        Chunk side along each grid axis.
    """
    store_path = Path(store_path)
    store_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = store_path.with_name(f".{store_path.name}.incomplete-{os.getpid()}")
    if temporary.exists():
        shutil.rmtree(temporary)
    try:
        group = zarr.open_group(temporary, mode="w", zarr_format=3)
        for name, values in grids.items():
            chunks = tuple(min(chunk_voxels, size) for size in values.shape[:3]) + values.shape[3:]
            array = group.create_array(name, shape=values.shape, dtype=values.dtype, chunks=chunks,
                                       fill_value=_fill_value(values.dtype))
            array[...] = values
        group.attrs.update(attributes)
        if store_path.exists():
            shutil.rmtree(store_path)
        os.rename(temporary, store_path)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def _fill_value(dtype):
    return -1 if np.issubdtype(dtype, np.integer) else np.nan
