"""Per-particle halo labels at z=0: FoF group, bound group mass and r / R_200m.

Halo definition: a particle's halo is its FoF group. The halo mass is the mass of all
particles bound to any SUBFIND subhalo of the group, so substructure is not split off, and
particles of the group that no subhalo binds get no label. With a FoF-only catalogue (no
subhalos) every FoF member counts as bound. r / R_200m is the particle's periodic z=0
distance from the group centre (GADGET's ``GroupPos``, the position of the particle with
the minimum potential) over the group's R_200m relative to the mean density
(``Group_R_Mean200``).
"""

import dataclasses
import logging

import numpy as np

from .lagrangian import periodic_offset
from .snapshots import HaloCatalogueError

logger = logging.getLogger(__name__)

SUBFIND_DEFINITION = (
    "FoF group; mass = sum of the masses of the particles bound to any SUBFIND subhalo of the group "
    "(substructure not split off), log10(M / Msun); unbound FoF members unlabelled; "
    "r_over_r200m = periodic z=0 distance from GroupPos over Group_R_Mean200")
FOF_ONLY_DEFINITION = (
    "FoF group; mass = sum of the masses of all FoF members (FoF-only catalogue: no subhalos, so every "
    "member counts as bound), log10(M / Msun); r_over_r200m = periodic z=0 distance from GroupPos over "
    "Group_R_Mean200")

# A catalogue belongs to its snapshot when the members of most groups lie near the group
# centre. With the wrong snapshot the members are scattered over the box, at a mean distance
# of about half the box side.
_MEMBER_DISTANCE_LIMIT_R200M = 3.0
_MIN_FRACTION_OF_COMPACT_GROUPS = 0.8


@dataclasses.dataclass
class HaloLabels:
    """Labels of every particle of the final snapshot, in its file order.

    Attributes
    ----------
    halo_id : ndarray of int64
        FoF group index in the catalogue (0-based), -1 for unlabelled particles.
    log_halo_mass : ndarray of float32
        log10 of the group's bound mass in Msun, NaN for unlabelled particles.
    r_over_r200m : ndarray of float32
        Distance from the group centre over R_200m, NaN for unlabelled particles or groups
        without an R_200m.
    n_halos : int
        Groups with at least one labelled particle.
    halo_definition : str
    """

    halo_id: np.ndarray
    log_halo_mass: np.ndarray
    r_over_r200m: np.ndarray
    n_halos: int
    halo_definition: str


def label_particles(snapshot, catalogue):
    """Label every particle of the final snapshot with its halo.

    Parameters
    ----------
    snapshot : halo_ml.snapshots.Snapshot
        The z=0 snapshot (positions in comoving Mpc/h, masses in Msun).
    catalogue : halo_ml.snapshots.HaloCatalogue
        Its FoF/SUBFIND catalogue.

    Returns
    -------
    HaloLabels

    Raises
    ------
    HaloCatalogueError
        When the catalogue's groups are not spatially compact in this snapshot, which means the
        catalogue belongs to another snapshot.
    """
    group = catalogue.group_index
    bound = catalogue.bound
    definition = FOF_ONLY_DEFINITION if catalogue.n_subhalos is None else SUBFIND_DEFINITION
    n_groups = catalogue.n_groups
    if len(group) != len(snapshot):
        raise HaloCatalogueError(f"halo catalogue {catalogue.path} labels {len(group)} particles but "
                                 f"snapshot {snapshot.path} has {len(snapshot)}")

    masses = snapshot.masses()
    group_mass = np.bincount(group[bound], weights=masses[bound], minlength=n_groups)
    labelled_groups = group_mass > 0
    centre = catalogue.centre_mpc_h
    r200m = catalogue.r200m_mpc_h

    box_size = snapshot.box_size_mpc_h
    member_group = group[bound]
    offset = periodic_offset(snapshot.positions()[bound] - centre[member_group], box_size)
    distance = np.sqrt(np.sum(offset ** 2, axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(r200m[member_group] > 0, distance / r200m[member_group], np.nan)
    _check_groups_compact(member_group, ratio, n_groups, catalogue.path, snapshot.path)

    halo_id = np.full(len(snapshot), -1, dtype=np.int64)
    halo_id[bound] = member_group
    log_halo_mass = np.full(len(snapshot), np.nan, dtype=np.float32)
    log_halo_mass[bound] = np.log10(group_mass[member_group])
    r_over_r200m = np.full(len(snapshot), np.nan, dtype=np.float32)
    r_over_r200m[bound] = ratio

    n_halos = int(np.count_nonzero(labelled_groups))
    logger.info("labelled %d of %d particles in %d halos (largest log10 M/Msun = %.3f)",
                int(np.count_nonzero(bound)), len(snapshot), n_halos,
                float(np.log10(group_mass.max())) if n_halos else float("nan"))
    return HaloLabels(halo_id=halo_id, log_halo_mass=log_halo_mass, r_over_r200m=r_over_r200m,
                      n_halos=n_halos, halo_definition=definition)


def _check_groups_compact(member_group, ratio, n_groups, catalogue_path, snapshot_path):
    finite = np.isfinite(ratio)
    if not finite.any():
        return
    total = np.bincount(member_group[finite], weights=ratio[finite], minlength=n_groups)
    count = np.bincount(member_group[finite], minlength=n_groups)
    measured = count > 0
    mean_ratio = total[measured] / count[measured]
    compact = float(np.mean(mean_ratio < _MEMBER_DISTANCE_LIMIT_R200M))
    if compact < _MIN_FRACTION_OF_COMPACT_GROUPS:
        raise HaloCatalogueError(
            f"halo catalogue {catalogue_path} does not match snapshot {snapshot_path}: in only "
            f"{compact:.0%} of its groups do the members lie within {_MEMBER_DISTANCE_LIMIT_R200M:g} R_200m "
            f"of the centre (mean); give the catalogue written with this snapshot")
