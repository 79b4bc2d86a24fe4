"""Input cubes of each variant, cut per batch for the CNN.

A :class:`CubeSource` returns the cubes of one split of one variant as a float32 tensor of
shape (B, 1, c, c, c) on its device, not standardised. Voxel (a, b, d) of a cube centred on
the Lagrangian voxel (i, j, k) of a simulation with n particles per side contains grid voxel
((i + a - h) mod n, (j + b - h) mod n, (k + d - h) mod n), where h = (c - 1) / 2, so c must
be odd.

- ``raw``: the z=99 density contrast (store array ``density_contrast``).
- ``potential``: the z=99 potential (store array ``potential``).
- ``averaged``: the raw cube with every voxel replaced by the mean of its spherical shell.
- ``z0``: the z=0 density cubes written by :mod:`halo_ml.final_subboxes`.

The grid variants never store cubes. Each needed store's grid is padded once periodically by
h voxels on every side and kept on the device. A batch is one gather from a strided view of
all windows of the padded grids.

Shell edges of the averaged variant
-----------------------------------
Lucie-Smith et al. (2024, PRD 109, 063524, Sec. III B) average over 20 shells "evenly spaced
in radius r within the range r in [2, 75] voxels" for a cube of 75 voxels per side, and average
the shells that leave the cube over their part inside it. A 75-voxel cube has a largest inscribed
radius of 37.5 voxels, so this module reads 75 as the cube side and chooses:

- r is the distance of a voxel centre from the centre voxel, in voxels.
- The ball r < r_min (``inputs.shell_radius_min_voxels``, 2 by default) is one region of its
  own, so the centre voxel and its 26 neighbours share one mean.
- ``inputs.shells`` shells of equal width w = (c/2 - r_min) / shells fill r_min <= r < c/2.
  For c = 75 and 20 shells, w = 1.775 voxels.
- Further shells of the same width continue to the cube corners (r up to sqrt(3) (c-1)/2,
  about 64.1 voxels for c = 75). These shells are cut by the cube faces, and their mean is
  taken over the voxels inside the cube.

A shell that contains no voxel centre (possible when w < 1 voxel) is simply empty.
"""

import logging
import math
from pathlib import Path

import numpy as np
import torch
import zarr

logger = logging.getLogger(__name__)

GRID_VARIANTS = {"raw": "density_contrast", "averaged": "density_contrast", "potential": "potential"}
VARIANTS = (*GRID_VARIANTS, "z0")


class CubeError(ValueError):
    """Invalid input for cutting cubes: the message names the store or key and what to do."""


class CubeSource:
    """Cubes of one split of one variant.

    Attributes
    ----------
    device : torch.device
        Where the returned cubes live.
    cube_voxels : int
        Cube side c in voxels.
    """

    device: torch.device
    cube_voxels: int

    def __len__(self):
        raise NotImplementedError

    def __call__(self, indices):
        """Return the cubes of the samples at ``indices`` (rows of the samples table).

        Returns
        -------
        torch.Tensor
            Shape (B, 1, c, c, c), float32, on :attr:`device`, not standardised.
        """
        raise NotImplementedError


def check_cube_voxels(cube_voxels, grid_voxels=None, where="the grid"):
    """Raise :class:`CubeError` unless the cube side is odd and no larger than the grid."""
    if cube_voxels % 2 != 1:
        raise CubeError(
            f"inputs.cube_voxels is {cube_voxels}, but a cube centred on a voxel needs an odd "
            f"side; set inputs.cube_voxels to {cube_voxels - 1} or {cube_voxels + 1}")
    if grid_voxels is not None and cube_voxels > grid_voxels:
        raise CubeError(
            f"inputs.cube_voxels is {cube_voxels}, larger than {where} of {grid_voxels} voxels "
            f"per side; set inputs.cube_voxels to at most {grid_voxels - (1 - grid_voxels % 2)}")


def open_store_grid(path, array_name):
    """Open ``array_name`` of the store at ``path`` and check its shape against the attributes.

    Returns
    -------
    (zarr.Group, zarr.Array)

    Raises
    ------
    CubeError
        When the store or array is missing, or the shape disagrees with ``particles_per_side``.
    """
    path = Path(path)
    try:
        group = zarr.open_group(str(path), mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        raise CubeError(f"store {path} not found or not a zarr group; run the ingest rule first") from None
    if array_name not in group:
        raise CubeError(f"store {path} has no array '{array_name}'; re-run the ingest rule for it")
    n = group.attrs.get("particles_per_side")
    if n is None:
        raise CubeError(f"store {path} has no 'particles_per_side' attribute; re-run the ingest rule for it")
    array = group[array_name]
    if tuple(array.shape[:3]) != (n, n, n):
        raise CubeError(
            f"store {path}: array '{array_name}' has shape {tuple(array.shape)}, but the "
            f"store's particles_per_side is {n}; the store is inconsistent, re-run the ingest rule")
    return group, array


def store_metadata_paths(store_paths):
    """Return the ``zarr.json`` of each store, the file to checksum for provenance.

    A store's root metadata carries its own provenance, with the checksums of the snapshots it
    was made from. Hashing the arrays instead would take minutes at the paper's sizes.
    """
    paths = []
    for store in store_paths:
        metadata = Path(store) / "zarr.json"
        paths.append(metadata if metadata.exists() else Path(store))
    return paths


def shell_edges(cube_voxels, shells, radius_min_voxels):
    """Return the shell edges in voxels, from ``radius_min_voxels`` out past the cube corner.

    The first ``shells`` shells are evenly spaced over [radius_min_voxels, cube_voxels / 2].
    Further shells of the same width reach the farthest voxel centre.
    """
    half = cube_voxels / 2
    if not 0 <= radius_min_voxels < half:
        raise CubeError(
            f"inputs.shell_radius_min_voxels is {radius_min_voxels}, but it must lie in "
            f"[0, {half}) for a cube of {cube_voxels} voxels (inputs.cube_voxels)")
    width = (half - radius_min_voxels) / shells
    corner = math.sqrt(3) * (cube_voxels - 1) / 2
    n_edges = shells + 1 + max(0, math.ceil((corner - half) / width + 1e-9))
    return radius_min_voxels + width * np.arange(n_edges)


def shell_index(cube_voxels, shells, radius_min_voxels):
    """Return the region of each voxel: 0 for r < r_min, s + 1 for shell s; shape (c, c, c)."""
    edges = shell_edges(cube_voxels, shells, radius_min_voxels)
    offsets = np.arange(cube_voxels) - (cube_voxels - 1) / 2
    radius = np.sqrt(offsets[:, None, None] ** 2 + offsets[None, :, None] ** 2 + offsets[None, None, :] ** 2)
    # searchsorted with side="right" puts r == edge into the shell that starts at that edge.
    return np.searchsorted(edges, radius, side="right").astype(np.int64)


class ShellAverage:
    """Replace each voxel of a batch of cubes by the mean over its spherical shell.

    The mean is a scatter-add over a precomputed shell index followed by a gather, so one
    call costs two passes over the batch.
    """

    def __init__(self, cube_voxels, shells, radius_min_voxels, device="cpu"):
        index = shell_index(cube_voxels, shells, radius_min_voxels).ravel()
        self.n_regions = int(index.max()) + 1
        self.index = torch.as_tensor(index, device=device)
        self._index_numpy = index
        counts = np.bincount(index, minlength=self.n_regions).astype(np.float32)
        # Empty shells get a count of 1 so their (zero) sum does not divide by zero; no voxel reads them.
        self.counts = torch.as_tensor(np.maximum(counts, 1), device=device)

    def __call__(self, cubes):
        """Return the shell-averaged copy of ``cubes`` (B, c, c, c) float32."""
        batch = cubes.shape[0]
        flat = cubes.reshape(batch, -1)
        sums = torch.zeros(batch, self.n_regions, dtype=flat.dtype, device=flat.device)
        sums.index_add_(1, self.index, flat)
        means = sums / self.counts
        if means.device.type == "cpu":
            # On one CPU core numpy's fancy indexing gathered 1.5 to 3 times faster than
            # torch.index_select in our measurements, and from_numpy shares the memory.
            return torch.from_numpy(means.numpy()[:, self._index_numpy]).reshape(cubes.shape)
        return means.index_select(1, self.index).reshape(cubes.shape)


class GridCubeSource(CubeSource):
    """Cubes cut from whole grids kept in memory on the device (raw, averaged, potential).

    Parameters
    ----------
    grids : list of numpy.ndarray
        One (n, n, n) float32 grid per simulation, all of the same n.
    simulation_index : array of int, shape (N,)
        Position in ``grids`` of each sample's simulation.
    centres : array of int, shape (N, 3)
        Lagrangian voxel (i, j, k) of each sample.
    cube_voxels : int
        Odd cube side c, at most n.
    device : torch.device or str
    shell_average : ShellAverage, optional
        Applied to every batch (the averaged variant).
    gather : {"auto", "numpy", "torch"}
        How batches are gathered: numpy (CPU only) or torch (any device). "auto" picks
        numpy on the CPU and torch elsewhere.
    """

    def __init__(self, grids, simulation_index, centres, cube_voxels, device="cpu", shell_average=None,
                 gather="auto"):
        self.device = torch.device(device)
        self.cube_voxels = int(cube_voxels)
        c = self.cube_voxels
        half = (c - 1) // 2
        if gather == "auto":
            gather = "numpy" if self.device.type == "cpu" else "torch"
        if gather == "numpy" and self.device.type != "cpu":
            raise ValueError(f"numpy gathering needs the CPU, not device {self.device}")
        self._use_numpy = gather == "numpy"
        padded = np.stack([np.pad(grid, half, mode="wrap") for grid in grids]).astype(np.float32, copy=False)
        # windows[s, i, j, k] is the cube whose first voxel is padded[s, i, j, k], that is the
        # cube centred on grid voxel (i, j, k). Both forms are views of the padded grids, not copies.
        if self._use_numpy:
            # numpy copies each gathered (c, c, c) window as one strided block, which on one core
            # was 2.7 to 5 times faster than torch's index kernel (docs/benchmarks.md).
            self._padded = padded
            self._windows = np.lib.stride_tricks.sliding_window_view(padded, (c, c, c), axis=(1, 2, 3))
        else:
            self._padded = torch.as_tensor(padded, device=self.device)
            self._windows = self._padded.unfold(1, c, 1).unfold(2, c, 1).unfold(3, c, 1)
        self._simulation = np.asarray(simulation_index, dtype=np.int64)
        self._centres = np.asarray(centres, dtype=np.int64).reshape(-1, 3)
        if not self._use_numpy:
            self._simulation = torch.as_tensor(self._simulation, device=self.device)
            self._centres = torch.as_tensor(self._centres, device=self.device)
        self._shell_average = shell_average

    def __len__(self):
        return int(self._simulation.shape[0])

    def __call__(self, indices):
        if self._use_numpy:
            rows = np.asarray(torch.as_tensor(indices), dtype=np.int64).ravel()
            centres = self._centres[rows]
            cubes = torch.from_numpy(
                self._windows[self._simulation[rows], centres[:, 0], centres[:, 1], centres[:, 2]])
        else:
            rows = torch.as_tensor(indices, dtype=torch.int64, device=self.device).ravel()
            centres = self._centres[rows]
            cubes = self._windows[self._simulation[rows], centres[:, 0], centres[:, 1], centres[:, 2]]
        if self._shell_average is not None:
            cubes = self._shell_average(cubes)
        return cubes.unsqueeze(1)


class StoredCubeSource(CubeSource):
    """Cubes of the z=0 sub-box chunk stores (variant z0).

    When the split's cubes fit in ``in_memory_limit_bytes`` they are loaded once onto the
    device, else each batch reads its cubes from the stores. The paper's 200,000 training
    cubes of 75^3 float32 (337 GB) take the second path, the demo's (60 MB) the first.

    Parameters
    ----------
    samples : pandas.DataFrame
        The split's samples table (columns ``simulation`` and ``voxel`` are used).
    subbox_paths : list of path-like
        The split's ``subboxes/<split>/chunk<c>.zarr`` stores.
    cube_voxels : int
        Expected cube side; a store with another side raises :class:`CubeError`.
    device : torch.device or str
    in_memory_limit_bytes : int
        Largest size of the split's cubes that is loaded whole.
    """

    def __init__(self, samples, subbox_paths, cube_voxels, device="cpu", in_memory_limit_bytes=4 * 2**30):
        self.device = torch.device(device)
        self.cube_voxels = int(cube_voxels)
        self._arrays = []
        chunk_of = {}
        for chunk, path in enumerate(subbox_paths):
            density = _open_subbox_chunk(path, self.cube_voxels)
            group = zarr.open_group(str(path), mode="r")
            names = group.attrs.get("simulation_names", [])
            simulations = [names[index] for index in group["simulation"][:].tolist()]
            for row, key in enumerate(zip(simulations, group["voxel"][:].tolist())):
                chunk_of[key] = (chunk, row)
            self._arrays.append(density)

        keys = list(zip(samples["simulation"].astype(str), samples["voxel"].astype(int)))
        missing = [key for key in keys if key not in chunk_of]
        if missing:
            raise CubeError(
                f"{len(missing)} sample(s) have no z=0 sub-box in {[str(p) for p in subbox_paths]}, "
                f"for example simulation '{missing[0][0]}' voxel {missing[0][1]}; the sub-boxes are "
                f"older than the samples table, re-run the cut_final_subboxes rule")
        located = np.array([chunk_of[key] for key in keys], dtype=np.int64).reshape(-1, 2)
        self._chunk, self._row = located[:, 0], located[:, 1]

        self._cubes = None
        if len(keys) * self.cube_voxels**3 * 4 <= in_memory_limit_bytes:
            self._cubes = torch.from_numpy(self._read(np.arange(len(keys)))).to(self.device)

    def __len__(self):
        return len(self._chunk)

    def __call__(self, indices):
        if self._cubes is not None:
            rows = torch.as_tensor(indices, dtype=torch.int64).to(self.device).ravel()
            return self._cubes[rows].unsqueeze(1)
        rows = np.asarray(torch.as_tensor(indices).cpu(), dtype=np.int64).ravel()
        return torch.from_numpy(self._read(rows)).to(self.device).unsqueeze(1)

    def _read(self, rows):
        c = self.cube_voxels
        cubes = np.empty((len(rows), c, c, c), dtype=np.float32)
        for chunk in np.unique(self._chunk[rows]):
            members = np.flatnonzero(self._chunk[rows] == chunk)
            store_rows = self._row[rows[members]]
            # Orthogonal selection needs increasing indices, so read sorted and scatter back.
            order = np.argsort(store_rows)
            cubes[members[order]] = self._arrays[chunk].get_orthogonal_selection(store_rows[order])
        return cubes


def _open_subbox_chunk(path, cube_voxels):
    try:
        group = zarr.open_group(str(path), mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        raise CubeError(f"sub-box store {path} not found; run the cut_final_subboxes rule first") from None
    for name in ("density", "simulation", "voxel"):
        if name not in group:
            raise CubeError(f"sub-box store {path} has no array '{name}'; re-run the cut_final_subboxes rule")
    density = group["density"]
    if tuple(density.shape[1:]) != (cube_voxels,) * 3:
        raise CubeError(
            f"sub-box store {path} contains cubes of shape {tuple(density.shape[1:])}, but "
            f"inputs.cube_voxels is {cube_voxels}; re-run the cut_final_subboxes rule")
    return density


def open_cube_source(variant, samples, store_paths, subbox_paths, input_settings, device):
    """Build the :class:`CubeSource` of one split of one variant.

    Parameters
    ----------
    variant : {"raw", "averaged", "potential", "z0"}
    samples : pandas.DataFrame
        The split's samples table (``samples/<split>.csv``).
    store_paths : dict
        ``{simulation name: store path}``; must cover every simulation in ``samples``.
    subbox_paths : list of path-like or None
        The split's z=0 sub-box chunk stores (variant z0 only).
    input_settings : dict
        The ``inputs`` section of the configuration.
    device : torch.device or str

    Raises
    ------
    CubeError
        On an unknown variant, an even or too large cube, a store whose grid disagrees with its
        ``particles_per_side`` or with the other stores, or a missing store.
    """
    cube_voxels = int(input_settings["cube_voxels"])
    check_cube_voxels(cube_voxels)
    if variant == "z0":
        if not subbox_paths:
            raise CubeError("variant z0 needs the z=0 sub-box stores, but none were given")
        return StoredCubeSource(samples, subbox_paths, cube_voxels, device)
    if variant not in GRID_VARIANTS:
        raise CubeError(f"unknown variant '{variant}' (config key variants); expected one of {list(VARIANTS)}")

    names = list(dict.fromkeys(samples["simulation"].astype(str)))
    missing = [name for name in names if name not in store_paths]
    if missing:
        raise CubeError(f"no store given for simulation(s) {missing} of the samples table")

    grids = []
    grid_side = None
    for name in names:
        path = store_paths[name]
        _, array = open_store_grid(path, GRID_VARIANTS[variant])
        n = array.shape[0]
        if grid_side is None:
            grid_side, first = n, path
        elif n != grid_side:
            raise CubeError(
                f"store {path} has {n} particles per side but store {first} has {grid_side}; "
                f"one model needs one voxel size, so train on simulations of one resolution")
        check_cube_voxels(cube_voxels, n, where=f"the grid of store {path}")
        grids.append(np.asarray(array[...], dtype=np.float32))

    position = {name: index for index, name in enumerate(names)}
    simulation_index = samples["simulation"].astype(str).map(position).to_numpy()
    centres = samples[["i", "j", "k"]].to_numpy(dtype=np.int64)
    shell_average = None
    if variant == "averaged":
        shell_average = ShellAverage(cube_voxels, int(input_settings.get("shells", 20)),
                                     float(input_settings.get("shell_radius_min_voxels", 2.0)), device)
    logger.info("%s cubes of %d^3 voxels for %d samples from %d store(s) on %s",
                variant, cube_voxels, len(samples), len(grids), device)
    return GridCubeSource(grids, simulation_index, centres, cube_voxels, device, shell_average)
