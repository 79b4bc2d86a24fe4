r"""Extended Press-Schechter (EPS) and Sheth-Tormen (ST) halo masses from the initial density field.

Excursion-set picture (Bond et al. 1991, ApJ 379, 440): the linear density contrast around a
particle, smoothed on a mass scale :math:`M`, traces a trajectory :math:`\delta(M)` as the
scale shrinks. The particle belongs at z=0 to a halo of the largest mass whose smoothed
overdensity has reached the collapse barrier: the first upcrossing when the trajectory is
followed from large to small scales. A trajectory below the barrier on every scale gets no
prediction (NaN).

Smoothing. The z=99 contrast :math:`\delta(\mathbf{x}, z_i)` on the Lagrangian grid (side
:math:`L`, :math:`n^3` voxels) is convolved with a real-space spherical top hat of radius

.. math:: R(M) = \left(\frac{3M}{4\pi\bar\rho_m}\right)^{1/3},

with :math:`\bar\rho_m = \Omega_m \rho_{\rm crit,0}` the comoving mean matter density, on
``n_scales`` log-spaced masses. The kernel is the set of voxels whose centres lie within
:math:`R` of the origin (periodic distances), normalised to unit sum, and the convolution is a
product of FFTs. A kernel narrower than one voxel is the voxel itself. Scales whose sphere is
wider than half the box are left out, because a periodic sphere that wide overlaps its own
images. The largest predicted mass is then below ``analytic_log_mass_max``.

Barriers, both at the initial redshift :math:`z_i` because the trajectory is measured there,
with :math:`D` the linear growth factor normalised to :math:`D(0) = 1` and
:math:`\delta_{\rm sc} = 1.686`:

* EPS (spherical collapse): :math:`B_{\rm EPS} = \delta_{\rm sc}\,D(z_i)`.
* ST moving barrier of Sheth, Mo & Tormen (2001, MNRAS 323, 1), as cited by Lucie-Smith et al.
  (2024, PRD 109, 063524, Appendix E):

  .. math:: B_{\rm ST}(M) = \sqrt{a}\,\delta_{\rm sc}(z_i)
            \left[1 + \beta\left(\frac{\sigma^2(M, z_i)}{a\,\delta_{\rm sc}^2(z_i)}\right)^{\gamma}\right],

  with :math:`a = 0.707`, :math:`\beta = 0.485`, :math:`\gamma = 0.615`,
  :math:`\delta_{\rm sc}(z_i) = \delta_{\rm sc} D(z_i)` and :math:`\sigma(M, z_i) = \sigma(M, 0) D(z_i)`
  the rms of the linear power spectrum smoothed with the same top hat. Lucie-Smith et al. print
  :math:`\beta` inside the power (their eq. E1). The form above, with :math:`\beta` outside, is
  the usual moving barrier :math:`\sqrt{a}\,\delta_{\rm sc}[1 + \beta (a\nu^2)^{-\gamma}]`,
  :math:`\nu = \delta_{\rm sc}/\sigma`, for which a, beta and gamma were fitted.

Because :math:`\sigma^2/\delta_{\rm sc}^2` does not depend on redshift, the ST barrier is
:math:`B_{\rm EPS}` times a mass-dependent factor: above 1 where :math:`\sigma(M, 0) \gtrsim 0.66`
(below 6e14 Msun for the WMAP5 cosmology of the demo configuration), so there ST predicts lower
masses than EPS.

Growth factor, :math:`\bar\rho_m` and :math:`\sigma(M)` come from colossus (Eisenstein & Hu 1998
transfer function, no radiation in the background, as in an N-body simulation).
"""

import logging

import numpy as np
import pandas as pd
import scipy.fft

from halo_ml import initial_conditions
from halo_ml.logs import log_duration
from halo_ml.provenance import provenance

logger = logging.getLogger(__name__)

DELTA_SC = 1.686
ST_A = 0.707
ST_BETA = 0.485
ST_GAMMA = 0.615


class AnalyticModelError(ValueError):
    """Invalid input to the analytic models; the message names the file or value and the fix."""


def colossus_cosmology(cosmology):
    """Build a colossus Cosmology from the store's ``cosmology`` attribute.

    Parameters
    ----------
    cosmology : dict
        ``omega_m``, ``omega_lambda``, ``omega_b``, ``sigma_8``, ``h``, ``n_s``.
    """
    missing = [key for key in ("omega_m", "omega_lambda", "omega_b", "sigma_8", "h", "n_s") if key not in cosmology]
    if missing:
        raise AnalyticModelError(f"cosmology {cosmology} lacks key(s) {missing}")
    # The demo suite's initial conditions use the same colossus cosmology, so the analytic
    # barriers and the demo's linear growth agree.
    return initial_conditions.colossus_cosmology(cosmology)


def mean_matter_density(cosmo):
    """Return the comoving mean matter density in Msun per (Mpc/h)^3."""
    # colossus returns Msun h^2 / kpc^3; one (Mpc/h)^3 is 1e9 h^-3 kpc^3.
    return cosmo.rho_m(0.0) * 1e9 / cosmo.h


def top_hat_radius(mass_msun, rho_m):
    """Return the radius in comoving Mpc/h of a sphere of mass ``mass_msun`` at density ``rho_m``."""
    return (3.0 * np.asarray(mass_msun) / (4.0 * np.pi * rho_m)) ** (1.0 / 3.0)


def mass_scales(log_mass_min, log_mass_max, n_scales):
    """Return ``n_scales`` smoothing masses in Msun, log-spaced and decreasing."""
    if not log_mass_min < log_mass_max:
        raise AnalyticModelError(
            f"analysis.analytic_log_mass_min ({log_mass_min}) must be below analytic_log_mass_max ({log_mass_max})")
    return np.logspace(log_mass_max, log_mass_min, n_scales)


def smoothed_trajectories(delta, voxels, radii_mpc_h, box_size_mpc_h):
    """Smooth ``delta`` with spherical top hats and read it at the given voxels.

    Parameters
    ----------
    delta : numpy.ndarray, shape (n, n, n)
        Density contrast on a periodic grid.
    voxels : array-like of int, shape (m,)
        Flat voxel indices (i*n + j)*n + k of the particles.
    radii_mpc_h : array-like, shape (s,)
        Top-hat radii, comoving Mpc/h.
    box_size_mpc_h : float

    Returns
    -------
    numpy.ndarray, shape (m, s)
        Smoothed contrast of each particle on each scale.

    The mean of ``delta`` is subtracted first: a density contrast has zero mean by definition,
    but an SPH estimate on a coarse grid can be offset by more than the z=99 barrier (0.16
    against a barrier of 0.022 on a 16^3 demo grid), which would put every trajectory above it.
    """
    delta = np.asarray(delta, dtype=np.float64)
    n = delta.shape[0]
    if delta.ndim != 3 or delta.shape != (n, n, n):
        raise AnalyticModelError(f"density contrast has shape {delta.shape}; expected a cube (n, n, n)")
    if np.any(np.asarray(radii_mpc_h) > 0.5 * box_size_mpc_h):
        raise AnalyticModelError(f"top-hat radii up to {np.max(radii_mpc_h):.3g} Mpc/h exceed half the box "
                                 f"({0.5 * box_size_mpc_h:.3g} Mpc/h), where the periodic sphere overlaps itself")
    delta = delta - delta.mean()
    voxels = np.asarray(voxels, dtype=np.int64)
    if voxels.size and (voxels.min() < 0 or voxels.max() >= n ** 3):
        raise AnalyticModelError(f"voxel indices must lie in [0, {n ** 3}); got {voxels.min()} to {voxels.max()}")

    cell_mpc_h = box_size_mpc_h / n
    offsets = np.minimum(np.arange(n), n - np.arange(n)) * cell_mpc_h
    distance2 = offsets[:, None, None] ** 2 + offsets[None, :, None] ** 2 + offsets[None, None, :] ** 2
    field_k = scipy.fft.rfftn(delta, workers=-1)

    trajectories = np.empty((voxels.size, len(radii_mpc_h)))
    for index, radius in enumerate(radii_mpc_h):
        kernel = (distance2 <= radius ** 2).astype(np.float64)
        kernel /= kernel.sum()
        smoothed = scipy.fft.irfftn(field_k * scipy.fft.rfftn(kernel, workers=-1), s=delta.shape, workers=-1)
        trajectories[:, index] = smoothed.ravel()[voxels]
    return trajectories


def eps_barrier(growth_factor):
    """Return the EPS barrier delta_sc D(z) (dimensionless), D normalised to 1 at z=0."""
    return DELTA_SC * growth_factor


def st_barrier(sigma_z, growth_factor):
    """Return the Sheth-Tormen moving barrier at the redshift where ``sigma_z`` is measured.

    Parameters
    ----------
    sigma_z : array-like
        rms linear density contrast on each mass scale at that redshift.
    growth_factor : float
        D(z) / D(0) at that redshift.
    """
    delta_sc_z = DELTA_SC * growth_factor
    sigma_z = np.asarray(sigma_z, dtype=np.float64)
    return np.sqrt(ST_A) * delta_sc_z * (1.0 + ST_BETA * (sigma_z ** 2 / (ST_A * delta_sc_z ** 2)) ** ST_GAMMA)


def first_upcrossing_mass(trajectories, masses_msun, barrier):
    """Return, for each trajectory, the largest mass scale at which it lies on or above the barrier.

    Parameters
    ----------
    trajectories : numpy.ndarray, shape (m, s)
        Smoothed contrast per particle and scale.
    masses_msun : array-like, shape (s,)
        Mass of each scale; any order.
    barrier : float or array-like, shape (s,)

    Returns
    -------
    numpy.ndarray, shape (m,)
        log10(M / Msun) of the crossing scale; NaN where the trajectory never reaches the barrier.
    """
    masses_msun = np.asarray(masses_msun, dtype=np.float64)
    above = np.asarray(trajectories) >= np.broadcast_to(barrier, masses_msun.shape)
    crossing_mass = np.where(above, masses_msun, -np.inf).max(axis=1)
    log_mass = np.full(crossing_mass.shape, np.nan)
    crossed = np.isfinite(crossing_mass)
    log_mass[crossed] = np.log10(crossing_mass[crossed])
    return log_mass


def analytic_masses(delta, voxels, box_size_mpc_h, cosmology, initial_redshift, analysis):
    """Predict EPS and ST halo masses for particles of one simulation.

    Parameters
    ----------
    delta : numpy.ndarray, shape (n, n, n)
        Linear density contrast at ``initial_redshift`` on the Lagrangian grid.
    voxels : array-like of int
        Flat voxel indices of the particles.
    box_size_mpc_h : float
    cosmology : dict
        The store's ``cosmology`` attribute.
    initial_redshift : float
    analysis : dict
        ``analytic_mass_scales``, ``analytic_log_mass_min``, ``analytic_log_mass_max``.

    Returns
    -------
    dict
        ``log_mass_eps`` and ``log_mass_st`` (arrays of log10(M / Msun), NaN for no crossing).
    """
    cosmo = colossus_cosmology(cosmology)
    masses = mass_scales(analysis["analytic_log_mass_min"], analysis["analytic_log_mass_max"],
                         analysis["analytic_mass_scales"])
    radii = top_hat_radius(masses, mean_matter_density(cosmo))
    fits = radii <= 0.5 * box_size_mpc_h
    if not fits.any():
        raise AnalyticModelError(
            f"every smoothing mass from 10^{analysis['analytic_log_mass_min']} Msun up needs a top hat wider "
            f"than half the {box_size_mpc_h} Mpc/h box; lower analysis.analytic_log_mass_min")
    if not fits.all():
        # A sphere wider than half the periodic box overlaps its own images.
        logger.warning("smoothing masses above %.3g Msun do not fit in the %.3g Mpc/h box; %d of %d scales are "
                       "left out, so no particle is given a larger mass", masses[fits].max(), box_size_mpc_h,
                       (~fits).sum(), fits.size)
        masses, radii = masses[fits], radii[fits]
    growth = float(cosmo.growthFactor(initial_redshift))
    sigma_z = cosmo.sigma(radii, 0.0) * growth

    with log_duration(logger, f"top-hat smoothing on {len(radii)} scales"):
        trajectories = smoothed_trajectories(delta, voxels, radii, box_size_mpc_h)
    return {
        "log_mass_eps": first_upcrossing_mass(trajectories, masses, eps_barrier(growth)),
        "log_mass_st": first_upcrossing_mass(trajectories, masses, st_barrier(sigma_z, growth)),
    }


def run_analytic_baselines(samples_path, store_paths, output_path, summary_path, analysis):
    """Write EPS and ST predictions for the test particles, and the fractions that never cross.

    Parameters
    ----------
    samples_path : path-like
        ``samples/test.csv``.
    store_paths : dict
        Simulation name to ``stores/<sim>.zarr`` for every simulation in the samples.
    output_path : path-like
        ``analytic/predictions.csv`` with columns ``simulation, voxel, log_mass_true,
        log_mass_eps, log_mass_st, r_over_r200m``.
    summary_path : path-like
        JSON with ``fraction_no_crossing_eps``, ``fraction_no_crossing_st`` and ``n``.
    analysis : dict
        The ``analysis`` configuration section.
    """
    import zarr

    from halo_ml.mutual_information import write_csv_atomic, write_json_atomic

    samples = pd.read_csv(samples_path)
    missing = [column for column in ("simulation", "voxel", "log_mass", "r_over_r200m") if column not in samples.columns]
    if missing:
        raise AnalyticModelError(f"samples file {samples_path} lacks column(s) {missing}")

    parts = []
    for simulation, rows in samples.groupby("simulation", sort=False):
        if simulation not in store_paths:
            raise AnalyticModelError(f"samples file {samples_path} names simulation '{simulation}', "
                                     f"which has no store among {sorted(store_paths)}")
        store = zarr.open_group(str(store_paths[simulation]), mode="r")
        attrs = dict(store.attrs)
        with log_duration(logger, f"EPS and ST for {len(rows)} particles of {simulation}"):
            masses = analytic_masses(store["density_contrast"][...], rows["voxel"].to_numpy(),
                                     attrs["box_size_mpc_h"], attrs["cosmology"], attrs["initial_redshift"],
                                     analysis)
        parts.append(pd.DataFrame({
            "simulation": simulation, "voxel": rows["voxel"].to_numpy(), "log_mass_true": rows["log_mass"].to_numpy(),
            "log_mass_eps": masses["log_mass_eps"], "log_mass_st": masses["log_mass_st"],
            "r_over_r200m": rows["r_over_r200m"].to_numpy()}))
    predictions = pd.concat(parts, ignore_index=True)

    summary = {
        "n": len(predictions),
        "fraction_no_crossing_eps": float(predictions["log_mass_eps"].isna().mean()),
        "fraction_no_crossing_st": float(predictions["log_mass_st"].isna().mean()),
    }
    logger.info("no barrier crossing: EPS %.1f%%, ST %.1f%% of %d particles",
                100 * summary["fraction_no_crossing_eps"], 100 * summary["fraction_no_crossing_st"], summary["n"])
    record = provenance(inputs=[samples_path, *store_paths.values()], parameters=analysis)
    write_csv_atomic(predictions, output_path, record)
    write_json_atomic(summary_path, {**summary, "provenance": record})
    return summary
