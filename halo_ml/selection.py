"""Particle selection: the training, validation and test samples drawn from the stores.

A particle is eligible when its z=0 halo mass ``log_halo_mass`` lies in
[``selection.log_mass_min``, ``selection.log_mass_max``] (log10 Msun, both ends included);
particles in no halo (NaN) never are. Each split draws its particles at random without
replacement from the eligible particles pooled over the simulations of its role, so the
training set spans all training simulations in proportion to their eligible particles.

Each split has its own random stream, seeded by ``(selection.seed, split number)``, so
changing one split's count leaves the other splits' draws unchanged. The exception is a
simulation that serves both validation and test (allowed for small suites): its test draw
excludes the particles already drawn for validation, so the two splits stay disjoint and
the test draw depends on the validation draw.
"""

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from halo_ml.cubes import CubeError, open_store_grid, store_metadata_paths
from halo_ml.logs import log_duration
from halo_ml.provenance import provenance, write_provenance

logger = logging.getLogger(__name__)

# A split draws from the simulations of the role of the same name (config key simulations.<split>).
SPLITS = ("train", "validation", "test")
COUNT_KEY = {"train": "n_train", "validation": "n_validation", "test": "n_test"}
COLUMNS = ["simulation", "voxel", "i", "j", "k", "log_mass", "r_over_r200m", "final_x", "final_y", "final_z"]


class SelectionError(ValueError):
    """The stores cannot supply the requested samples; the message names the simulations and key."""


def eligible_voxels(store_path, log_mass_min, log_mass_max):
    """Return the flat voxel indices of the particles in a halo of mass in [min, max] (log10 Msun)."""
    try:
        _, masses = open_store_grid(store_path, "log_halo_mass")
    except CubeError as error:
        raise SelectionError(str(error)) from None
    log_mass = np.asarray(masses[...]).ravel()
    with np.errstate(invalid="ignore"):
        inside = (log_mass >= log_mass_min) & (log_mass <= log_mass_max)
    return np.flatnonzero(inside)


def draw_split(split, store_paths, settings, exclude=None):
    """Draw the samples of one split and return them as a table with :data:`COLUMNS`.

    Parameters
    ----------
    split : {"train", "validation", "test"}
    store_paths : dict
        ``{simulation name: store path}`` of the simulations of this split's role, in order.
    settings : dict
        The ``selection`` section of the configuration.
    exclude : dict, optional
        ``{simulation name: flat voxel indices}`` already drawn for another split.

    Raises
    ------
    SelectionError
        When no particle lies in the mass range, or fewer than requested do.
    """
    low, high = settings["log_mass_min"], settings["log_mass_max"]
    key = COUNT_KEY[split]
    requested = int(settings[key])
    names = list(store_paths)

    eligible = {name: eligible_voxels(store_paths[name], low, high) for name in names}
    for name, excluded in (exclude or {}).items():
        if name in eligible:
            eligible[name] = np.setdiff1d(eligible[name], excluded, assume_unique=True)
    counts = {name: len(voxels) for name, voxels in eligible.items()}
    available = sum(counts.values())
    if available == 0:
        raise SelectionError(
            f"no particles in the mass range [{low}, {high}] (log10 Msun) in simulation(s) {names}; "
            f"check selection.log_mass_min and selection.log_mass_max against the halo masses "
            f"in the stores")
    if available < requested:
        raise SelectionError(
            f"selection.{key} asks for {requested} particles, but simulation(s) {names} have only "
            f"{available} in the mass range [{low}, {high}] not drawn for another split "
            f"(per simulation: {counts}); lower selection.{key} or add simulations to "
            f"simulations.{split}")

    rng = np.random.default_rng([int(settings.get("seed", 0)), SPLITS.index(split)])
    # Sorted pooled positions keep each simulation's rows together and in voxel order.
    chosen = np.sort(rng.choice(available, size=requested, replace=False))
    offsets = np.cumsum([0] + [counts[name] for name in names])

    tables = []
    for position, name in enumerate(names):
        local = chosen[(chosen >= offsets[position]) & (chosen < offsets[position + 1])] - offsets[position]
        if len(local):
            tables.append(_sample_table(name, store_paths[name], eligible[name][local]))
    table = pd.concat(tables, ignore_index=True)
    logger.info("%s: %d of %d eligible particles from %d simulation(s)", split, requested, available, len(names))
    return table


def _sample_table(name, store_path, voxels):
    group, masses = open_store_grid(store_path, "log_halo_mass")
    n = masses.shape[0]
    i, j, k = np.unravel_index(voxels, (n, n, n))
    log_mass = np.asarray(masses[...]).ravel()[voxels]
    radius = np.asarray(group["r_over_r200m"][...]).ravel()[voxels]
    final = np.asarray(group["final_position"][...], dtype=np.float64).reshape(-1, 3)[voxels]
    return pd.DataFrame({
        "simulation": name,
        "voxel": voxels.astype(np.int64),
        "i": i, "j": j, "k": k,
        "log_mass": log_mass,
        "r_over_r200m": radius,
        "final_x": final[:, 0], "final_y": final[:, 1], "final_z": final[:, 2],
    }, columns=COLUMNS)


def write_table(table, path):
    """Write ``table`` as CSV to ``path`` through a temporary file, so a crash leaves no partial file."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    table.to_csv(temporary, index=False)
    os.replace(temporary, path)


def select_particles(simulations, store_paths, settings, output_paths):
    """Draw and write the samples of every split, each with a provenance file beside it.

    Parameters
    ----------
    simulations : dict
        The ``simulations`` section: lists of names under ``train``, ``validation``, ``test``.
    store_paths : dict
        ``{simulation name: store path}`` for every simulation.
    settings : dict
        The ``selection`` section.
    output_paths : dict
        ``{split: CSV path}``; ``<path>.provenance.json`` is written beside each.
    """
    record = provenance(inputs=store_metadata_paths(store_paths.values()),
                        seeds={"selection": int(settings.get("seed", 0))},
                        parameters={"selection": settings, "simulations": simulations})
    drawn = {}
    for split in SPLITS:
        names = simulations[split]
        missing = [name for name in names if name not in store_paths]
        if missing:
            raise SelectionError(f"no store given for simulation(s) {missing} of simulations.{split}")
        with log_duration(logger, f"drawing the {split} particles from {len(names)} simulation(s)"):
            table = draw_split(split, {name: store_paths[name] for name in names}, settings, exclude=drawn)
        for name, rows in table.groupby("simulation"):
            drawn[name] = np.concatenate([drawn.get(name, np.empty(0, np.int64)), rows["voxel"].to_numpy()])
        Path(output_paths[split]).parent.mkdir(parents=True, exist_ok=True)
        # Provenance first: a crash in between leaves no CSV that looks complete.
        write_provenance(f"{output_paths[split]}.provenance.json", dict(record, split=split, rows=len(table)))
        write_table(table, output_paths[split])
