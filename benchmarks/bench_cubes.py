"""Benchmark input cubes: grid cubes cut per second per core, and z=0 sub-boxes rendered per second.

Usage::

    python benchmarks/bench_cubes.py [--store results/demo/stores/demo_test.zarr]

Cutting uses one torch thread (``torch.set_num_threads(1)``) on the CPU, 75^3-voxel cubes in
batches of 64 from a random 128^3 grid. Rendering needs a store with z=0 positions and halo
labels; it renders sub-boxes around particles in the selection's mass range, one core.
"""

import argparse
import platform
import time

import numpy as np
import torch

from halo_ml.cubes import GridCubeSource, ShellAverage
from halo_ml.final_subboxes import FinalDensityField
from halo_ml.selection import eligible_voxels


def cut_rate(cube_voxels=75, grid_voxels=128, batch=64, batches=16, averaged=False, gather="auto"):
    rng = np.random.default_rng(0)
    grid = rng.standard_normal((grid_voxels,) * 3).astype(np.float32)
    centres = rng.integers(0, grid_voxels, (batch * batches, 3))
    shells = ShellAverage(cube_voxels, 20, 2.0) if averaged else None
    source = GridCubeSource([grid], np.zeros(len(centres), int), centres, cube_voxels,
                            shell_average=shells, gather=gather)
    source(np.arange(batch))  # first call allocates
    start = time.perf_counter()
    for number in range(batches):
        source(np.arange(number * batch, (number + 1) * batch))
    return batch * batches / (time.perf_counter() - start)


def render_rate(store, cube_voxels, cube_size, count=300):
    field = FinalDensityField(store)
    voxels = eligible_voxels(store, 11.0, 13.4)
    chosen = np.random.default_rng(0).choice(voxels, size=min(count, len(voxels)), replace=False)
    start = time.perf_counter()
    for voxel in chosen:
        field.render(field.positions[voxel], cube_voxels, cube_size)
    return len(chosen) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="store for the z=0 rendering benchmark (skipped without one)")
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread")
    for gather in ("numpy", "torch"):
        print(f"raw 75^3 ({gather} gather): {cut_rate(gather=gather):.0f} cubes/s")
    print(f"averaged 75^3 (numpy gather): {cut_rate(averaged=True):.0f} cubes/s")
    if arguments.store:
        for cube_voxels, cube_size in ((17, 2.25), (75, 2.25)):
            rate = render_rate(arguments.store, cube_voxels, cube_size)
            print(f"z0 {cube_voxels}^3 of {cube_size} Mpc/h: {rate:.0f} sub-boxes/s")


if __name__ == "__main__":
    main()
