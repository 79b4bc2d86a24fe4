"""Halos of the demo suite: periodic friends-of-friends groups and their properties.

Groups are the connected components of the graph that links every pair of particles closer
than ``b`` times the mean interparticle spacing (Davis et al. 1985), found with a periodic
``scipy.spatial.cKDTree`` and ``scipy.sparse.csgraph.connected_components``.

Each group then gets what GADGET-4's SUBFIND would write for it, computed more cheaply:

- a centre: the shrinking-sphere centre (Power et al. 2003) of the group's particles, then the
  particle of lowest potential, as SUBFIND reports the most bound particle's position;
- one bound subhalo from an unbinding pass in the group's spherically averaged potential
  (the AHF approach, Knollmann & Knebe 2009), not SUBFIND's search for substructure;
- spherical-overdensity masses and radii about the centre over all particles of the box:
  200 times the mean and the critical density, 500 times critical, and the Bryan & Norman
  (1998) virial overdensity ("TopHat200" in GADGET-4's names).

Units follow GADGET-4's internal ones so that values go to the files unchanged: lengths in
comoving kpc/h, masses in 1e10 Msun/h, velocities in km/s (peculiar).
"""

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph
from scipy.spatial import cKDTree

logger = logging.getLogger(__name__)

# GADGET-4's physical constants (its constants.h) in cgs, so that particle masses and
# densities match the files GADGET-4 writes to the last digit it prints.
GRAVITY_CGS = 6.6738e-8
SOLAR_MASS_G = 1.989e33
KPC_CM = 3.085678e21
# G in kpc/h, 1e10 Msun/h and km/s: GADGET-4's internal units.
GRAVITY_INTERNAL = GRAVITY_CGS * 1e10 * SOLAR_MASS_G / (KPC_CM * 1e10)
# H0 in km/s per kpc/h.
HUBBLE_INTERNAL = 0.1


def critical_density_internal():
    """Return the critical density at z = 0 in 1e10 Msun/h per (kpc/h)^3."""
    return 3.0 * HUBBLE_INTERNAL**2 / (8.0 * np.pi * GRAVITY_INTERNAL)


def friends_of_friends(positions, box_size, linking_length, min_particles):
    """Find periodic friends-of-friends groups.

    Parameters
    ----------
    positions : numpy.ndarray
        (N, 3) positions in [0, box_size), any length unit.
    box_size : float
        Periodic box side in the same unit.
    linking_length : float
        Linking length in the same unit (b times the mean interparticle spacing).
    min_particles : int
        Groups with fewer particles are discarded.

    Returns
    -------
    numpy.ndarray
        Group number of each particle (int64), -1 for none. Groups are numbered by decreasing
        size, ties broken by the lowest particle index, as GADGET-4 orders them.
    """
    positions = np.asarray(positions, dtype=np.float64)
    n_particles = len(positions)
    # cKDTree with boxsize requires coordinates in [0, boxsize); wrapping a value just below
    # box_size can round it to box_size itself, hence the second modulo.
    wrapped = np.mod(np.mod(positions, box_size), box_size)
    tree = cKDTree(wrapped, boxsize=box_size)
    pairs = tree.query_pairs(linking_length, output_type="ndarray")
    graph = scipy.sparse.coo_matrix(
        (np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])),
        shape=(n_particles, n_particles))
    del pairs
    _, component = scipy.sparse.csgraph.connected_components(graph, directed=False)
    del graph

    sizes = np.bincount(component)
    first_member = np.full(len(sizes), n_particles, dtype=np.int64)
    np.minimum.at(first_member, component, np.arange(n_particles))
    large_enough = np.flatnonzero(sizes >= min_particles)
    order = large_enough[np.lexsort((first_member[large_enough], -sizes[large_enough]))]

    group_of_component = np.full(len(sizes), -1, dtype=np.int64)
    group_of_component[order] = np.arange(len(order))
    return group_of_component[component]


@dataclass
class Group:
    """Properties of one FoF group and its bound subhalo (GADGET-4 internal units).

    ``members`` lists the group's particle indices in the order they are written: bound
    particles by increasing binding energy, then the unbound ones by increasing energy.
    ``n_bound`` is 0 when fewer than the minimum subhalo size remain bound.
    """

    members: np.ndarray
    n_bound: int
    position: np.ndarray
    velocity: np.ndarray
    spherical_overdensity: dict
    subhalo: dict


def periodic_offsets(positions, centre, box_size):
    """Return positions minus ``centre`` mapped to the nearest periodic image."""
    offsets = positions - centre
    offsets -= box_size * np.round(offsets / box_size)
    return offsets


def shrinking_sphere_centre(positions, box_size, shrink=0.95, min_particles=20):
    """Find the density centre of a particle set with the shrinking-sphere method.

    Starting from the centre of mass within a sphere that contains every particle, the radius
    shrinks by ``shrink`` per iteration and the centre moves to the centre of mass of the
    particles inside, until fewer than ``min_particles`` remain.
    """
    # Unwrap about one member first so that a group across the boundary stays contiguous.
    unwrapped = positions[0] + periodic_offsets(positions, positions[0], box_size)
    centre = unwrapped.mean(axis=0)
    radius = np.sqrt(np.max(np.sum((unwrapped - centre) ** 2, axis=1)))
    inside = unwrapped
    while len(inside) >= min_particles:
        centre = inside.mean(axis=0)
        radius *= shrink
        distance_squared = np.sum((inside - centre) ** 2, axis=1)
        inside = inside[distance_squared <= radius**2]
    return np.mod(centre, box_size)


def spherical_potential(radii, particle_mass, softening):
    """Return the potential of a spherically averaged particle set at each particle's radius.

    phi(r_i) = -G [M(< r_i) / r_i + sum over r_j > r_i of m / r_j], with radii below
    ``softening`` raised to it. Units: radii and softening in kpc/h, mass in 1e10 Msun/h,
    result in (km/s)^2.
    """
    order = np.argsort(radii)
    sorted_radii = np.maximum(radii[order], softening)
    enclosed = particle_mass * np.arange(len(radii))
    inverse = particle_mass / sorted_radii
    # Sum of m / r_j over the particles outside each one (exclusive, from the outside in).
    outside = np.cumsum(inverse[::-1])[::-1] - inverse
    potential = np.empty(len(radii))
    potential[order] = -GRAVITY_INTERNAL * (enclosed / sorted_radii + outside)
    return potential


def unbind(offsets, velocities, particle_mass, softening, scale_factor, max_iterations=50):
    """Find the particles bound to a group in its spherically averaged potential.

    A particle is bound when 0.5 |v - v_bulk|^2 + phi < 0, with v_bulk the mean velocity of the
    bound particles and phi the potential of the bound particles alone about the group centre.
    Unbound particles are removed and the test repeated until no more leave.

    Parameters
    ----------
    offsets : numpy.ndarray
        (N, 3) comoving positions relative to the centre, kpc/h.
    velocities : numpy.ndarray
        (N, 3) peculiar velocities in km/s.
    particle_mass : float
        1e10 Msun/h.
    softening : float
        Comoving kpc/h below which the potential is flat.
    scale_factor : float
        Converts comoving distances to the physical ones that the potential needs.

    Returns
    -------
    bound : numpy.ndarray
        Boolean mask of the bound particles.
    energy : numpy.ndarray
        Specific binding energy (km/s)^2 of every particle in the final potential.
    """
    radii = np.sqrt(np.sum(offsets**2, axis=1)) * scale_factor
    physical_softening = softening * scale_factor
    bound = np.ones(len(radii), dtype=bool)
    energy = np.zeros(len(radii))
    for _ in range(max_iterations):
        bulk = velocities[bound].mean(axis=0)
        kinetic = 0.5 * np.sum((velocities - bulk) ** 2, axis=1)
        potential = np.empty(len(radii))
        potential[bound] = spherical_potential(radii[bound], particle_mass, physical_softening)
        # An unbound particle feels the bound mass inside its radius and outside it alike.
        potential[~bound] = _potential_at(radii[~bound], radii[bound], particle_mass, physical_softening)
        energy = kinetic + potential
        still_bound = energy < 0
        if np.array_equal(still_bound, bound) or not still_bound.any():
            bound = still_bound
            break
        bound = still_bound
    return bound, energy


def _potential_at(radii, source_radii, particle_mass, softening):
    # Potential at arbitrary radii of particles at source_radii, spherically averaged.
    if len(radii) == 0:
        return np.zeros(0)
    sorted_sources = np.sort(np.maximum(source_radii, softening))
    inverse_suffix = np.concatenate([np.cumsum((particle_mass / sorted_sources)[::-1])[::-1], [0.0]])
    radii = np.maximum(radii, softening)
    inside = np.searchsorted(sorted_sources, radii, side="left")
    return -GRAVITY_INTERNAL * (particle_mass * inside / radii + inverse_suffix[inside])


def overdensity_radius(sorted_distances, particle_mass, threshold_density):
    """Return the radius and mass of the sphere whose mean density equals the threshold.

    The enclosed mass at the k-th nearest particle is k m. The radius is the outermost one at
    which the mean enclosed density is still above ``threshold_density``, interpolated in log
    density between that particle and the next. The outermost crossing is used because the
    softened cores of PM halos can dip below high thresholds near the centre. Returns (0, 0)
    when no sphere through a particle reaches the threshold.
    """
    count = np.arange(1, len(sorted_distances) + 1)
    radii = np.maximum(sorted_distances, 1e-12 * max(sorted_distances[-1], 1.0))
    density = count * particle_mass / (4.0 / 3.0 * np.pi * radii**3)
    above = np.flatnonzero(density >= threshold_density)
    if len(above) == 0:
        return 0.0, 0.0
    inner = above[-1]
    if inner == len(radii) - 1:
        # NOTE: the threshold is not crossed within the particles given. The caller widens its
        # search up to half the box; beyond that the last particle's radius is returned.
        radius = radii[inner]
        return float(radius), float(count[inner] * particle_mass)
    outer = inner + 1
    log_density = np.log(density[[inner, outer]])
    log_radius = np.log(radii[[inner, outer]])
    fraction = (np.log(threshold_density) - log_density[0]) / (log_density[1] - log_density[0])
    radius = np.exp(log_radius[0] + fraction * (log_radius[1] - log_radius[0]))
    mass = 4.0 / 3.0 * np.pi * radius**3 * threshold_density
    return float(radius), float(mass)


def virial_overdensity(omega_m_of_a):
    """Return Bryan & Norman's (1998) virial overdensity relative to the critical density."""
    x = omega_m_of_a - 1.0
    return 18.0 * np.pi**2 + 82.0 * x - 39.0 * x**2


def measure_groups(group_of_particle, positions, velocities, particle_mass, box_size,
                   omega_m, omega_m_of_a, scale_factor, softening, min_bound_particles,
                   progress=None):
    """Compute centres, spherical-overdensity masses and bound subhalos of FoF groups.

    Parameters
    ----------
    group_of_particle : numpy.ndarray
        Output of :func:`friends_of_friends`.
    positions : numpy.ndarray
        (N, 3) comoving positions in kpc/h.
    velocities : numpy.ndarray
        (N, 3) peculiar velocities in km/s.
    particle_mass : float
        1e10 Msun/h.
    box_size : float
        Comoving kpc/h.
    omega_m : float
        Matter density parameter at z = 0.
    omega_m_of_a : float
        Matter density parameter at ``scale_factor``.
    scale_factor : float
        Of the snapshot.
    softening : float
        Comoving kpc/h, the scale below which the potential is flat (the force mesh cell).
    min_bound_particles : int
        Fewer bound particles than this leave a group without a subhalo.
    progress : callable, optional
        Called once per group.

    Returns
    -------
    list of Group
        In group-number order.
    """
    n_groups = int(group_of_particle.max()) + 1 if len(group_of_particle) else 0
    order = np.argsort(group_of_particle, kind="stable")
    sizes = np.bincount(group_of_particle[group_of_particle >= 0], minlength=n_groups)
    starts = np.searchsorted(group_of_particle[order], np.arange(n_groups))
    tree = cKDTree(np.mod(positions, box_size), boxsize=box_size)

    # Thresholds as comoving densities (physical ones times a^3): the mean matter density is
    # Omega_m rho_crit0 at any a, the critical density rho_m(a) / Omega_m(a).
    rho_crit_comoving = critical_density_internal() * omega_m / omega_m_of_a
    thresholds = {
        "Mean200": 200.0 * omega_m * critical_density_internal(),
        "Crit200": 200.0 * rho_crit_comoving,
        "Crit500": 500.0 * rho_crit_comoving,
        "TopHat200": virial_overdensity(omega_m_of_a) * rho_crit_comoving,
    }

    groups = []
    for number in range(n_groups):
        members = order[starts[number]:starts[number] + sizes[number]]
        groups.append(_measure_group(members, positions, velocities, particle_mass, box_size,
                                     scale_factor, softening, min_bound_particles, tree, thresholds))
        if progress is not None:
            progress()
    return groups


def _measure_group(members, positions, velocities, particle_mass, box_size, scale_factor,
                   softening, min_bound_particles, tree, thresholds):
    centre = shrinking_sphere_centre(positions[members], box_size)
    offsets = periodic_offsets(positions[members], centre, box_size)
    bound, energy = unbind(offsets, velocities[members], particle_mass, softening, scale_factor)
    if bound.sum() < min_bound_particles:
        bound[:] = False

    # Bound particles first, each block from the most to the least bound.
    ordering = np.lexsort((energy, ~bound))
    members = members[ordering]
    offsets, energy, bound = offsets[ordering], energy[ordering], bound[ordering]
    n_bound = int(bound.sum())

    radii = np.sqrt(np.sum(offsets**2, axis=1))
    innermost = int(np.argmin(radii))
    position = np.mod(centre + offsets[innermost], box_size)
    velocity = velocities[members].mean(axis=0)

    spherical_overdensity = _spherical_overdensity(position, radii.max(), tree, positions,
                                                   particle_mass, box_size, thresholds)
    subhalo = _subhalo_properties(members[:n_bound], offsets[:n_bound], velocities, particle_mass,
                                  scale_factor, centre, position, box_size) if n_bound else None
    return Group(members=members, n_bound=n_bound, position=position, velocity=velocity,
                 spherical_overdensity=spherical_overdensity, subhalo=subhalo)


def _spherical_overdensity(centre, group_radius, tree, positions, particle_mass, box_size, thresholds):
    # Search out to twice the group's extent, then wider if the lowest threshold is not crossed.
    search_radius = 2.0 * group_radius
    results = {}
    while True:
        neighbours = tree.query_ball_point(centre, min(search_radius, 0.5 * box_size))
        distances = np.sort(np.sqrt(np.sum(
            periodic_offsets(positions[neighbours], centre, box_size) ** 2, axis=1)))
        for name, threshold in thresholds.items():
            results[name] = overdensity_radius(distances, particle_mass, threshold)
        largest = max(radius for radius, _ in results.values())
        if largest < 0.9 * search_radius or search_radius >= 0.5 * box_size:
            return results
        search_radius *= 2.0


def _subhalo_properties(members, offsets, velocities, particle_mass, scale_factor, centre, position,
                        box_size):
    # Members are sorted from the most bound, so the first is SUBFIND's "most bound" particle.
    # Radii are measured from the shrinking-sphere centre, which is within one interparticle
    # distance of the lowest-potential particle that SUBFIND measures from.
    velocity = velocities[members]
    bulk = velocity.mean(axis=0)
    radii = np.sqrt(np.sum(offsets**2, axis=1))
    sorted_radii = np.sort(radii)
    count = np.arange(1, len(radii) + 1)
    # Circular velocity sqrt(G M(<r) / r) with physical r; the innermost particle is skipped
    # because M(<r)/r diverges as r -> 0 in a finite sample.
    physical = np.maximum(sorted_radii[1:] * scale_factor, 1e-10)
    circular = np.sqrt(GRAVITY_INTERNAL * particle_mass * count[1:] / physical)
    peak = int(np.argmax(circular)) if len(circular) else 0
    return {
        "most_bound_index": int(members[0]),
        "position": position,
        "centre_of_mass": np.mod(centre + offsets.mean(axis=0), box_size),
        "velocity": bulk,
        "velocity_dispersion": float(np.sqrt(np.mean(np.sum((velocity - bulk) ** 2, axis=1)) / 3.0)),
        "half_mass_radius": float(sorted_radii[(len(radii) - 1) // 2]),
        "vmax": float(circular[peak]) if len(circular) else 0.0,
        "vmax_radius": float(sorted_radii[1:][peak]) if len(circular) else 0.0,
    }
