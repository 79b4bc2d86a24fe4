"""Benchmark one demo simulation (rule simulate): wall time and peak memory per grid size.

Each size runs in a fresh Python process, so the peak resident memory of that process is the
simulation's alone. The box grows with the grid (20 Mpc/h per 64 particles per side), which
keeps the particle mass and the number of halos per particle of the default demo suite.

Usage::

    python benchmarks/bench_simulate.py --particles 64 128 --threads 2

Prints one Markdown table row per size: particles, force mesh, steps, wall time of each stage
and in total, peak memory, groups found.
"""

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time

COSMOLOGY = {"omega_m": 0.279, "omega_lambda": 0.721, "omega_b": 0.045,
             "sigma_8": 0.817, "h": 0.701, "n_s": 0.96}


def run_one(particles, threads, steps):
    """Run one simulation in this process and print its timings as JSON."""
    import logging

    from halo_ml import demo_suite

    logging.getLogger("halo_ml").setLevel(logging.WARNING)
    settings = {"particles_per_side": particles, "box_size_mpc_h": 20.0 * particles / 64,
                "initial_redshift": 99.0, "pm_steps": steps, "force_mesh_factor": 2,
                "fof_linking_length": 0.2, "fof_min_particles": 32, "subhalo_min_particles": 20}
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        result = demo_suite.simulate("bench", 1, settings, COSMOLOGY, folder, threads=threads)
        elapsed = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"particles": particles, "seconds": elapsed, "peak_mb": peak_mb,
                      "groups": result["n_groups"], "steps": steps, "threads": threads}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, nargs="+", default=[64, 128],
                        help="particles per side, one simulation each")
    parser.add_argument("--threads", type=int, default=2, help="FFT worker threads")
    parser.add_argument("--steps", type=int, default=10, help="particle-mesh steps")
    parser.add_argument("--single", type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args()

    if arguments.single:
        run_one(arguments.single, arguments.threads, arguments.steps)
        return

    print(f"# {platform.node()}, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, {arguments.threads} threads, "
          f"load average before start {open('/proc/loadavg').read().split()[0]}")
    print("| particles | box (Mpc/h) | force mesh | PM steps | wall time (s) | peak memory (MB) | FoF groups |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for particles in arguments.particles:
        output = subprocess.run(
            [sys.executable, __file__, "--single", str(particles), "--threads", str(arguments.threads),
             "--steps", str(arguments.steps)],
            check=True, capture_output=True, text=True).stdout
        record = json.loads(output.strip().splitlines()[-1])
        print(f"| {particles}^3 | {20.0 * particles / 64:g} | {2 * particles}^3 | {record['steps']} | "
              f"{record['seconds']:.1f} | {record['peak_mb']:.0f} | {record['groups']} |")


if __name__ == "__main__":
    main()
