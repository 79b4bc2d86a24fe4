"""Memory and run-time requests of each workflow rule, scaled with the configuration.

A cluster job needs its memory (``mem_mb``, MB) and time limit (``runtime``, minutes) before it
starts, and both grow with the number of particles per simulation, the number of selected
particles, the cube size and the network's widths. :func:`rule_resources` turns a validated
configuration into those two numbers for every rule that does real work; the rule files attach
them with ``resources: **job_resources("<rule>")`` (see ``rules/resources.smk``).

Every number here is an estimate: a per-particle or per-voxel cost, times the configuration's
counts, times a safety factor of about three, plus a fixed overhead for the Python interpreter
and its libraries. Memory and time both double on each retry (``attempt``), so a job killed for
memory or time gets more on the next attempt, except training, whose time limit stays the same
because a retried training job resumes from its checkpoint.

The particles per simulation come from ``demo.particles_per_side`` for the demo suite; for GADGET
input from the header of the first training simulation's z=99 snapshot, or from its store when
the snapshot is gone.
"""

# h5py and zarr are imported where GADGET input needs them: every workflow parse imports this
# module, inside every cluster job too, and the demo suite needs neither.
import functools
import math
import struct
from pathlib import Path

from halo_ml.config import run_directory, simulation_files

# Fixed cost of a job: Python, numpy, torch or pynbody imported, in MB.
BASE_MEMORY_MB = 2000
# The shortest time limit requested, in minutes: queueing and start-up dominate below it.
MIN_RUNTIME_MINUTES = 10
# Maximum time limit requested for one training job, in minutes. Many clusters cap jobs at 24 h,
# and a longer training is resumed from its checkpoint by a retry (see docs/hpc.md).
MAX_TRAIN_RUNTIME_MINUTES = 24 * 60
SAFETY_FACTOR = 3.0

# NOTE: the throughputs below are estimates, not measurements of this workflow on a cluster:
# sustained fp32 3D-convolution speed of one data-centre GPU, and CPU rates of the other steps.
GPU_FLOP_PER_SECOND = 10e12
# Measured: benchmarks/bench_ingest.py ingests 256^3 particles in 144 s on 2 cores.
INGEST_PARTICLES_PER_SECOND = 1.2e5
PM_MESH_CELLS_PER_SECOND = 2e6
Z0_VOXELS_PER_SECOND = 1e6
GMM_POINT_FITS_PER_SECOND = 5e3
# Counted as 5 N log2(N) floating-point operations per complex FFT of N cells.
FFT_FLOP_PER_SECOND = 1e9
STORE_VOXELS_READ_PER_SECOND = 5e7

MB = 1e6


class ResourceEstimateError(ValueError):
    """The configuration or an input file does not allow a resource estimate."""


def rule_resources(config):
    """Return ``{rule: {"mem_mb": callable, "runtime": callable}}`` for the configuration.

    Each callable takes Snakemake's ``(wildcards, attempt)`` and returns an integer: MB for
    ``mem_mb``, minutes for ``runtime``. Rules not listed use the profile's default resources.
    """
    particles = particles_per_simulation(config)
    base = {
        "simulate": _simulate(config, particles),
        "ingest": _ingest(particles),
        "select": _select(config, particles),
        "train": _train(config, particles),
        "predict": _predict(config, particles),
        "mutual_information": _mutual_information(config),
        "analytic_baselines": _analytic_baselines(config, particles),
    }
    resources = {rule: _with_retries(memory, runtime, rule)
                 for rule, (memory, runtime) in base.items()}
    resources["cut_final_subboxes"] = _cut_final_subboxes(config, particles)
    return resources


def _with_retries(memory_mb, runtime_minutes, rule):
    memory_mb = int(math.ceil(memory_mb))
    runtime_minutes = int(math.ceil(max(runtime_minutes, MIN_RUNTIME_MINUTES)))

    def memory(wildcards, attempt):
        return memory_mb * attempt

    def runtime(wildcards, attempt):
        if rule == "train":
            return runtime_minutes
        return runtime_minutes * attempt

    return {"mem_mb": memory, "runtime": runtime}


def particles_per_simulation(config):
    """Return the number of particles of one simulation (all simulations are assumed alike)."""
    if config["simulations"]["source"] == "demo":
        return int(config["demo"]["particles_per_side"]) ** 3
    first = config["simulations"]["train"][0]
    snapshot = simulation_files(config, first)["initial_snapshot"]
    if _snapshot_pieces(Path(snapshot)):
        return snapshot_particle_count(snapshot)
    # The user's snapshots may be gone once the stores exist; a rerun of later steps still works.
    store = run_directory(config) / "stores" / f"{first}.zarr"
    if store.is_dir():
        import zarr

        return int(zarr.open_group(str(store), mode="r").attrs["particles_per_side"]) ** 3
    missing = missing_gadget_files(config)
    if missing:
        listed = 6
        listing = "\n".join(f"  {key} for '{name}': {path}" for name, key, path in missing[:listed])
        if len(missing) > listed:
            listing += f"\n  ... and {len(missing) - listed} more"
        raise ResourceEstimateError(
            f"{len(missing)} GADGET file(s) named in the configuration do not exist:\n{listing}\n"
            f"Set files.initial_snapshot, files.final_snapshot and files.halo_catalogue to the paths "
            f"of your simulations ('{{simulation}}' is replaced by each simulation's name).")
    return snapshot_particle_count(snapshot)


def missing_gadget_files(config):
    """Return ``(simulation, config key, path)`` for every GADGET input file that does not exist.

    A snapshot counts as present when it exists as named, with a ``.hdf5`` suffix, or as the
    first piece (``.0``, ``.0.hdf5``) of a multi-file snapshot.
    """
    missing = []
    for name in config["simulations"]["train"] + config["simulations"]["validation"] + config["simulations"]["test"]:
        for key, path in simulation_files(config, name).items():
            if path is not None and not _snapshot_pieces(Path(path)):
                missing.append((name, f"files.{key}", path))
    return missing


def _snapshot_pieces(path):
    stem = path.name[:-len(".hdf5")] if path.name.endswith(".hdf5") else path.name
    candidates = [path, path.with_name(stem + ".hdf5"), path.with_name(stem + ".0.hdf5"),
                  path.with_name(stem + ".0")]
    return [candidate for candidate in candidates if candidate.is_file()]


@functools.lru_cache(maxsize=None)
def snapshot_particle_count(path):
    """Read the total particle count from the header of a GADGET snapshot.

    Reads HDF5 (``Header/NumPart_Total``) and binary format 1 and 2 headers (``npartTotal``),
    also of multi-file snapshots through their first piece (``.0`` or ``.0.hdf5``).

    Raises
    ------
    ResourceEstimateError
        When no file of the snapshot exists or its header cannot be read.
    """
    existing = _snapshot_pieces(Path(path))
    if not existing:
        raise ResourceEstimateError(
            f"snapshot {path} not found, so the particle count that sizes the cluster jobs is "
            f"unknown; set files.initial_snapshot in the configuration to your z=99 snapshots")
    first = existing[0]
    import h5py

    try:
        if h5py.is_hdf5(first):
            with h5py.File(first, "r") as stream:
                header = stream["Header"].attrs
                low = [int(value) for value in header["NumPart_Total"]]
                high = [int(value) for value in header.get("NumPart_Total_HighWord", [0] * len(low))]
            return sum(lo + (hi << 32) for lo, hi in zip(low, high))
        return _binary_particle_count(first)
    except (OSError, KeyError, struct.error) as error:
        raise ResourceEstimateError(f"cannot read the particle count from the header of {first}: {error}") from None


def _binary_particle_count(path):
    with open(path, "rb") as stream:
        head = stream.read(4 + 8 + 4 + 4 + 256)
    for order in ("<", ">"):
        (size,) = struct.unpack(order + "i", head[:4])
        if size == 8 and head[4:8] == b"HEAD":
            # Format 2: a 16-byte block label record precedes the header record.
            header = head[20:20 + 256]
            break
        if size == 256:
            header = head[4:4 + 256]
            break
    else:
        raise ResourceEstimateError(f"{path} starts with neither a GADGET format 1 nor a format 2 header")
    # GADGET-2 header layout: npartTotal[6] (uint32) at byte 96, npartTotalHighWord[6] at 168.
    totals = struct.unpack(order + "6I", header[96:120])
    high = struct.unpack(order + "6I", header[168:192])
    return sum(lo + (hi << 32) for lo, hi in zip(totals, high))


def forward_flop(cube_voxels, conv_channels, dense_units):
    """Return the floating-point operations of one forward pass of the CNN on one cube.

    Counts the multiply-adds (2 FLOP each) of the six 3x3x3 convolutions (size-preserving,
    a ceil-mode 2x2x2 max-pooling after convolutions 2 to 6) and of the dense layers. For a
    75^3 cube and widths (32, 32, 64, 128, 128, 128), (256, 128) this is about 3.4e10.
    """
    side = cube_voxels
    channels_in = 1
    total = 0
    for layer, channels_out in enumerate(conv_channels):
        total += 2 * 27 * channels_in * channels_out * side ** 3
        channels_in = channels_out
        if layer >= 1:
            side = math.ceil(side / 2)
    units_in = channels_in * side ** 3
    for units_out in list(dense_units) + [1]:
        total += 2 * units_in * units_out
        units_in = units_out
    return total


def _model_flop(config):
    model = config["model"]
    return forward_flop(config["inputs"]["cube_voxels"], model["conv_channels"], model["dense_units"])


def _simulate(config, particles):
    demo = config.get("demo") or {}
    mesh_cells = particles * demo.get("force_mesh_factor", 2) ** 3
    # Particle positions, velocities and 2LPT fields in float64; the force mesh, its complex
    # transform and one force component at a time.
    memory = BASE_MEMORY_MB + (150 * particles + 40 * mesh_cells) / MB * SAFETY_FACTOR
    # About five mesh-sized FFTs and interpolations per step.
    seconds = demo.get("pm_steps", 10) * 5 * mesh_cells / PM_MESH_CELLS_PER_SECOND
    return memory, MIN_RUNTIME_MINUTES + SAFETY_FACTOR * seconds / 60


def _ingest(particles):
    # benchmarks/bench_ingest.py measured a peak of 3.7 GB for 256^3 particles, about 220 bytes
    # per particle (two snapshots, the SPH tree, the gridded fields). A measured peak needs a
    # smaller margin than the estimates.
    memory = BASE_MEMORY_MB + 1.5 * 220 * particles / MB
    seconds = particles / INGEST_PARTICLES_PER_SECOND
    return memory, MIN_RUNTIME_MINUTES + SAFETY_FACTOR * seconds / 60


def _select(config, particles):
    simulations = sum(len(config["simulations"][role]) for role in ("train", "validation", "test"))
    # One store's labels at a time, plus a boolean eligibility mask per simulation.
    memory = BASE_MEMORY_MB + (40 + simulations) * particles / MB * SAFETY_FACTOR
    # Three arrays of every store: halo mass, r/r200m and z=0 positions.
    seconds = simulations * particles * 3 / STORE_VOXELS_READ_PER_SECOND
    return memory, MIN_RUNTIME_MINUTES + SAFETY_FACTOR * seconds / 60


def _grid_memory_mb(simulations, particles, variant):
    # float32 grids of every simulation the job reads, once on the host and once as a torch copy.
    if variant == "z0":
        return 0.0
    return simulations * particles * 4 * 2 / MB


def _train(config, particles):
    selection = config["selection"]
    cube = config["inputs"]["cube_voxels"]
    batch = config["training"]["batch_size"]
    simulations = len(config["simulations"]["train"]) + len(config["simulations"]["validation"])
    # The largest variant decides, so that every training job of the run requests the same.
    grids = max(_grid_memory_mb(simulations, particles, variant) for variant in config["variants"])
    batches = 4 * batch * cube ** 3 * 4 / MB
    memory = BASE_MEMORY_MB + SAFETY_FACTOR * (grids + batches)

    epoch_flop = (3 * selection["n_train"] + selection["n_validation"]) * _model_flop(config)
    seconds = config["training"]["max_epochs"] * epoch_flop / GPU_FLOP_PER_SECOND
    runtime = min(MIN_RUNTIME_MINUTES + SAFETY_FACTOR * seconds / 60, MAX_TRAIN_RUNTIME_MINUTES)
    return memory, runtime


def _predict(config, particles):
    selection = config["selection"]
    cube = config["inputs"]["cube_voxels"]
    simulations = len(config["simulations"]["test"])
    grids = max(_grid_memory_mb(simulations, particles, variant) for variant in config["variants"])
    memory = BASE_MEMORY_MB + SAFETY_FACTOR * (grids + 4 * 256 * cube ** 3 * 4 / MB)
    seconds = selection["n_test"] * _model_flop(config) / GPU_FLOP_PER_SECOND
    return memory, MIN_RUNTIME_MINUTES + SAFETY_FACTOR * seconds / 60


def _mutual_information(config):
    n_test = config["selection"]["n_test"]
    n_bootstrap = config["analysis"]["n_bootstrap"]
    memory = BASE_MEMORY_MB + SAFETY_FACTOR * 2000 * n_test / MB
    # GMM-MI selects the number of components, then refits every bootstrap resample. The
    # radial split adds three more estimates, on subsets that add up to the same size.
    seconds = 2 * (n_bootstrap + 10) * n_test / GMM_POINT_FITS_PER_SECOND
    return memory, MIN_RUNTIME_MINUTES + SAFETY_FACTOR * seconds / 60


def _analytic_baselines(config, particles):
    simulations = len(config["simulations"]["test"])
    scales = config["analysis"]["analytic_mass_scales"]
    # The density grid, its complex transform and one smoothed copy, in float64.
    memory = BASE_MEMORY_MB + SAFETY_FACTOR * 64 * particles / MB
    # A forward and an inverse transform per mass scale and simulation.
    fft_seconds = 5 * particles * math.log2(max(particles, 2)) / FFT_FLOP_PER_SECOND
    seconds = simulations * scales * 2 * fft_seconds
    return memory, MIN_RUNTIME_MINUTES + SAFETY_FACTOR * seconds / 60


def _cut_final_subboxes(config, particles):
    cube = config["inputs"]["cube_voxels"]
    chunks = config["inputs"]["z0_chunks"]
    selection = config["selection"]
    counts = {"train": selection["n_train"], "validation": selection["n_validation"], "test": selection["n_test"]}
    simulations = {role: len(config["simulations"][role]) for role in counts}

    def estimate(split):
        per_chunk = math.ceil(counts[split] / chunks)
        # One simulation's z=0 particles with their SPH tree at a time, plus the chunk's cubes.
        memory = BASE_MEMORY_MB + SAFETY_FACTOR * (100 * particles + 2 * per_chunk * cube ** 3 * 4) / MB
        seconds = (per_chunk * cube ** 3 / Z0_VOXELS_PER_SECOND
                   + simulations[split] * particles / INGEST_PARTICLES_PER_SECOND)
        return memory, MIN_RUNTIME_MINUTES + SAFETY_FACTOR * seconds / 60

    def memory(wildcards, attempt):
        return int(math.ceil(estimate(wildcards.split)[0])) * attempt

    def runtime(wildcards, attempt):
        return int(math.ceil(estimate(wildcards.split)[1])) * attempt

    return {"mem_mb": memory, "runtime": runtime}
