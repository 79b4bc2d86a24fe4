# Shared settings of every rule file: validated configuration, output layout, wildcards.

import jsonschema
from snakemake.utils import validate

# Validate before any job is planned; one message naming key, value and rule.
try:
    validate(config, "../config/schema.yaml")
    check_config(config)
except WorkflowError as error:
    cause = error.__context__
    if isinstance(cause, jsonschema.ValidationError):
        raise WorkflowError(describe_validation_error(cause)) from None
    raise
except ConfigError as error:
    raise WorkflowError(str(error)) from None

RUN = str(run_directory(config))
SIMULATIONS = simulation_names(config)
TRAIN_SIMULATIONS = config["simulations"]["train"]
VALIDATION_SIMULATIONS = config["simulations"]["validation"]
TEST_SIMULATIONS = config["simulations"]["test"]
VARIANTS = config["variants"]
SEEDS = config["seeds"]
SPLITS = ["train", "validation", "test"]
LOGS = f"{RUN}/logs"

wildcard_constraints:
    simulation="[A-Za-z0-9][A-Za-z0-9_.-]*",
    variant="|".join(["raw", "averaged", "potential", "z0"]),
    seed="[0-9]+",
    split="train|validation|test",
    chunk="[0-9]+",


def store_path(simulation):
    return f"{RUN}/stores/{simulation}.zarr"


# Each rule file appends the files that `snakemake` (rule all) must produce.
ALL_TARGETS = []
