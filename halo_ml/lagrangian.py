"""Map particles to the voxels of the Lagrangian grid, one particle per voxel.

For n^3 particles in a periodic box of side L, voxel (i, j, k) is the particle whose
unperturbed lattice site is (i, j, k) * L / n. Generators that offset the lattice add half a
spacing on each axis. The flat voxel index is (i * n + j) * n + k.

Two ways to find a particle's site:

- through its ID, where the IDs number the lattice (GADGET-4's N-GenIC: ID - 1 = (i*n + j)*n + k),
  accepted only after the z=99 positions confirm it;
- through its z=99 position: the nearest lattice site, with the half-cell offset detected. This
  is one to one only while every displacement is below half a lattice spacing.
"""

import logging

import numpy as np

logger = logging.getLogger(__name__)

# An ID numbering is accepted when the rms displacement from the sites it implies is below
# this fraction of the lattice spacing. Initial conditions at z >~ 50 have rms displacements of
# about 0.1 to 0.3 of the spacing; IDs unrelated to the lattice give about 0.5 of the box side.
ID_LATTICE_RMS_TOLERANCE = 0.5
_SAMPLE_SIZE = 100_000


class LagrangianMappingError(ValueError):
    """Particles that cannot be put one to one on the Lagrangian grid; the message names the file."""


def particles_per_side(count, source):
    """Return n for ``count`` = n^3 particles; raise :class:`LagrangianMappingError` otherwise."""
    n = int(round(count ** (1.0 / 3.0)))
    if n ** 3 != count:
        raise LagrangianMappingError(
            f"snapshot {source} has {count} particles, which is not a cube n^3 "
            f"(nearest: {n}^3 = {n ** 3}); halo-ml needs initial conditions on a cubic lattice")
    return n


def wrap_positions(positions, box_size, source):
    """Return ``positions`` wrapped into [0, box_size), comoving Mpc/h.

    Positions within one box length outside the box (a periodic image) are wrapped, with a
    log line that reports how many. Anything further out raises :class:`LagrangianMappingError`,
    because it points to a wrong length unit or a corrupt file, not to periodicity.
    """
    outside = (positions < 0.0) | (positions >= box_size)
    n_outside = int(np.count_nonzero(outside.any(axis=1)))
    if n_outside == 0:
        return positions
    far = (positions < -box_size) | (positions >= 2.0 * box_size)
    if far.any():
        worst = float(positions[far.any(axis=1)].flat[np.argmax(np.abs(positions[far.any(axis=1)]))])
        raise LagrangianMappingError(
            f"snapshot {source} has {int(np.count_nonzero(far.any(axis=1)))} particle(s) more than one box "
            f"length outside the box [0, {box_size:g}) Mpc/h (for example a coordinate of {worst:g}); "
            f"check the length unit (files.length_unit) and the file")
    wrapped = np.mod(positions, box_size)
    # np.mod can return box_size itself for tiny negative values in float arithmetic.
    wrapped[wrapped >= box_size] = 0.0
    logger.info("wrapped %d particle(s) of %s lying outside the box [0, %g) Mpc/h back into it",
                n_outside, source, box_size)
    return wrapped


def periodic_offset(delta, box_size):
    """Return ``delta`` reduced to the nearest periodic image, in [-box_size/2, box_size/2)."""
    return (delta + 0.5 * box_size) % box_size - 0.5 * box_size


def lattice_sites(voxel, n, box_size, offset):
    """Return the unperturbed positions (comoving Mpc/h) of flat voxel indices ``voxel``."""
    i, j, k = np.unravel_index(voxel, (n, n, n))
    spacing = box_size / n
    return (np.stack([i, j, k], axis=1) + offset) * spacing


def _rms_displacement(positions, voxel, n, box_size, offset):
    delta = periodic_offset(positions - lattice_sites(voxel, n, box_size, offset), box_size)
    return float(np.sqrt(np.mean(np.sum(delta ** 2, axis=1)))) / (box_size / n)


def voxels_from_ids(ids, positions, n, box_size):
    """Return flat voxel indices from the IDs, or ``None`` when the IDs do not number the lattice.

    IDs qualify when they are n^3 consecutive integers from their minimum (0 or 1 in practice),
    with either the last axis (k) or the first axis (i) varying fastest. The sites they imply
    must also lie within :data:`ID_LATTICE_RMS_TOLERANCE` lattice spacings (rms) of the positions.

    Returns
    -------
    voxel : ndarray of int64 or None
    description : str
        How the mapping was made, for the store's attributes and the log.
    """
    first = int(ids.min())
    rank = ids - first
    # With n^3 values in [0, n^3 - 1], the IDs are consecutive exactly when none repeats.
    if int(rank.max()) != n ** 3 - 1 or np.bincount(rank, minlength=n ** 3).max() != 1:
        return None, "IDs are not n^3 consecutive integers"

    orders = {
        "k fastest": lambda r: r,
        "i fastest": lambda r: r % n * n * n + r // n % n * n + r // (n * n),
    }
    # Choose the axis order and lattice offset on a subsample, then measure the choice on all.
    sample = np.random.default_rng(0).choice(len(rank), size=min(len(rank), _SAMPLE_SIZE), replace=False)
    scores = {(order, offset): _rms_displacement(positions[sample], to_voxel(rank[sample]), n, box_size, offset)
              for order, to_voxel in orders.items() for offset in (0.0, 0.5)}
    order, offset = min(scores, key=scores.get)
    voxel = orders[order](rank)
    rms = _rms_displacement(positions, voxel, n, box_size, offset)
    description = (f"particle IDs (ID - {first} numbers the lattice, {order}, lattice offset {offset} "
                   f"spacing; rms displacement {rms:.3f} spacing)")
    if rms >= ID_LATTICE_RMS_TOLERANCE:
        return None, description
    return voxel.astype(np.int64), description


def detect_lattice_offset(positions, box_size, n):
    """Return 0.0 or 0.5: whether the lattice sites sit at integer or half-integer spacings."""
    phase = 2.0 * np.pi * positions / (box_size / n)
    # Displacements are small against the spacing, so the phase clusters around 0 for an
    # unshifted lattice (mean cosine near +1) and around pi for a half-cell shift (near -1).
    return 0.0 if float(np.mean(np.cos(phase))) >= 0.0 else 0.5


def voxels_from_positions(positions, n, box_size):
    """Return flat voxel indices of the nearest lattice site to each position, and a description."""
    offset = detect_lattice_offset(positions, box_size, n)
    spacing = box_size / n
    index = np.rint(positions / spacing - offset).astype(np.int64) % n
    voxel = (index[:, 0] * n + index[:, 1]) * n + index[:, 2]
    rms = _rms_displacement(positions, voxel, n, box_size, offset)
    return voxel, (f"nearest lattice site of the initial positions (lattice offset {offset} spacing; "
                   f"rms displacement {rms:.3f} spacing)")


def check_bijection(voxel, n, source):
    """Raise :class:`LagrangianMappingError` unless every voxel contains exactly one particle."""
    counts = np.bincount(voxel, minlength=n ** 3)
    empty = int(np.count_nonzero(counts == 0))
    shared = int(np.count_nonzero(counts > 1))
    if empty or shared or counts.size != n ** 3:
        raise LagrangianMappingError(
            f"the particles of {source} do not map one to one onto the {n}^3 Lagrangian grid: {empty} "
            f"voxel(s) hold no particle and {shared} hold several. The IDs do not number the lattice and "
            f"some displacements exceed half a lattice spacing; give the initial-conditions snapshot "
            f"(high redshift), not a later one")


def map_to_voxels(positions, ids, box_size, source):
    """Map each particle of an initial snapshot to its Lagrangian voxel, one to one.

    Parameters
    ----------
    positions : ndarray, shape (N, 3)
        Initial positions wrapped into the box, comoving Mpc/h.
    ids : ndarray of int, shape (N,)
        Particle IDs.
    box_size : float
        Box side, comoving Mpc/h.
    source : str
        File name for messages.

    Returns
    -------
    voxel : ndarray of int64, shape (N,)
        Flat voxel index of each particle, in the file's particle order.
    description : str
        How the mapping was made.
    """
    n = particles_per_side(len(ids), source)
    voxel, description = voxels_from_ids(ids, positions, n, box_size)
    if voxel is None:
        logger.info("IDs of %s do not follow the lattice (%s); mapping through positions", source, description)
        voxel, description = voxels_from_positions(positions, n, box_size)
    check_bijection(voxel, n, source)
    logger.info("mapped %d particles of %s onto the %d^3 grid through %s", len(ids), source, n, description)
    return voxel, description


def scatter_to_grid(values, voxel, n, fill=np.nan, dtype=np.float32):
    """Return an (n, n, n, ...) array with ``values[p]`` at voxel ``voxel[p]``."""
    grid = np.full((n ** 3,) + values.shape[1:], fill, dtype=dtype)
    grid[voxel] = values
    return grid.reshape((n, n, n) + values.shape[1:])
