"""The real Snakemake workflow, end to end on a tiny demo configuration.

One run of the tiny configuration (shared with the SLURM test through conftest.py) goes from the
demo simulations to the figures. The tests check its tables, figures and report, and use dry
runs to check what a rerun would redo after a change.
"""

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import TINY, run_snakemake

pytestmark = pytest.mark.slow


def snakemake(workdir, *arguments, overrides=None):
    """Run the workflow in ``workdir`` and fail the test with its output if it fails.

    ``overrides`` (a dict) is written to a YAML file layered over the tiny configuration, as a
    user would edit a copy of it.
    """
    configfiles = [TINY]
    if overrides is not None:
        overlay = workdir / "overrides.yaml"
        overlay.write_text(yaml.safe_dump(overrides))
        configfiles.append(overlay)
    result = run_snakemake(workdir, *arguments, configfiles=configfiles)
    if result.returncode != 0:
        pytest.fail(f"snakemake {' '.join(arguments)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    return result


def planned_jobs(result):
    """Return {rule: count} from the 'Job stats' table of a dry run's output."""
    text = result.stdout + result.stderr
    if "Nothing to be done" in text:
        return {}
    counts = {}
    in_table = False
    for line in text.splitlines():
        if line.startswith("Job stats:"):
            in_table = True
            continue
        fields = line.split()
        if in_table and len(fields) == 2 and fields[1].isdigit() and fields[0] not in ("job", "total"):
            counts[fields[0]] = int(fields[1])
        elif in_table and fields and fields[0] == "total":
            break
    return counts


@pytest.fixture(scope="module")
def run(tiny_workflow_run):
    return tiny_workflow_run.workdir, tiny_workflow_run.results, tiny_workflow_run.config


def test_tables_finite(run):
    _, results, _ = run
    tables = sorted((results / "tables").glob("*.csv"))
    names = {table.name for table in tables}
    assert {"mutual_information.csv", "table1_eps.csv", "table2_st.csv", "radial_split.csv"} <= names
    for table in tables:
        frame = pd.read_csv(table)
        assert len(frame) > 0, f"{table.name} is empty"
        numbers = frame.select_dtypes("number")
        assert numbers.notna().all().all(), f"{table.name} has missing values:\n{frame}"
        assert all(math.isfinite(value) for value in numbers.to_numpy().ravel()), f"{table.name} has infinities"


def test_every_figure_written(run):
    _, results, config = run
    figures = {path.stem for path in (results / "figures").glob(f"fig*.{config['figures']['format']}")}
    expected = {"fig2", "fig4", "fig5", "fig8", "fig9", "fig10"}
    variants = set(config["variants"])
    if "averaged" in variants:
        expected.add("fig3")
    if "z0" in variants:
        expected.add("fig6")
    if "potential" in variants:
        expected.add("fig7")
    assert expected <= figures


def test_outputs_carry_provenance(run):
    _, results, config = run
    mutual_information = results / "tables" / "mutual_information.csv"
    record = json.loads(Path(f"{mutual_information}.provenance.json").read_text())
    assert record["packages"]["gmm-mi"] == "0.8.2"
    assert record["inputs"], "the table's provenance names no input file"
    model = results / "models" / config["variants"][0] / f"seed{config['seeds'][0]}" / "provenance.json"
    assert json.loads(model.read_text())["seeds"]


def test_report_gathers_figures(run):
    workdir, results, _ = run
    report = workdir / "report.html"
    snakemake(workdir, "--report", str(report))
    text = report.read_text(errors="replace")
    assert "fig4" in text
    assert "mutual_information" in text


def test_second_run_does_nothing(run):
    workdir, _, _ = run
    assert planned_jobs(snakemake(workdir, "-n")) == {}


def test_figure_target_rebuilds_alone(run):
    workdir, results, config = run
    figure = results / "figures" / f"fig4.{config['figures']['format']}"
    figure.unlink()
    assert planned_jobs(snakemake(workdir, "-n", "fig4")) == {"fig4": 1}
    snakemake(workdir, "fig4")
    assert figure.exists()
    assert planned_jobs(snakemake(workdir, "-n", "fig4")) == {}


def test_figure_setting_reruns_only_figures(run):
    workdir, _, config = run
    figures = dict(config["figures"], dpi=config["figures"]["dpi"] + 1)
    jobs = planned_jobs(snakemake(workdir, "-n", overrides={"figures": figures}))
    assert jobs, "changing the figure resolution plans no job"
    assert all(rule.startswith("fig") or rule == "all" for rule in jobs), jobs


def test_training_setting_never_reruns_ingest(run):
    workdir, _, config = run
    training = dict(config["training"], learning_rate=config["training"]["learning_rate"] * 2)
    jobs = planned_jobs(snakemake(workdir, "-n", overrides={"training": training}))
    assert jobs.get("train") == len(config["variants"]) * len(config["seeds"])
    assert "predict" in jobs
    for upstream in ("simulate", "ingest", "select", "cut_final_subboxes"):
        assert upstream not in jobs, f"a training change reruns {upstream}: {jobs}"
