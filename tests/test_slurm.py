"""The workflow through `snakemake --profile slurm` on a real one-node SLURM cluster.

scripts/slurm-cluster.sh brings up munged, MariaDB, slurmdbd, slurmctld and slurmd on this
machine (loopback only, Debian's packages), with fake GPUs so that train and predict, which
request a GPU, are scheduled and then run on the CPU. The tiny configuration runs twice through
SLURM: in the first, a training job is killed with scancel once its first checkpoint exists;
the second run resumes it. Its tables must equal those of a local run of the same configuration.

The test needs root and either the SLURM binaries or apt-get with Debian's package registry.
Elsewhere (a laptop, a container without root) it skips and reports which is missing.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_SCRIPT = ROOT / "scripts" / "slurm-cluster.sh"
TINY = ROOT / "tests" / "configs" / "tiny.yaml"
ACCOUNT, PARTITION = "halotest", "debug"
DAEMONS = ("munged", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct")
# Seconds for one whole snakemake invocation through SLURM; SIGINT after it, because the SLURM
# executor plugin cancels its jobs on SIGINT and ignores SIGTERM.
WORKFLOW_TIMEOUT = 600

pytestmark = pytest.mark.slow


def _missing_binaries():
    return [name for name in DAEMONS if shutil.which(name) is None]


def _cluster_unavailable_reason():
    """Return why no test cluster can be had here, or None; installs the packages if it can."""
    if os.name != "posix" or os.geteuid() != 0:
        return "the SLURM test cluster runs its daemons as root; run the tests as root"
    if not _missing_binaries():
        return None
    if shutil.which("apt-get") is None:
        return f"SLURM binaries {_missing_binaries()} not found and apt-get is not available to install them"
    result = subprocess.run(["bash", str(CLUSTER_SCRIPT), "install"], capture_output=True, text=True, timeout=600)
    if result.returncode != 0 or _missing_binaries():
        return f"installing Debian's SLURM packages failed: {result.stderr[-500:]}"
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Start the cluster; yield the environment that points SLURM's commands at it."""
    reason = _cluster_unavailable_reason()
    if reason:
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("slurm-cluster")
    # Four job slots and four fake GPUs on two cores: a tiny job spends most of its time
    # starting Python and Snakemake twice (sbatch script, then srun), so overlapping jobs
    # shortens the test.
    environment = dict(os.environ, HALO_SLURM_CPUS="4", HALO_SLURM_GPUS="4")
    up = subprocess.run(["bash", str(CLUSTER_SCRIPT), "up", str(state)], capture_output=True, text=True,
                        timeout=300, env=environment)
    try:
        if up.returncode != 0:
            pytest.fail(f"the SLURM test cluster did not start:\n{up.stdout}\n{up.stderr}")
        environment = dict(os.environ)
        environment["SLURM_CONF"] = str(state / "etc" / "slurm.conf")
        environment["PATH"] = f"{state / 'bin'}{os.pathsep}{environment['PATH']}"
        yield environment
    finally:
        subprocess.run(["bash", str(CLUSTER_SCRIPT), "down", str(state)], capture_output=True, timeout=120)


def _write_profile(folder):
    """Copy the shipped SLURM profile, with the two values a user edits filled in."""
    text = (ROOT / "profiles" / "slurm" / "config.yaml").read_text()
    for placeholder, value in (('"your-account"', ACCOUNT), ('"your-partition"', PARTITION)):
        assert placeholder in text, f"profiles/slurm/config.yaml no longer contains {placeholder}"
        text = text.replace(placeholder, value)
    # The plugin waits 40 s before its first status query by default; a tiny job takes seconds.
    text += "\nslurm-init-seconds-before-status-checks: 2\n"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(text)
    return folder


def _snakemake_command(workdir, configfiles, *arguments):
    return [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
            "--configfile", *[str(path) for path in configfiles], *arguments]


def _squeue_comments(environment):
    """Return {job id: comment} of the jobs in the queue; the comment names rule and wildcards."""
    result = subprocess.run(["squeue", "-h", "-o", "%i|%k"], capture_output=True, text=True, env=environment)
    return dict(line.split("|", 1) for line in result.stdout.split() if "|" in line)


def _sacct_jobs(environment):
    """Return the cluster's finished and running jobs as a table of id, state, comment and TRES."""
    result = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-a", "--format=JobID,State,Comment,AllocTRES"],
        capture_output=True, text=True, env=environment, check=True)
    rows = [line.split("|") for line in result.stdout.splitlines() if line]
    return pd.DataFrame(rows, columns=["job_id", "state", "comment", "tres"])


def _kill_first_training(process, environment, models, deadline):
    """Wait for a training checkpoint, kill that training job; return (variant, job id).

    `scancel --signal=TERM` sends SIGTERM to the job's steps, as SLURM does first at a time
    limit, and the job ends FAILED. A plain `scancel` would end it as "CANCELLED by <uid>",
    which snakemake-executor-plugin-slurm 2.8 does not recognise, so Snakemake would wait for
    the job forever.
    """
    while time.monotonic() < deadline and process.poll() is None:
        for checkpoint in models.glob("*/seed*/checkpoint.pt"):
            variant, seed = checkpoint.parent.parent.name, checkpoint.parent.name[len("seed"):]
            comment = f"rule_train_wildcards_{variant}_{seed}"
            jobs = [job for job, text in _squeue_comments(environment).items() if text == comment]
            if jobs and not (checkpoint.parent / "model.pt").exists():
                subprocess.run(["scancel", "--signal=TERM", jobs[0]], env=environment, check=True)
                return variant, jobs[0]
        time.sleep(0.2)
    return None, None


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    """Run the tiny workflow through SLURM, killing one training job, then run it again."""
    base = tmp_path_factory.mktemp("slurm-workflow")
    profile = _write_profile(base / "profile")
    workdir = base / "work"
    workdir.mkdir()
    config = yaml.safe_load(TINY.read_text())
    results = workdir / "results" / config["run"]
    arguments = ("--profile", str(profile))

    # First run: no retries, so that the killed training job stays failed until the rerun.
    command = ["timeout", "-s", "INT", str(WORKFLOW_TIMEOUT),
               *_snakemake_command(workdir, [TINY], *arguments, "--retries", "0")]
    with open(base / "first_run.log", "w") as log:
        process = subprocess.Popen(command, cwd=workdir, env=cluster, stdout=log, stderr=subprocess.STDOUT)
        variant, job_id = _kill_first_training(process, cluster, results / "models",
                                                 time.monotonic() + WORKFLOW_TIMEOUT)
        first_code = process.wait(timeout=WORKFLOW_TIMEOUT + 60)
    first_output = (base / "first_run.log").read_text()
    if variant is None:
        pytest.fail(f"no training job could be killed while running (exit code {first_code}):\n"
                    f"{first_output[-6000:]}")

    second = subprocess.run(
        ["timeout", "-s", "INT", str(WORKFLOW_TIMEOUT), *_snakemake_command(workdir, [TINY], *arguments)],
        cwd=workdir, env=cluster, capture_output=True, text=True)
    if second.returncode != 0:
        pytest.fail(f"the rerun through SLURM failed (exit code {second.returncode}):\n"
                    f"{second.stdout[-3000:]}\n{second.stderr[-8000:]}")
    return {"results": results, "killed_variant": variant, "killed_job": job_id,
            "first_code": first_code, "first_output": first_output}


@pytest.fixture(scope="module")
def local_run(slurm_run, tiny_workflow_run):
    """The same configuration run on this machine without SLURM (shared with test_workflow.py)."""
    return tiny_workflow_run.results


def _planned_rules(environment, workdir):
    """Return {rule: job count} of a fresh dry run of the tiny configuration in an empty folder."""
    result = subprocess.run(_snakemake_command(workdir, [TINY], "-n", "--cores", "1"),
                            capture_output=True, text=True, env=environment, check=True)
    counts = {}
    in_table = False
    for line in (result.stdout + result.stderr).splitlines():
        fields = line.split()
        if line.startswith("Job stats:"):
            in_table = True
        elif in_table and fields and fields[0] == "total":
            break
        elif in_table and len(fields) == 2 and fields[1].isdigit():
            counts[fields[0]] = int(fields[1])
    return counts


def test_first_run_stopped_at_killed_training(slurm_run):
    assert slurm_run["first_code"] != 0
    assert "Error in rule train" in slurm_run["first_output"]


def test_every_job_ran_through_sbatch(slurm_run, cluster, tmp_path):
    planned = _planned_rules(cluster, tmp_path)
    jobs = _sacct_jobs(cluster)
    completed = jobs[jobs["state"] == "COMPLETED"]
    completed_rules = completed["comment"].str.extract(r"^rule_([A-Za-z0-9_]+?)(?:_wildcards_.*)?$")[0]
    counts = completed_rules.value_counts().to_dict()
    # Snakemake runs the target rule `all` itself, without a cluster job.
    for rule, count in planned.items():
        if rule == "all":
            continue
        assert counts.get(rule, 0) == count, f"rule {rule}: {counts.get(rule, 0)} completed SLURM jobs, {count} planned"


def test_gpu_rules_got_the_fake_gpu(slurm_run, cluster):
    jobs = _sacct_jobs(cluster)
    completed = jobs[jobs["state"] == "COMPLETED"]
    gpu_jobs = completed[completed["comment"].str.match(r"^rule_(train|predict)_wildcards_")]
    other_jobs = completed[~completed.index.isin(gpu_jobs.index)]
    assert len(gpu_jobs) > 0
    assert gpu_jobs["tres"].str.contains("gres/gpu=1").all()
    assert not other_jobs["tres"].str.contains("gres/gpu").any()


def test_killed_training_resumed_from_checkpoint(slurm_run, cluster):
    jobs = _sacct_jobs(cluster).set_index("job_id")
    assert jobs.loc[slurm_run["killed_job"], "state"] == "FAILED"
    variant = slurm_run["killed_variant"]
    log = (slurm_run["results"] / "logs" / "train" / f"{variant}_seed0.log").read_text()
    assert "resuming from checkpoint" in log
    history = pd.read_csv(slurm_run["results"] / "models" / variant / "seed0" / "history.csv")
    # Every epoch once: the resumed run neither repeats nor skips the epochs before the kill.
    assert len(history) == 6
    assert history["epoch"].is_unique
    assert history["epoch"].is_monotonic_increasing


def test_tables_equal_local_run(slurm_run, local_run):
    slurm_tables = sorted(path.name for path in (slurm_run["results"] / "tables").glob("*.csv"))
    local_tables = sorted(path.name for path in (local_run / "tables").glob("*.csv"))
    assert slurm_tables, "the SLURM run wrote no tables"
    assert slurm_tables == local_tables
    for name in slurm_tables:
        pd.testing.assert_frame_equal(
            pd.read_csv(slurm_run["results"] / "tables" / name), pd.read_csv(local_run / "tables" / name),
            obj=f"tables/{name}")


def test_predictions_equal_local_run(slurm_run, local_run):
    # The resumed training must end with the weights of an uninterrupted one.
    slurm_files = sorted(path.relative_to(slurm_run["results"]) for path in (slurm_run["results"] / "predictions").rglob("*.csv"))
    local_files = sorted(path.relative_to(local_run) for path in (local_run / "predictions").rglob("*.csv"))
    assert slurm_files, "the SLURM run wrote no predictions"
    assert slurm_files == local_files
    for name in slurm_files:
        pd.testing.assert_frame_equal(pd.read_csv(slurm_run["results"] / name), pd.read_csv(local_run / name),
                                      obj=str(name))
