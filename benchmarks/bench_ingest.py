"""Benchmark ingest: wall time and peak memory for the 64^3 GADGET-4 sample and synthetic 128^3, 256^3.

Each case runs ``halo_ml.ingest.ingest_simulation`` in a fresh subprocess, so the peak resident
memory of that process (``ru_maxrss`` of the child) is the ingest's own. Synthetic simulations
are GADGET-4 HDF5 files written by ``tests/synthetic_gadget.py`` (lattice plus a random
displacement of up to 0.2 spacings, shuffled particle order, 1000 groups at z=0).

Usage::

    python benchmarks/bench_ingest.py [--sizes 128 256] [--threads 2] [--workdir /tmp/bench_ingest]

Prints one Markdown table row per case, for docs/benchmarks.md.
"""

import argparse
import json
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "data" / "gadget4" / "L20_N64_s1"

_CHILD = """
import json, resource, sys, time
from halo_ml.ingest import ingest_simulation
from halo_ml.logs import configure_logging
configure_logging()
initial, final, store, threads = sys.argv[1:5]
start = time.perf_counter()
ingest_simulation(initial, final, None, store, {"sph_neighbours": 32, "threads": int(threads), "chunk_voxels": 64})
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall_s": time.perf_counter() - start, "cpu_s": usage.ru_utime + usage.ru_stime}))
"""
_STEP_LINE = re.compile(r"halo_ml\.ingest: (.+) done in ([0-9.]+) s")


def run_case(label, initial, final, store, threads):
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", _CHILD, str(initial), str(final), str(store), str(threads)],
                            capture_output=True, text=True, cwd=ROOT, check=False)
    total_s = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"benchmark case {label} failed; the end of its stderr:\n{result.stderr[-3000:]}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # RUSAGE_CHILDREN reports the largest child so far; cases run smallest first, so this is this child's.
    peak_gb = max(peak_kib, before) * 1024 / 1e9
    timing = json.loads(result.stdout.strip().splitlines()[-1])
    steps = {name: float(seconds) for name, seconds in _STEP_LINE.findall(result.stderr)}
    return {"case": label, "ingest_s": timing["wall_s"], "cpu_s": timing["cpu_s"], "process_s": total_s,
            "peak_gb": peak_gb, "steps": steps}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[128, 256], help="particles per side of each synthetic simulation")
    parser.add_argument("--threads", type=int, default=2, help="threads of the ingest job")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_ingest"), help="scratch folder (deleted)")
    arguments = parser.parse_args()

    sys.path.insert(0, str(ROOT / "tests"))
    from synthetic_gadget import write_simulation

    arguments.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    if SAMPLE.exists():
        rows.append(run_case("GADGET-4 sample 64^3", SAMPLE / "snapshot_000.hdf5", SAMPLE / "snapshot_001.hdf5",
                             arguments.workdir / "sample.zarr", arguments.threads))
    for n in arguments.sizes:
        folder = arguments.workdir / f"synthetic_{n}"
        write_start = time.perf_counter()
        paths = write_simulation(folder, n=n, box_size=50.0, n_groups=1000, seed=n)["paths"]
        print(f"wrote synthetic {n}^3 in {time.perf_counter() - write_start:.0f} s", file=sys.stderr)
        rows.append(run_case(f"synthetic {n}^3", paths["initial_snapshot"], paths["final_snapshot"],
                             arguments.workdir / f"synthetic_{n}.zarr", arguments.threads))
        shutil.rmtree(folder)

    print("| case | ingest wall time (s) | CPU time (s) | process wall time incl. imports (s) | peak memory (GB) |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['case']} | {row['ingest_s']:.1f} | {row['cpu_s']:.1f} | {row['process_s']:.1f} "
              f"| {row['peak_gb']:.2f} |")
    print()
    for row in rows:
        steps = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in row["steps"].items())
        print(f"- {row['case']}: {steps}")
    shutil.rmtree(arguments.workdir)


if __name__ == "__main__":
    main()
