# halo-ml: GADGET snapshots -> Lagrangian zarr stores -> CNN training over input variants and
# seeds -> mutual information, analytic baselines, the paper's figures and an HTML report.
# The rules only wire files to functions of the halo_ml package; see docs/ for the user guide.

import os
import sys
from pathlib import Path

# The workflow drives the halo_ml package of this checkout, installed or not.
sys.path.insert(0, workflow.basedir)

from halo_ml.config import (
    ConfigError, check_config, describe_validation_error, run_directory,
    simulation_files, simulation_names, simulation_roles,
)

configfile: "config/config.yaml"

# Jobs import halo_ml from this checkout, also inside `--sdm conda` environments that do not
# install it; SLURM jobs inherit the variable through sbatch's default --export=ALL.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")]))


include: "rules/common.smk"
include: "rules/resources.smk"
include: "rules/simulate.smk"
include: "rules/prepare.smk"
include: "rules/train.smk"
include: "rules/analyze.smk"


rule all:
    input:
        ALL_TARGETS,
    default_target: True
