"""Fixtures shared by several test modules."""

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "configs" / "tiny.yaml"


@dataclass
class WorkflowRun:
    """A finished run of the workflow: its working directory, results folder and configuration."""

    workdir: Path
    results: Path
    config: dict


def run_snakemake(workdir, *arguments, configfiles=(TINY,), timeout=900):
    """Run this checkout's workflow in ``workdir``; return the completed process.

    Later files in ``configfiles`` override keys of earlier ones, as Snakemake merges them.
    """
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
               "--configfile", *(str(path) for path in configfiles), "--cores", "2", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def tiny_workflow_run(tmp_path_factory):
    """Run the tiny configuration from simulation to figures, once per test session.

    tests/test_workflow.py checks its outputs and tests/test_slurm.py compares a SLURM run with it.
    """
    workdir = tmp_path_factory.mktemp("tiny-workflow")
    result = run_snakemake(workdir)
    if result.returncode != 0:
        pytest.fail(f"the tiny workflow failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    config = yaml.safe_load(TINY.read_text())
    return WorkflowRun(workdir, workdir / "results" / config["run"], config)
