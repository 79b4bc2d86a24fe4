"""Benchmark the GMM-MI estimate: wall time and peak memory for 1e4 and 1e5 particles.

Each size runs in its own Python process, so the peak resident memory (``ru_maxrss``) is that
of one estimate. The data mimic a test set: true log masses drawn from a falling mass function
on [11, 13.4] and rounded to whole halo masses (particle mass 1e9 Msun), predictions scattered
around them by 0.8 dex.

Usage: ``python benchmarks/bench_mutual_information.py [--sizes 10000 100000] [--n-bootstrap 50]``
"""

import argparse
import json
import resource
import subprocess
import sys
import time


def measure(n_points, n_bootstrap):
    import numpy as np

    from halo_ml.mutual_information import mi_of_predictions

    rng = np.random.default_rng(0)
    particle_mass_msun = 1e9
    # Particles sample halos in proportion to mass, so dN/dlogM falls about as M^-0.9.
    log_mass = 11.0 - np.log10(1.0 - rng.uniform(0.0, 1.0 - 10 ** (-0.9 * 2.4), n_points)) / 0.9
    log_mass = np.log10(np.round(10 ** log_mass / particle_mass_msun) * particle_mass_msun)
    prediction = log_mass + rng.normal(0.0, 0.8, n_points)

    start = time.perf_counter()
    cpu_start = time.process_time()
    result = mi_of_predictions(log_mass, prediction, n_bootstrap=n_bootstrap, seed=0)
    wall_s = time.perf_counter() - start
    # CPU time as well, because on a shared machine the wall time includes waiting for a core.
    cpu_s = time.process_time() - cpu_start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"n": n_points, "n_bootstrap": n_bootstrap, "wall_s": round(wall_s, 1), "cpu_s": round(cpu_s, 1),
            "peak_rss_mib": round(peak_mib), "mi": result["mi"], "mi_err": result["mi_err"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000],
                        help="numbers of particles, one process each")
    parser.add_argument("--n-bootstrap", type=int, default=50, help="bootstrap refits per estimate")
    parser.add_argument("--single", type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args()

    if arguments.single:
        print(json.dumps(measure(arguments.single, arguments.n_bootstrap)))
        return
    for size in arguments.sizes:
        output = subprocess.run(
            [sys.executable, __file__, "--single", str(size), "--n-bootstrap", str(arguments.n_bootstrap)],
            check=True, capture_output=True, text=True).stdout
        print(output.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
