# halo-ml: GADGET snapshots -> Lagrangian zarr stores -> CNN training over input variants and
# seeds -> mutual information, analytic baselines, the paper's figures and an HTML report.
# The rules only wire files to functions of the halo_ml package; see docs/ for the user guide.

from pathlib import Path

from halo_ml.config import (
    ConfigError, check_config, describe_validation_error, run_directory,
    simulation_files, simulation_names, simulation_roles,
)

configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/simulate.smk"
include: "rules/prepare.smk"
include: "rules/train.smk"
include: "rules/analyze.smk"


rule all:
    input:
        ALL_TARGETS,
    default_target: True
