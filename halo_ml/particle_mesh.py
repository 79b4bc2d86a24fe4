"""Particle-mesh (PM) gravity with the FastPM time stepping of Feng et al. (2016, MNRAS 463, 2273).

Variables: comoving position x in Mpc/h and momentum p = a^3 E(a) dx/da in Mpc/h, with time in
units of 1/H0 and E(a) = H(a)/H0. The equations of motion are

    dx/da = p / (a^3 E),    dp/da = F / (a^2 E),    F = -grad(psi),    laplacian(psi) = 1.5 Omega_m delta,

with delta the density contrast of the particles. The peculiar velocity is v = 100 p / a km/s.

FastPM replaces the leapfrog's integrals of 1/(a^3 E) and 1/(a^2 E) by ratios of growth
functions chosen so that a particle moving on the linear (Zel'dovich) trajectory is advanced
exactly whatever the step size: a kick multiplies the force by
(G_p(a1) - G_p(a0)) / (1.5 Omega_m D1(a_force)) with G_p = a^3 E dD1/da, and a drift multiplies
the momentum by (D1(a1) - D1(a0)) / G_p(a_momentum).
Large scales therefore grow as linear theory predicts even with about ten steps.
"""

import logging

import numpy as np
import scipy.fft
import scipy.integrate

logger = logging.getLogger(__name__)


class GrowthHistory:
    """Linear (D1) and second-order (D2) growth factors of a matter + Lambda + curvature universe.

    The growth equations are integrated in ln a from matter domination, where D1 = a and
    D2 = -3/7 a^2, and D1 is then normalised to 1 at a = 1 (D2 by the square of the same factor,
    so that D2 / D1^2 keeps its physical value). Radiation is ignored, as in GADGET-4.

    Parameters
    ----------
    omega_m, omega_lambda : float
        Density parameters at z = 0; curvature is 1 - omega_m - omega_lambda.
    """

    def __init__(self, omega_m, omega_lambda):
        self.omega_m = float(omega_m)
        self.omega_lambda = float(omega_lambda)
        self.omega_k = 1.0 - self.omega_m - self.omega_lambda

        ln_a_start = np.log(1e-4)
        a_start = np.exp(ln_a_start)
        start = [a_start, a_start, -3.0 / 7.0 * a_start**2, -6.0 / 7.0 * a_start**2]
        solution = scipy.integrate.solve_ivp(
            self._derivatives, (ln_a_start, np.log(1.5)), start,
            method="DOP853", rtol=1e-11, atol=1e-14, dense_output=True)
        self._solution = solution.sol
        self._norm = 1.0 / self._solution(0.0)[0]

    def hubble(self, a):
        """Return E(a) = H(a) / H0."""
        a = np.asarray(a, dtype=np.float64)
        return np.sqrt(self.omega_m / a**3 + self.omega_k / a**2 + self.omega_lambda)

    def omega_m_of_a(self, a):
        """Return the matter density parameter at scale factor ``a``."""
        return self.omega_m / (a**3 * self.hubble(a) ** 2)

    def _derivatives(self, ln_a, state):
        d1, d1_prime, d2, d2_prime = state
        a = np.exp(ln_a)
        e_squared = self.hubble(a) ** 2
        dln_e = -(1.5 * self.omega_m / a**3 + self.omega_k / a**2) / e_squared
        source = 1.5 * self.omega_m_of_a(a)
        friction = 2.0 + dln_e
        return [
            d1_prime,
            source * d1 - friction * d1_prime,
            d2_prime,
            source * (d2 - d1**2) - friction * d2_prime,
        ]

    def _state(self, a):
        return self._solution(np.log(a))

    def d1(self, a):
        """Return the linear growth factor, 1 at a = 1."""
        return self._state(a)[0] * self._norm

    def d2(self, a):
        """Return the second-order growth factor (negative, about -3/7 D1^2)."""
        return self._state(a)[2] * self._norm**2

    def f1(self, a):
        """Return the linear growth rate dln D1 / dln a."""
        state = self._state(a)
        return state[1] / state[0]

    def f2(self, a):
        """Return the second-order growth rate dln D2 / dln a."""
        state = self._state(a)
        return state[3] / state[2]

    def momentum_growth(self, a):
        """Return G_p(a) = a^3 E dD1/da, the growth of p on the linear trajectory."""
        return a**2 * self.hubble(a) * self._state(a)[1] * self._norm

    def kick_factor(self, a_start, a_end, a_force):
        """Return the factor that turns the force at ``a_force`` into the momentum change.

        On the linear trajectory F(a) = 1.5 Omega_m D1(a) Psi, and the integral of
        F / (a^2 E) over a equals (G_p(a_end) - G_p(a_start)) Psi, hence the ratio below.
        """
        growth_of_momentum = self.momentum_growth(a_end) - self.momentum_growth(a_start)
        return growth_of_momentum / (1.5 * self.omega_m * self.d1(a_force))

    def drift_factor(self, a_start, a_end, a_momentum):
        """Return the factor that turns the momentum at ``a_momentum`` into the displacement."""
        return (self.d1(a_end) - self.d1(a_start)) / self.momentum_growth(a_momentum)


def cic_stencil(positions, mesh_size, box_size):
    """Return the cloud-in-cell cells and weights of every particle on a periodic mesh.

    Parameters
    ----------
    positions : numpy.ndarray
        (N, 3) comoving positions in Mpc/h, any real values (wrapped periodically).
    mesh_size : int
        Cells per side.
    box_size : float
        Comoving box side in Mpc/h.

    Returns
    -------
    cells : numpy.ndarray
        (8, N) flat indices (i*m + j)*m + k of the 8 cells that share each particle.
    weights : numpy.ndarray
        (8, N) float32 weights; each particle's weights sum to 1.
    """
    scaled = positions * (mesh_size / box_size)
    lower = np.floor(scaled)
    fraction = (scaled - lower).astype(np.float32)
    lower = lower.astype(np.int64) % mesh_size
    index_type = np.int32 if mesh_size**3 < 2**31 else np.int64
    upper = (lower + 1) % mesh_size

    n_particles = len(positions)
    cells = np.empty((8, n_particles), dtype=index_type)
    weights = np.empty((8, n_particles), dtype=np.float32)
    sides = (lower, upper)
    side_weights = (1.0 - fraction, fraction)
    corner = 0
    for dx in (0, 1):
        for dy in (0, 1):
            row = sides[dx][:, 0] * mesh_size + sides[dy][:, 1]
            weight_xy = side_weights[dx][:, 0] * side_weights[dy][:, 1]
            for dz in (0, 1):
                cells[corner] = row * mesh_size + sides[dz][:, 2]
                weights[corner] = weight_xy * side_weights[dz][:, 2]
                corner += 1
    return cells, weights


def paint_cic(positions, mesh_size, box_size, weights=None, stencil=None):
    """Deposit particles on a periodic mesh with cloud-in-cell weights.

    Parameters
    ----------
    positions : numpy.ndarray
        (N, 3) comoving positions in Mpc/h, any real values (wrapped periodically).
    mesh_size : int
        Cells per side.
    box_size : float
        Comoving box side in Mpc/h.
    weights : numpy.ndarray, optional
        Per-particle weights (default 1).
    stencil : tuple, optional
        The output of :func:`cic_stencil` for these positions, to reuse it.

    Returns
    -------
    numpy.ndarray
        (mesh_size,)*3 float64 array of summed weights; its total equals the total weight.
    """
    cells, corner_weights = stencil if stencil is not None else cic_stencil(positions, mesh_size, box_size)
    if weights is not None:
        corner_weights = corner_weights * weights
    mesh = np.bincount(cells.ravel(), weights=corner_weights.ravel(), minlength=mesh_size**3)
    return mesh.reshape((mesh_size,) * 3)


def readout_cic(mesh, positions, box_size, stencil=None):
    """Interpolate a periodic mesh to particle positions with cloud-in-cell weights."""
    mesh_size = mesh.shape[0]
    cells, weights = stencil if stencil is not None else cic_stencil(positions, mesh_size, box_size)
    flat_mesh = mesh.ravel()
    values = np.zeros(cells.shape[1])
    for corner in range(8):
        values += weights[corner] * flat_mesh[cells[corner]]
    return values


def cic_window(mesh_size, box_size):
    """Return the Fourier transform of the CIC assignment window on the rfftn grid (broadcastable)."""
    from halo_ml.initial_conditions import wavenumbers

    cell = box_size / mesh_size
    window = 1.0
    for axis in wavenumbers(mesh_size, box_size):
        window = window * np.sinc(axis * cell / (2.0 * np.pi)) ** 2
    return window


class ForceSolver:
    """Periodic PM force on a mesh: CIC painting, FFT Poisson solve, CIC readout.

    The Green's function is -1/k^2 and the gradient the 4-point finite-difference kernel
    (8 sin(k h) - sin(2 k h)) / (6 h) of FastPM. The CIC window is not divided out, because on a
    mesh finer than the particle lattice the deconvolution amplifies the lattice's images near
    the mesh Nyquist frequency. With it, the forces on 2LPT initial conditions of 64^3 particles
    on a 128^3 mesh correlate with the linear-theory forces at 0.78 instead of 0.99.

    Parameters
    ----------
    mesh_size : int
        Force mesh cells per side.
    box_size : float
        Comoving box side in Mpc/h.
    omega_m : float
        Matter density parameter at z = 0 (sets the source 1.5 Omega_m delta).
    threads : int
        FFT worker threads.
    """

    def __init__(self, mesh_size, box_size, omega_m, threads=1):
        from halo_ml.initial_conditions import wavenumbers

        self.mesh_size = mesh_size
        self.box_size = box_size
        self.omega_m = omega_m
        self.threads = threads

        cell = box_size / mesh_size
        axes = wavenumbers(mesh_size, box_size)
        k_squared = sum(axis**2 for axis in axes)
        k_squared[0, 0, 0] = 1.0
        green = -1.5 * omega_m / k_squared
        green[0, 0, 0] = 0.0
        self._potential_kernel = green.astype(np.complex64)
        self._gradient_kernels = [
            (1j * (8.0 * np.sin(axis * cell) - np.sin(2.0 * axis * cell)) / (6.0 * cell)).astype(np.complex64)
            for axis in axes
        ]

    def accelerations(self, positions):
        """Return F = -grad(psi) at each particle, (N, 3) in Mpc/h (H0 = 1 units)."""
        n_particles = len(positions)
        stencil = cic_stencil(positions, self.mesh_size, self.box_size)
        density = paint_cic(positions, self.mesh_size, self.box_size, stencil=stencil)
        density *= self.mesh_size**3 / n_particles
        density -= 1.0
        potential_k = scipy.fft.rfftn(density.astype(np.float32), workers=self.threads)
        del density
        potential_k *= self._potential_kernel

        forces = np.empty((n_particles, 3))
        shape = (self.mesh_size,) * 3
        for axis, kernel in enumerate(self._gradient_kernels):
            # F = -grad(psi): the minus sign is applied here, once per component.
            component = scipy.fft.irfftn(-kernel * potential_k, s=shape, workers=self.threads)
            forces[:, axis] = readout_cic(component, positions, self.box_size, stencil=stencil)
        return forces


def time_steps(a_start, a_end, n_steps):
    """Return the ``n_steps + 1`` step boundaries, uniform in scale factor as in FastPM."""
    return np.linspace(a_start, a_end, n_steps + 1)


def evolve(positions, momenta, growth, box_size, mesh_size, a_start, a_end, n_steps,
           threads=1, progress=None):
    """Integrate particles from ``a_start`` to ``a_end`` with FastPM kick-drift-kick steps.

    Parameters
    ----------
    positions, momenta : numpy.ndarray
        (N, 3) arrays at ``a_start`` (Mpc/h); updated in place and returned.
    growth : GrowthHistory
        Growth factors of the simulated cosmology.
    box_size : float
        Comoving box side in Mpc/h.
    mesh_size : int
        Force mesh cells per side.
    a_start, a_end : float
        First and last scale factor.
    n_steps : int
        Number of steps, uniform in a.
    threads : int
        FFT worker threads.
    progress : callable, optional
        Called with no argument after each step (for example ``tqdm.update``).

    Returns
    -------
    positions, momenta : numpy.ndarray
        At ``a_end``; positions wrapped into [0, L).
    """
    solver = ForceSolver(mesh_size, box_size, growth.omega_m, threads=threads)
    boundaries = time_steps(a_start, a_end, n_steps)
    forces = solver.accelerations(positions)
    for a0, a1 in zip(boundaries[:-1], boundaries[1:]):
        a_half = 0.5 * (a0 + a1)
        momenta += growth.kick_factor(a0, a_half, a0) * forces
        positions += growth.drift_factor(a0, a1, a_half) * momenta
        np.mod(positions, box_size, out=positions)
        forces = solver.accelerations(positions)
        momenta += growth.kick_factor(a_half, a1, a1) * forces
        if progress is not None:
            progress()
    return positions, momenta


def peculiar_velocity(momenta, a):
    """Convert FastPM momenta to peculiar velocities v = a dx/dt in km/s."""
    return momenta * (100.0 / a)


def power_spectrum_modes(positions, box_size, mesh_size, threads=1):
    """Measure the power of every Fourier mode of a particle set, in (Mpc/h)^3.

    The density is painted with CIC on two meshes offset by half a cell and averaged
    (interlacing, which cancels the odd aliasing images), the CIC window is divided out, and
    each mode's estimate is |delta_k|^2 L^3. Shot noise is not subtracted. Bin the result with
    :func:`bin_modes`.

    Parameters
    ----------
    positions : numpy.ndarray
        (N, 3) comoving positions in Mpc/h.
    box_size : float
        Comoving box side in Mpc/h.
    mesh_size : int
        Cells per side of the measurement mesh.
    threads : int
        FFT worker threads.

    Returns
    -------
    k, power : numpy.ndarray
        Flattened |k| (h/Mpc) and power ((Mpc/h)^3) of the rfftn modes. Modes with k_z > 0
        also stand for their complex conjugate; counting each once weighs all alike.
    """
    from halo_ml.initial_conditions import wavenumbers

    n_particles = len(positions)
    cell = box_size / mesh_size
    axes = wavenumbers(mesh_size, box_size)
    fields = []
    for shift in (0.0, 0.5 * cell):
        mesh = paint_cic(positions + shift, mesh_size, box_size) * (mesh_size**3 / n_particles) - 1.0
        fields.append(scipy.fft.rfftn(mesh, workers=threads))
    # Shifting the particles by s multiplies delta_k by exp(-i k.s); this undoes it.
    phase = np.exp(0.5j * cell * (axes[0] + axes[1] + axes[2]))
    delta_k = 0.5 * (fields[0] + fields[1] * phase) / cic_window(mesh_size, box_size)

    k = np.sqrt(axes[0] ** 2 + axes[1] ** 2 + axes[2] ** 2)
    power = np.abs(delta_k) ** 2 * box_size**3 / mesh_size**6
    return k.ravel(), power.ravel()


def bin_modes(k, values, edges):
    """Average ``values`` over the modes whose |k| falls in each bin of ``edges`` (h/Mpc).

    Returns
    -------
    mean, counts : numpy.ndarray
        Mean value per bin (NaN for an empty bin) and number of modes per bin.
    """
    counts, _ = np.histogram(k, bins=edges)
    sums, _ = np.histogram(k, bins=edges, weights=values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts, counts
