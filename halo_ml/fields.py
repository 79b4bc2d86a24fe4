"""Density and potential fields of the initial conditions.

- :func:`sph_density_contrast`: each particle's SPH density (pynbody's k-d tree, cubic-spline
  kernel, a chosen number of neighbours) over the mean density, minus one.
- :func:`cic_density_contrast` and :func:`cic_interpolate`: a cloud-in-cell estimate on a
  regular grid, as an independent check of the SPH estimate.
- :func:`solve_poisson`: the periodic solution of laplacian(phi) = delta with FFTs.
"""

import contextlib
import logging

import numpy as np
import pynbody
import scipy.fft

from halo_ml.particle_mesh import paint_cic, readout_cic

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _pynbody_settings(n_neighbours, threads):
    sph = pynbody.config["sph"]
    saved = sph["smooth-particles"], pynbody.config["number_of_threads"]
    sph["smooth-particles"] = n_neighbours
    pynbody.config["number_of_threads"] = threads
    try:
        yield
    finally:
        sph["smooth-particles"], pynbody.config["number_of_threads"] = saved


def sph_density_contrast(sim, n_neighbours=32, threads=1):
    """Return each particle's SPH density contrast rho / mean(rho) - 1, float64, file order.

    Parameters
    ----------
    sim : pynbody.snapshot.SimSnap
        Snapshot with ``pos`` in comoving Mpc/h, ``mass`` in Msun and a periodic ``boxsize``.
    n_neighbours : int
        Neighbours in the SPH kernel (pynbody's ``smooth-particles``).
    threads : int
        Threads for pynbody's tree walk.

    Notes
    -----
    The mean density is the total mass over the box volume, so on a near-uniform lattice the
    mean of the result is the SPH estimator's bias (about +0.003 for 32 neighbours at z=99 on
    a 64^3 GADGET-4 run).
    """
    box_size = float(sim.properties["boxsize"].in_units(sim["pos"].units, **sim.conversion_context()))
    for key in ("rho", "smooth"):
        if key in sim.keys():
            del sim[key]
    with _pynbody_settings(n_neighbours, threads):
        rho = np.asarray(sim["rho"], dtype=np.float64)
    mean_density = float(np.sum(sim["mass"], dtype=np.float64)) / box_size ** 3
    return rho / mean_density - 1.0


def cic_density_contrast(positions, box_size, n_cells, masses=None):
    """Return the cloud-in-cell density contrast on an (n_cells,)*3 grid, float64.

    Parameters
    ----------
    positions : ndarray, shape (N, 3)
        Positions in [0, box_size), comoving Mpc/h.
    box_size : float
        Box side, comoving Mpc/h.
    n_cells : int
        Cells per side; cell (a, b, c) is centred on ((a, b, c) + 0.5) * box_size / n_cells.
    masses : ndarray, optional
        Particle masses (any unit); equal masses when omitted.
    """
    # The particle-mesh code puts cell (a, b, c) at (a, b, c) * cell size. Shifting the
    # particles by half a cell moves its cells onto these centres.
    shifted = np.asarray(positions, dtype=np.float64) - 0.5 * box_size / n_cells
    grid = paint_cic(shifted, n_cells, box_size, weights=masses)
    return grid / grid.mean() - 1.0


def cic_interpolate(grid, positions, box_size):
    """Return the cloud-in-cell interpolation of a periodic grid at ``positions`` (comoving Mpc/h).

    Cells are centred as in :func:`cic_density_contrast`.
    """
    shifted = np.asarray(positions, dtype=np.float64) - 0.5 * box_size / grid.shape[0]
    return readout_cic(np.asarray(grid, dtype=np.float64), shifted, box_size)


def solve_poisson(delta, box_size, workers=1):
    """Solve laplacian(phi) = delta on a periodic cubic grid with FFTs.

    Parameters
    ----------
    delta : ndarray, shape (n, n, n)
        Source field (the density contrast).
    box_size : float
        Box side, comoving Mpc/h; wavenumbers are in h/Mpc.
    workers : int
        Threads for scipy.fft.

    Returns
    -------
    ndarray, shape (n, n, n), float32
        phi in (Mpc/h)^2 with zero mean: phi_k = -delta_k / k^2, and the k = 0 mode set to zero.
        The exact k^2 is used (not the finite-difference Laplacian), so a single Fourier mode
        comes back as its analytic potential.
    """
    n = delta.shape[0]
    if delta.shape != (n, n, n):
        raise ValueError(f"solve_poisson needs a cubic grid, got shape {delta.shape}")
    k_full = 2.0 * np.pi * np.fft.fftfreq(n, d=box_size / n)
    k_half = 2.0 * np.pi * np.fft.rfftfreq(n, d=box_size / n)
    k_squared = (k_full[:, None, None] ** 2 + k_full[None, :, None] ** 2 + k_half[None, None, :] ** 2)
    k_squared[0, 0, 0] = 1.0

    delta_k = scipy.fft.rfftn(np.asarray(delta, dtype=np.float64), workers=workers)
    phi_k = -delta_k / k_squared
    phi_k[0, 0, 0] = 0.0
    phi = scipy.fft.irfftn(phi_k, s=delta.shape, workers=workers)
    return phi.astype(np.float32)
