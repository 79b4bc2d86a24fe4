"""Dry runs of config/paper.yaml (the full setup of Lucie-Smith et al. 2024) through the shipped
SLURM profile.

The user's GADGET files are stood in for by empty files of the right names, except the z=99
snapshots, which get a GADGET-4 HDF5 header with 256^3 particles: the cluster jobs are sized
from that header.
"""

import math
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "config" / "paper.yaml"
PLACEHOLDER = "/path/to/your/simulations"
PARTICLES = 256 ** 3


def dry_run(workdir, configfile):
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
               "--profile", str(ROOT / "profiles" / "slurm"), "--configfile", str(configfile), "-n"]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def write_header_only_snapshot(path, particles):
    with h5py.File(path, "w") as stream:
        header = stream.create_group("Header")
        header.attrs["NumPart_Total"] = np.array([0, particles, 0, 0, 0, 0], dtype=np.uint32)
        header.attrs["NumPart_ThisFile"] = np.array([0, particles, 0, 0, 0, 0], dtype=np.uint32)
        header.attrs["NumFilesPerSnapshot"] = 1


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    """Dry-run the paper configuration with stand-in files; return (config, {rule: [resources]})."""
    base = tmp_path_factory.mktemp("paper")
    config = yaml.safe_load(PAPER.read_text().replace(PLACEHOLDER, str(base / "simulations")))
    names = [name for role in ("train", "validation", "test") for name in config["simulations"][role]]
    for name in names:
        folder = base / "simulations" / name
        folder.mkdir(parents=True)
        write_header_only_snapshot(folder / "snapshot_000.hdf5", PARTICLES)
        (folder / "snapshot_001.hdf5").touch()
        (folder / "fof_subhalo_tab_001.hdf5").touch()
    configfile = base / "paper.yaml"
    configfile.write_text(yaml.safe_dump(config))
    workdir = base / "work"
    workdir.mkdir()

    result = dry_run(workdir, configfile)
    assert result.returncode == 0, f"dry run failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return config, jobs_by_rule(result.stdout + result.stderr)


def jobs_by_rule(text):
    """Return {rule: [resources dict per job]} from a dry run's job listing."""
    jobs = {}
    rule = None
    for line in text.splitlines():
        match = re.match(r"^(?:local)?rule (\w+):$", line)
        if match:
            rule = match.group(1)
            jobs.setdefault(rule, []).append({})
            continue
        match = re.match(r"^\s+resources: (.*)$", line)
        if match and rule is not None:
            for item in match.group(1).split(", "):
                key, _, value = item.partition("=")
                jobs[rule][-1][key] = value
            rule = None
    return jobs


def test_paper_plan_job_counts(plan):
    config, jobs = plan
    chunks = config["inputs"]["z0_chunks"]
    expected = {
        "ingest": 25,
        "select": 1,
        "cut_final_subboxes": 3 * chunks,
        "train": 4 * 5,
        "predict": 4 * 5,
        "mutual_information": 4 * 5,
        "analytic_baselines": 1,
    }
    for rule, count in expected.items():
        assert len(jobs.get(rule, [])) == count, f"rule {rule}"
    assert "simulate" not in jobs


def test_paper_plan_gpu_rules(plan):
    _, jobs = plan
    for rule in ("train", "predict"):
        assert all(job.get("gpu") == "1" for job in jobs[rule]), rule
    for rule in ("ingest", "select", "cut_final_subboxes", "mutual_information"):
        assert not any("gpu" in job for job in jobs[rule]), rule


def test_paper_plan_account_placeholders(plan):
    _, jobs = plan
    assert all(job.get("slurm_account") == "your-account" for job in jobs["ingest"])
    assert all(job.get("slurm_partition") == "your-partition" for job in jobs["ingest"])


def test_paper_plan_ingest_resources(plan):
    _, jobs = plan
    # 2000 MB fixed plus the measured 220 bytes per particle with a margin of 1.5.
    expected_mb = math.ceil(2000 + 1.5 * 220 * PARTICLES / 1e6)
    assert {job["mem_mb"] for job in jobs["ingest"]} == {str(expected_mb)}


def test_paper_plan_training_runtime_capped(plan):
    _, jobs = plan
    # 100 epochs of (3 x 200,000 + 10,000) passes of ~3.4e10 FLOP at 1e13 FLOP/s is about 58 h.
    # That is above the 24 h cap, so every training job requests 24 h and resumes on retry.
    assert {job["runtime"] for job in jobs["train"]} == {str(24 * 60)}


def test_paper_plan_subbox_memory_by_split(plan):
    config, jobs = plan
    memory = sorted({int(job["mem_mb"]) for job in jobs["cut_final_subboxes"]})
    # Three splits of different sizes, so three sizes; the training chunks hold
    # 1,000 cubes of 75^3 float32 (1.7 GB) each and ask for the most.
    assert len(memory) == 3
    cubes_mb = 2 * 1000 * 75 ** 3 * 4 / 1e6
    assert memory[-1] > cubes_mb


def test_paper_missing_files_named(tmp_path):
    result = dry_run(tmp_path, PAPER)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "files.initial_snapshot" in output
    assert f"{PLACEHOLDER}/L50_N256_00/snapshot_000.hdf5" in output
    assert "75 GADGET file(s)" in output


def test_profile_found_by_name(tmp_path):
    # `--profile slurm` run from the repository root resolves through the link ./slurm.
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path),
               "--profile", "slurm", "--configfile", str(ROOT / "tests" / "configs" / "tiny.yaml"), "-n"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert re.search(r"Using profiles? slurm and workflow specific profile", output)
    jobs = jobs_by_rule(output)
    assert all(job.get("slurm_account") == "your-account" for job in jobs["simulate"])
    assert all(job.get("gpu") == "1" for job in jobs["train"])
