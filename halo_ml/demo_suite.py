"""The demo suite: small cosmological simulations that the workflow generates itself.

One call of :func:`simulate` makes one simulation: 2LPT initial conditions at the initial
redshift (:mod:`halo_ml.initial_conditions`), FastPM particle-mesh evolution to z = 0
(:mod:`halo_ml.particle_mesh`), friends-of-friends halos with a spherical unbinding pass
(:mod:`halo_ml.friends_of_friends`), written as GADGET-4 writes an output list of those two
times (:mod:`halo_ml.gadget4_format`): ``snapshot_000.hdf5``, ``snapshot_001.hdf5`` and
``fof_subhalo_tab_001.hdf5``. Ingest then reads demo and real GADGET-4 runs alike.
"""

import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from halo_ml import friends_of_friends, gadget4_format, initial_conditions, particle_mesh
from halo_ml.logs import log_duration
from halo_ml.provenance import provenance

logger = logging.getLogger(__name__)

OUTPUT_FILES = ("snapshot_000.hdf5", "snapshot_001.hdf5", "fof_subhalo_tab_001.hdf5")


def simulate(name, seed, demo_settings, cosmology, out_dir, threads=1):
    """Generate one demo simulation and write its three GADGET-4 files to ``out_dir``.

    Parameters
    ----------
    name : str
        Simulation name (recorded in the provenance).
    seed : int
        Seed of the initial Gaussian field.
    demo_settings : dict
        The ``demo`` configuration section without ``seeds``: ``particles_per_side``,
        ``box_size_mpc_h``, ``initial_redshift``, ``pm_steps``, ``force_mesh_factor``,
        ``fof_linking_length`` (in units of the mean interparticle spacing),
        ``fof_min_particles`` and ``subhalo_min_particles``.
    cosmology : dict
        ``omega_m``, ``omega_lambda``, ``omega_b``, ``sigma_8``, ``h``, ``n_s``.
    out_dir : path-like
        Folder for the files; created if missing.
    threads : int
        FFT worker threads (the files do not depend on it).

    Returns
    -------
    dict
        Paths of the written files by name, and ``n_groups``, ``n_subhalos``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = int(demo_settings["particles_per_side"])
    box_mpc_h = float(demo_settings["box_size_mpc_h"])
    box_kpc_h = 1000.0 * box_mpc_h
    mesh_size = int(demo_settings["force_mesh_factor"]) * n
    a_start = 1.0 / (1.0 + float(demo_settings["initial_redshift"]))
    a_end = 1.0
    mass = gadget4_format.particle_mass(cosmology["omega_m"], box_kpc_h, n)
    softening_kpc_h = box_kpc_h / mesh_size

    record = provenance(
        config={"demo": demo_settings, "cosmology": cosmology},
        seeds={"initial_conditions": seed},
        parameters={"simulation": name, "force_mesh_size": mesh_size, "threads": threads},
    )
    parameters = gadget4_format.run_parameters(box_kpc_h, n, cosmology, seed, a_start, a_end, softening_kpc_h)
    options = gadget4_format.compile_options(n, mesh_size, demo_settings["fof_linking_length"],
                                             demo_settings["fof_min_particles"])
    growth = particle_mesh.GrowthHistory(cosmology["omega_m"], cosmology["omega_lambda"])
    ids = initial_conditions.particle_ids(n)
    logger.info("simulation %s: %d^3 particles of %.4g Msun/h in %.4g Mpc/h, seed %d, z = %.4g to 0, "
                "%d PM steps on a %d^3 mesh", name, n, mass * 1e10, box_mpc_h, seed,
                demo_settings["initial_redshift"], demo_settings["pm_steps"], mesh_size)

    with log_duration(logger, f"{name}: 2LPT initial conditions"):
        positions, momenta = initial_conditions.initial_conditions(
            n, box_mpc_h, cosmology, seed, a_start, growth, threads=threads)
    paths = {filename: out_dir / filename for filename in OUTPUT_FILES}
    gadget4_format.write_snapshot(
        paths["snapshot_000.hdf5"], positions * 1000.0, particle_mesh.peculiar_velocity(momenta, a_start),
        ids, mass, a_start, box_kpc_h, parameters, options, provenance=record)

    with log_duration(logger, f"{name}: particle-mesh evolution"):
        with tqdm(total=int(demo_settings["pm_steps"]), desc=f"{name} PM steps", unit="step") as bar:
            positions, momenta = particle_mesh.evolve(
                positions, momenta, growth, box_mpc_h, mesh_size, a_start, a_end,
                int(demo_settings["pm_steps"]), threads=threads, progress=bar.update)

    positions_kpc_h = positions * 1000.0
    velocities = particle_mesh.peculiar_velocity(momenta, a_end)
    with log_duration(logger, f"{name}: friends-of-friends") as details:
        group_of_particle = friends_of_friends.friends_of_friends(
            positions_kpc_h, box_kpc_h, demo_settings["fof_linking_length"] * box_kpc_h / n,
            demo_settings["fof_min_particles"])
        n_groups = int(group_of_particle.max()) + 1
        details["groups"] = n_groups
        details["particles in groups"] = int(np.sum(group_of_particle >= 0))

    with log_duration(logger, f"{name}: group centres, unbinding, spherical overdensities") as details:
        with tqdm(total=n_groups, desc=f"{name} groups", unit="group") as bar:
            groups = friends_of_friends.measure_groups(
                group_of_particle, positions_kpc_h, velocities, mass, box_kpc_h,
                cosmology["omega_m"], growth.omega_m_of_a(a_end), a_end, softening_kpc_h,
                demo_settings["subhalo_min_particles"], progress=bar.update)
        n_subhalos = sum(1 for group in groups if group.n_bound > 0)
        details["subhalos"] = n_subhalos

    order = gadget4_format.group_order(groups, n**3)
    gadget4_format.write_snapshot(
        paths["snapshot_001.hdf5"], positions_kpc_h[order], velocities[order], ids[order],
        mass, a_end, box_kpc_h, parameters, options, provenance=record)
    gadget4_format.write_group_catalogue(
        paths["fof_subhalo_tab_001.hdf5"], groups, ids, mass, a_end, box_kpc_h,
        parameters, options, provenance=record)
    logger.info("simulation %s written to %s: %d groups, %d subhalos", name, out_dir, n_groups, n_subhalos)
    return {**{filename: str(path) for filename, path in paths.items()},
            "n_groups": n_groups, "n_subhalos": n_subhalos}
