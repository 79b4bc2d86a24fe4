"""Benchmark: training throughput of the halo-mass CNN, full step against its ceiling.

For each cube side (17, 33 and 75 voxels, with the published widths 32, 32, 64, 128, 128, 128
and dense 256, 128) it measures, in training
samples per second:

- ceiling: forward, backward and AMSGrad step on a random batch already in memory;
- full: :func:`halo_ml.training.training_step` on cubes cut by :mod:`halo_ml.cubes` from a
  synthetic store, with labels, standardisation, the Cauchy loss and the priors, as in training.

The two are timed in turn, step by step, and the median step time of each is reported, so that
other load on the machine slows both alike. On the CPU it uses ``torch.set_num_threads(--threads)``. When CUDA is present it also measures
the conv stack alone under bf16 autocast and reports its achieved FLOP rate as a fraction of the
device's bf16 peak. The peak is looked up from the device name, and ``--peak-tflops`` sets it for
other devices.

Usage::

    python benchmarks/bench_training.py --threads 2
    python benchmarks/bench_training.py --device cuda --sizes 75 --batch-size 64
"""

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from synthetic_store import make_store  # noqa: E402

from halo_ml.cubes import open_cube_source  # noqa: E402
from halo_ml.loss import CauchySelectionLoss  # noqa: E402
from halo_ml.model import HaloCNN  # noqa: E402
from halo_ml.training import training_step  # noqa: E402

# Dense bf16 tensor-core peaks without sparsity, in TFLOP/s, by a substring of the device name;
# the first match wins, so "H100 PCIe" precedes "H100" (the SXM part reports "H100 80GB HBM3")
# and "A100" precedes "A10".
# NOTE: quoted from NVIDIA's data sheets from memory and not re-checked; --peak-tflops overrides.
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0,
                    "A10": 125.0}


def conv_stack_flops(cube, channels=(32, 32, 64, 128, 128, 128)):
    """Return the multiply-add FLOPs of one forward pass of the six convolutions on one cube."""
    widths = [1, *channels]
    size, total = cube, 0
    for index in range(6):
        total += 2 * 27 * widths[index] * widths[index + 1] * size ** 3
        if index > 0:
            size = (size + 1) // 2
    return total


def synchronise(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(step, device):
    synchronise(device)
    start = time.perf_counter()
    step()
    synchronise(device)
    return time.perf_counter() - start


def time_alternating(first, second, steps, warmup, device):
    """Return the median seconds of each of two steps, run in turn so that load affects both alike."""
    times = ([], [])
    for index in range(warmup + steps):
        for step, record in zip((first, second), times):
            seconds = time_once(step, device)
            if index >= warmup:
                record.append(seconds)
    return float(np.median(times[0])), float(np.median(times[1]))


def time_steps(step, steps, warmup, device):
    for _ in range(warmup):
        step()
    synchronise(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronise(device)
    return (time.perf_counter() - start) / steps


def make_samples(grid, count, seed):
    generator = np.random.default_rng(seed)
    voxel = generator.choice(grid ** 3, count, replace=False)
    i, j, k = np.unravel_index(voxel, (grid, grid, grid))
    return pd.DataFrame({"simulation": "bench", "voxel": voxel, "i": i, "j": j, "k": k,
                         "log_mass": generator.uniform(11.0, 13.4, count), "r_over_r200m": 0.5,
                         "final_x": 0.0, "final_y": 0.0, "final_z": 0.0})


def bench_size(cube, batch_size, steps, warmup, device, store_folder, bf16):
    torch.manual_seed(0)
    model = HaloCNN(cube_size=cube).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-5, amsgrad=True)
    cubes = torch.randn(batch_size, 1, cube, cube, cube, device=device)

    def bare_step():
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            output = model(cubes)
        optimizer.zero_grad(set_to_none=True)
        output.float().mean().backward()
        optimizer.step()

    grid = max(64, cube + 1)
    store = make_store(store_folder / f"grid{grid}.zarr", n=grid, seed=cube)
    samples = make_samples(grid, batch_size * (steps + warmup), seed=cube)
    source = open_cube_source("raw", samples, {"bench": store}, None, {"cube_voxels": cube}, device)
    labels = torch.from_numpy(((samples["log_mass"].to_numpy() - 11.0) / 1.2 - 1.0).astype(np.float32)).to(device)
    loss_fn = CauchySelectionLoss().to(device)
    training_model = HaloCNN(cube_size=cube).to(device)
    training_optimizer = torch.optim.Adam([*training_model.parameters(), *loss_fn.parameters()], lr=5e-5,
                                          amsgrad=True)
    batches = iter(torch.randperm(len(samples)).split(batch_size))

    def full_step():
        indices = next(batches)
        loss = training_step(training_model, loss_fn, training_optimizer, source(indices), labels[indices.to(device)],
                             (0.0, 1.0), 10 ** -2.5, bf16)
        if not torch.isfinite(loss):
            raise FloatingPointError("non-finite loss in the benchmark")

    ceiling_s, full_s = time_alternating(bare_step, full_step, steps, warmup, device)
    return {"cube": cube, "batch": batch_size, "steps": steps,
            "ceiling_samples_per_s": batch_size / ceiling_s, "full_samples_per_s": batch_size / full_s,
            "full_over_ceiling": ceiling_s / full_s}


def bench_conv_stack_gpu(cube, batch_size, steps, device, peak_tflops):
    """Return the bf16 FLOP rate of the conv stack (forward + backward) and its peak fraction."""
    model = HaloCNN(cube_size=cube).to(device)
    convs = torch.nn.Sequential(*[torch.nn.Sequential(conv, model.activation, model.pool if index else torch.nn.Identity())
                                  for index, conv in enumerate(model.conv_layers)])
    cubes = torch.randn(batch_size, 1, cube, cube, cube, device=device)

    def step():
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            output = convs(cubes)
        output.float().sum().backward()

    seconds = time_steps(step, steps, 3, device)
    # The backward pass costs about twice the forward (gradients of inputs and of weights).
    flops = 3 * conv_stack_flops(cube) * batch_size
    achieved = flops / seconds / 1e12
    return achieved, (achieved / peak_tflops if peak_tflops else None)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[17, 33, 75], help="cube sides in voxels")
    parser.add_argument("--batch-size", type=int, nargs="+", default=None,
                        help="batch size per cube side (default 64 each)")
    parser.add_argument("--steps", type=int, nargs="+", default=None, help="timed steps per cube side (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before timing")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast in the training steps (CUDA)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="bf16 peak of the device, TFLOP/s")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batch_sizes = args.batch_size or [64] * len(args.sizes)
    steps = args.steps or [5] * len(args.sizes)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, torch {torch.__version__}, device {device} "
          f"({name}), {args.threads} CPU threads, bf16 {args.bf16}")
    print("| cube | batch | timed steps | ceiling (samples/s) | full step (samples/s) | full / ceiling |")
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as folder:
        for cube, batch_size, n_steps in zip(args.sizes, batch_sizes, steps):
            result = bench_size(cube, batch_size, n_steps, args.warmup, device, Path(folder), args.bf16)
            print(f"| {cube}^3 | {batch_size} | {n_steps} | {result['ceiling_samples_per_s']:.2f} | "
                  f"{result['full_samples_per_s']:.2f} | {result['full_over_ceiling']:.0%} |", flush=True)

    if device.type == "cuda":
        peak = args.peak_tflops or next((value for key, value in BF16_PEAK_TFLOPS.items() if key in name), None)
        for cube, batch_size in zip(args.sizes, batch_sizes):
            achieved, fraction = bench_conv_stack_gpu(cube, batch_size, 10, device, peak)
            share = f"{fraction:.0%} of {peak:.0f}" if fraction is not None else "peak unknown (pass --peak-tflops)"
            print(f"conv stack {cube}^3, batch {batch_size}, bf16: {achieved:.1f} TFLOP/s, {share} TFLOP/s")


if __name__ == "__main__":
    main()
