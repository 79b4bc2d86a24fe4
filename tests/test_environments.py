"""The conda environments under envs/ must agree with pyproject.toml, package by package."""

import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENTS = sorted((ROOT / "envs").glob("*.yaml"))

# Snakemake and its executor plugin run the workflow; the jobs' environments do not need them.
WORKFLOW_ONLY = {"snakemake", "snakemake-executor-plugin-slurm"}
# Conda-only entries that are not Python distributions.
CONDA_ONLY = {"python", "pip"}


def pyproject_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {Requirement(line).name.lower(): Requirement(line) for line in project["dependencies"]}


def environment_requirements(path):
    """Return {name: Requirement} for the conda and pip entries of one environment file."""
    entries = []
    for item in yaml.safe_load(path.read_text())["dependencies"]:
        if isinstance(item, dict):
            entries.extend(item.get("pip", []))
        else:
            # conda pins one version with a single "=": python=3.11.
            entries.append(item.replace("=", "==", 1) if "=" in item and "==" not in item
                           and "<" not in item and ">" not in item else item)
    requirements = {}
    for entry in entries:
        requirement = Requirement(entry)
        requirements[requirement.name.lower()] = requirement
    return requirements


def test_every_rule_group_has_environment():
    assert {path.stem for path in ENVIRONMENTS} == {"simulate", "prepare", "train", "analyze"}


@pytest.mark.parametrize("path", ENVIRONMENTS, ids=lambda path: path.name)
def test_environment_packages_declared_in_pyproject(path):
    declared = pyproject_requirements()
    for name, requirement in environment_requirements(path).items():
        if name in CONDA_ONLY:
            continue
        assert name in declared, f"{path.name} names {name}, which pyproject.toml does not declare"
        assert requirement.specifier == declared[name].specifier, (
            f"{path.name} pins {name}{requirement.specifier}, pyproject.toml {declared[name].specifier}")


def test_environments_cover_pyproject():
    named = set()
    for path in ENVIRONMENTS:
        named |= set(environment_requirements(path))
    missing = set(pyproject_requirements()) - named - WORKFLOW_ONLY
    assert not missing, f"pyproject.toml declares {sorted(missing)}, which no environment under envs/ names"
