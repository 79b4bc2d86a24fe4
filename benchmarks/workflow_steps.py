"""Summarise the per-job benchmark files of a finished run as a Markdown table, one row per rule.

Every rule writes Snakemake's benchmark record (wall time and peak resident memory of its job) to
``results/<run>/benchmarks/<rule>/<job>.tsv``. This script adds them up per rule:

    python benchmarks/workflow_steps.py results/demo

The total is the sum over jobs, which exceeds the workflow's wall time when jobs ran in parallel.
"""

import argparse
from pathlib import Path

import pandas as pd


def summarise(run_directory):
    """Return a DataFrame with jobs, summed and maximum wall time (s) and peak memory (MB) per rule."""
    rows = []
    for path in sorted(Path(run_directory, "benchmarks").glob("*/*.tsv")):
        record = pd.read_csv(path, sep="\t")
        rows.append({"rule": path.parent.name, "seconds": float(record["s"].iloc[0]),
                     "max_rss_mb": float(record["max_rss"].iloc[0])})
    if not rows:
        raise SystemExit(f"no benchmark records under {run_directory}/benchmarks: run the workflow first")
    frame = pd.DataFrame(rows)
    summary = frame.groupby("rule", sort=False).agg(
        jobs=("seconds", "size"), total_s=("seconds", "sum"), longest_s=("seconds", "max"),
        peak_memory_mb=("max_rss_mb", "max"))
    return summary.sort_values("total_s", ascending=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_directory", help="a run's output folder, for example results/demo")
    arguments = parser.parse_args()
    summary = summarise(arguments.run_directory)
    print("| rule | jobs | total wall time (s) | longest job (s) | peak memory (MB) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for rule, row in summary.iterrows():
        print(f"| `{rule}` | {int(row.jobs)} | {row.total_s:.1f} | {row.longest_s:.1f} | {row.peak_memory_mb:.0f} |")


if __name__ == "__main__":
    main()
