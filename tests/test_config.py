"""Configuration validation: every shipped configuration is valid, every kind of mistake is named."""

from pathlib import Path

import pytest
import yaml
from conftest import TINY, run_snakemake

from halo_ml.config import (
    ConfigError, configuration_reference, load_config, simulation_files, simulation_names, validate_config,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "config" / "config.yaml"


SHIPPED = sorted(path for path in (ROOT / "config").glob("*.yaml") if path.name != "schema.yaml")


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.name)
def test_shipped_configuration_valid(path):
    config = load_config(path)
    assert simulation_names(config)


def test_defaults_filled_from_schema():
    config = load_config(DEFAULT, overrides={"training": {"device": "cpu"}})
    assert config["ingest"]["sph_neighbours"] == 32
    assert config["training"]["device"] == "cpu"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"trainig": {}}, "unknown key(s) ['trainig'] at the top level"),
        ({"training": {"batch_sise": 3}}, "unknown key(s) ['batch_sise'] in 'training'"),
        ({"training": {"batch_size": -1}}, "'training.batch_size' is -1; it must be >= 1"),
        ({"training": {"bf16": "yes"}}, "'training.bf16' is 'yes' (str); expected type boolean"),
        ({"variants": ["raw", "smoothed"]}, "'variants.1' is 'smoothed'; allowed values"),
        ({"training": {"device": "tpu"}}, "'training.device' is 'tpu'; it must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
        ({"run": "bad name!"}, "'run' is 'bad name!'; it must be a name of letters, digits"),
        ({"simulations": {"source": "ramses"}}, "'simulations.source' is 'ramses'; allowed values: ['demo', 'gadget']"),
    ],
)
def test_invalid_value_names_key_and_rule(overrides, expected):
    with pytest.raises(ConfigError) as error:
        load_config(DEFAULT, overrides=overrides)
    assert expected in str(error.value)


def test_simulation_in_two_roles_rejected():
    config_change = {"simulations": {"test": ["demo_train_0"]}}
    with pytest.raises(ConfigError, match="'demo_train_0' is listed under both simulations.train and simulations.test; a training simulation"):
        load_config(DEFAULT, overrides=config_change)


def test_seed_shared_between_simulations_rejected():
    with pytest.raises(ConfigError, match="gives seed 1001 to both 'demo_train_0' and 'demo_test'"):
        load_config(DEFAULT, overrides={"demo": {"seeds": {"demo_test": 1001}}})


def test_missing_alpha_for_variant_rejected():
    config = yaml.safe_load(DEFAULT.read_text())
    del config["training"]["log10_alpha"]["z0"]
    with pytest.raises(ConfigError, match=r"training.log10_alpha has no value for variant\(s\) \['z0'\]"):
        validate_config(config)


def test_missing_file_named():
    with pytest.raises(ConfigError, match="configuration file .*nowhere.yaml not found"):
        load_config(ROOT / "config" / "nowhere.yaml")


def test_gadget_paths_expand_simulation_name():
    config = load_config(DEFAULT, overrides={
        "simulations": {"source": "gadget"},
        "files": {"initial_snapshot": "/data/{simulation}/snapshot_000.hdf5",
                  "final_snapshot": "/data/{simulation}/snapshot_001.hdf5"},
    })
    files = simulation_files(config, "demo_test")
    assert files["initial_snapshot"] == "/data/demo_test/snapshot_000.hdf5"
    assert files["final_snapshot"] == "/data/demo_test/snapshot_001.hdf5"
    assert files["halo_catalogue"] is None


def test_validation_simulation_may_also_test():
    config = load_config(DEFAULT, overrides={"simulations": {"test": ["demo_validation"]}})
    assert simulation_names(config).count("demo_validation") == 1


def test_configuration_reference_matches_schema():
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert page.strip() == configuration_reference().strip(), (
        "docs/configuration.md is out of date: run `python -m halo_ml.config > docs/configuration.md`")


def test_workflow_stops_on_invalid_configuration(tmp_path):
    overlay = tmp_path / "typo.yaml"
    overlay.write_text("trainig:\n  batch_size: 32\n")
    result = run_snakemake(tmp_path, "-n", configfiles=(TINY, overlay))
    assert result.returncode != 0
    assert "invalid configuration: unknown key(s) ['trainig'] at the top level" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()
