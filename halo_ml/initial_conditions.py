"""Initial conditions of the demo suite: a Gaussian random field and 2LPT displacements.

Particles start on a cubic lattice, site (i, j, k) at comoving position (i, j, k) * L / n with
no half-cell offset and particle ID ``(i*n + j)*n + k + 1``, the convention of GADGET-4's
built-in N-GenIC. They are displaced with second-order Lagrangian perturbation theory (2LPT,
Crocce, Pueblas & Scoccimarro 2006, MNRAS 373, 369):

    x = q - D1 grad(phi1) + D2 grad(phi2),
    laplacian(phi1) = delta_L(q),
    laplacian(phi2) = sum_{i>j} [phi1_ii phi1_jj - phi1_ij^2],

with delta_L the linear density contrast at a = 1 and D1, D2 the growth factors of
:mod:`halo_ml.particle_mesh` (D1 = 1 and D2 about -3/7 at a = 1 in matter domination).

Units: comoving Mpc/h for lengths, h/Mpc for wavenumbers, (Mpc/h)^3 for the power spectrum.
"""

import logging

import numpy as np
import scipy.fft

logger = logging.getLogger(__name__)


def colossus_cosmology(cosmology):
    """Return a colossus ``Cosmology`` for the configured parameters.

    Radiation is switched off so that colossus's growth factor and the particle-mesh integrator
    (matter, curvature and a cosmological constant) describe the same expansion history, as
    GADGET-4 does. The power spectrum is Eisenstein & Hu (1998) with baryon features, normalised
    to ``sigma_8`` at z = 0.

    Parameters
    ----------
    cosmology : dict
        ``omega_m``, ``omega_lambda``, ``omega_b``, ``sigma_8``, ``h``, ``n_s``.
    """
    from colossus.cosmology import cosmology as colossus

    flat = abs(cosmology["omega_m"] + cosmology["omega_lambda"] - 1.0) < 1e-6
    parameters = {
        "flat": flat,
        "H0": 100.0 * cosmology["h"],
        "Om0": cosmology["omega_m"],
        "Ob0": cosmology["omega_b"],
        "sigma8": cosmology["sigma_8"],
        "ns": cosmology["n_s"],
        "relspecies": False,
    }
    if not flat:
        parameters["Ode0"] = cosmology["omega_lambda"]
    # persistence="" keeps colossus from writing its interpolation cache under $HOME,
    # which is read-only or shared on many cluster nodes.
    return colossus.setCosmology("halo_ml", parameters, persistence="")


def linear_power_spectrum(k_h_mpc, cosmology):
    """Return the linear matter power spectrum at z = 0 in (Mpc/h)^3.

    Parameters
    ----------
    k_h_mpc : array_like
        Wavenumbers in h/Mpc; zero is allowed and returns zero.
    cosmology : dict
        See :func:`colossus_cosmology`.
    """
    k_h_mpc = np.asarray(k_h_mpc, dtype=np.float64)
    power = np.zeros_like(k_h_mpc)
    positive = k_h_mpc > 0
    model = colossus_cosmology(cosmology)
    power[positive] = model.matterPowerSpectrum(k_h_mpc[positive], 0.0)
    return power


def wavenumbers(n, box_size, real=True):
    """Return the three wavenumber axes (h/Mpc) of an ``n``^3 FFT grid, broadcastable.

    With ``real`` the last axis has ``n // 2 + 1`` entries, the layout of ``scipy.fft.rfftn``.
    """
    fundamental = 2.0 * np.pi / box_size
    full = scipy.fft.fftfreq(n, d=1.0 / n) * fundamental
    last = scipy.fft.rfftfreq(n, d=1.0 / n) * fundamental if real else full
    return full[:, None, None], full[None, :, None], last[None, None, :]


def gaussian_random_field(n, box_size, cosmology, seed, threads=1):
    """Draw the linear density contrast at z = 0 on an ``n``^3 grid, in Fourier space.

    White noise of unit variance is drawn in real space with numpy's PCG64 generator seeded
    with ``seed``, transformed and multiplied by sqrt(P(k) n^3 / L^3), so that the field's
    continuous-convention power spectrum has expectation P(k). The k = 0 mode is zero.

    Parameters
    ----------
    n : int
        Particles per side.
    box_size : float
        Comoving box side in Mpc/h.
    cosmology : dict
        See :func:`colossus_cosmology`.
    seed : int
        Random seed; the same seed and n give the same field.
    threads : int
        Worker threads of the FFT (the result does not depend on it).

    Returns
    -------
    numpy.ndarray
        Complex array of shape (n, n, n // 2 + 1), the ``scipy.fft.rfftn`` of delta_L(x).
    """
    # NOTE: numpy keeps the PCG64 stream of standard_normal fixed within a release but does
    # not promise it across major versions; provenance records the numpy version for that reason.
    generator = np.random.Generator(np.random.PCG64(seed))
    white_noise = generator.standard_normal((n, n, n))
    field = scipy.fft.rfftn(white_noise, workers=threads)
    del white_noise

    kx, ky, kz = wavenumbers(n, box_size)
    k = np.sqrt(kx**2 + ky**2 + kz**2)
    amplitude = np.sqrt(linear_power_spectrum(k.ravel(), cosmology).reshape(k.shape) * n**3 / box_size**3)
    field *= amplitude
    field[0, 0, 0] = 0.0
    return field


def lpt_potentials(delta_k, box_size, threads=1):
    """Compute the gradients of the first- and second-order 2LPT potentials on the grid.

    Parameters
    ----------
    delta_k : numpy.ndarray
        ``rfftn`` of the linear density contrast, shape (n, n, n // 2 + 1).
    box_size : float
        Comoving box side in Mpc/h.
    threads : int
        FFT worker threads.

    Returns
    -------
    grad_phi1, grad_phi2 : numpy.ndarray
        Arrays of shape (n, n, n, 3) in Mpc/h: x = q - D1 grad_phi1 + D2 grad_phi2.
    """
    n = delta_k.shape[0]
    kx, ky, kz = wavenumbers(n, box_size)
    axes = (kx, ky, kz)
    k_squared = kx**2 + ky**2 + kz**2
    k_squared[0, 0, 0] = 1.0  # the k = 0 mode of every potential is zero anyway
    phi1_k = -delta_k / k_squared

    def to_real(field_k):
        return scipy.fft.irfftn(field_k, s=(n, n, n), workers=threads)

    grad_phi1 = np.stack([to_real(1j * axis * phi1_k) for axis in axes], axis=-1)

    # Second derivatives phi1_ij = -k_i k_j phi1(k); the source of phi2 is the sum over i > j
    # of the 2x2 principal minors of the Hessian.
    hessian = {(i, j): to_real(-axes[i] * axes[j] * phi1_k) for i in range(3) for j in range(i, 3)}
    source = np.zeros((n, n, n))
    for i, j in ((0, 1), (0, 2), (1, 2)):
        source += hessian[i, i] * hessian[j, j] - hessian[i, j] ** 2
    del hessian

    phi2_k = -scipy.fft.rfftn(source, workers=threads) / k_squared
    phi2_k[0, 0, 0] = 0.0
    grad_phi2 = np.stack([to_real(1j * axis * phi2_k) for axis in axes], axis=-1)
    return grad_phi1, grad_phi2


def lattice_positions(n, box_size):
    """Return the unperturbed lattice positions (n^3, 3) in Mpc/h, in particle-ID order."""
    index = np.arange(n, dtype=np.float64) * (box_size / n)
    grid = np.meshgrid(index, index, index, indexing="ij")
    return np.stack([axis.ravel() for axis in grid], axis=-1)


def particle_ids(n):
    """Return the GADGET particle IDs in lattice order: ID - 1 = (i*n + j)*n + k."""
    dtype = np.uint32 if n**3 < 2**32 else np.uint64
    return np.arange(1, n**3 + 1, dtype=dtype)


def initial_conditions(n, box_size, cosmology, seed, scale_factor, growth, threads=1):
    """Generate particle positions and momenta at ``scale_factor`` with 2LPT.

    Parameters
    ----------
    n : int
        Particles per side.
    box_size : float
        Comoving box side in Mpc/h.
    cosmology : dict
        See :func:`colossus_cosmology`.
    seed : int
        Random seed of the Gaussian field.
    scale_factor : float
        Scale factor of the initial conditions (0.01 for z = 99).
    growth : halo_ml.particle_mesh.GrowthHistory
        Growth factors of the same cosmology.
    threads : int
        FFT worker threads.

    Returns
    -------
    positions : numpy.ndarray
        (n^3, 3) comoving positions in Mpc/h, wrapped into [0, L), in particle-ID order.
    momenta : numpy.ndarray
        (n^3, 3) FastPM momenta p = a^2 E(a) dx/dlna in Mpc/h (H0 = 1 time units), the
        variable that :func:`halo_ml.particle_mesh.evolve` integrates.
    """
    delta_k = gaussian_random_field(n, box_size, cosmology, seed, threads=threads)
    grad_phi1, grad_phi2 = lpt_potentials(delta_k, box_size, threads=threads)
    del delta_k

    a = scale_factor
    d1, d2 = growth.d1(a), growth.d2(a)
    f1, f2 = growth.f1(a), growth.f2(a)
    first = -grad_phi1.reshape(-1, 3)
    second = grad_phi2.reshape(-1, 3)

    displacement = d1 * first + d2 * second
    positions = np.mod(lattice_positions(n, box_size) + displacement, box_size)
    momenta = a**2 * growth.hubble(a) * (f1 * d1 * first + f2 * d2 * second)

    rms = np.sqrt(np.mean(np.sum(displacement**2, axis=1)))
    logger.info("2LPT at a = %.4g: rms displacement %.4g Mpc/h (%.3f of the lattice spacing)",
                a, rms, rms / (box_size / n))
    return positions, momenta
