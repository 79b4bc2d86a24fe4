"""Small stores in the layout that ingest writes, for the selection, cube and sub-box tests."""

import numpy as np
import zarr

PARTICLE_MASS_MSUN = 1.0e10


def make_store(path, n=16, box_size=10.0, density_contrast=None, potential=None, log_halo_mass=None,
               r_over_r200m=None, final_position=None, seed=0):
    """Write a store with n^3 particles at ``path`` and return its path as a string.

    Arrays not given are filled with seeded noise, except ``final_position``, which defaults to
    the unperturbed lattice (comoving Mpc/h).
    """
    rng = np.random.default_rng(seed)
    shape = (n, n, n)
    if density_contrast is None:
        density_contrast = rng.standard_normal(shape)
    if potential is None:
        potential = rng.standard_normal(shape)
    if log_halo_mass is None:
        log_halo_mass = np.where(rng.random(shape) < 0.5, rng.uniform(10.5, 14.0, shape), np.nan)
    if r_over_r200m is None:
        r_over_r200m = np.where(np.isfinite(log_halo_mass), rng.uniform(0, 1.5, shape), np.nan)
    if final_position is None:
        lattice = (np.arange(n) + 0.5) * box_size / n
        final_position = np.stack(np.meshgrid(lattice, lattice, lattice, indexing="ij"), axis=-1)

    group = zarr.open_group(str(path), mode="w")
    group.create_array("density_contrast", data=np.asarray(density_contrast, dtype=np.float32))
    group.create_array("potential", data=np.asarray(potential, dtype=np.float32))
    group.create_array("log_halo_mass", data=np.asarray(log_halo_mass, dtype=np.float32))
    group.create_array("r_over_r200m", data=np.asarray(r_over_r200m, dtype=np.float32))
    group.create_array("halo_id", data=np.where(np.isfinite(log_halo_mass), 0, -1).astype(np.int64))
    group.create_array("final_position", data=np.asarray(final_position, dtype=np.float32))
    group.attrs.update({
        "box_size_mpc_h": box_size,
        "particles_per_side": n,
        "particle_mass_msun": PARTICLE_MASS_MSUN,
        "initial_redshift": 99.0,
        "cosmology": {"omega_m": 0.279, "omega_lambda": 0.721, "omega_b": 0.045,
                      "sigma_8": 0.817, "h": 0.701, "n_s": 0.96},
    })
    return str(path)
