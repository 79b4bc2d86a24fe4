"""Configuration: loading, schema validation and the checks a schema cannot express.

The schema (``config/schema.yaml``) fixes the keys, types and ranges; :func:`check_config`
adds the cross-key rules (roles that share a simulation, seeds reused, missing seeds).
Both stop the run before any job starts, with one message that names the key, the value and
what is allowed.
"""

from pathlib import Path

import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "config" / "schema.yaml"
ROLES = ("train", "validation", "test")


class ConfigError(ValueError):
    """An invalid configuration: the message names the key, the value and what is allowed."""


def load_config(path, overrides=None):
    """Read a YAML configuration, validate it and fill in the schema's defaults.

    Parameters
    ----------
    path : path-like
        The YAML file.
    overrides : dict, optional
        Values merged on top of the file (nested dictionaries are merged key by key).
    """
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} not found") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"configuration file {path} is not valid YAML: {error}") from None
    if overrides:
        config = merge(config, overrides)
    validate_config(config, schema_path=SCHEMA_PATH)
    return config


def merge(base, update):
    """Return ``base`` with ``update`` merged in, recursing into nested dictionaries."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def validate_config(config, schema_path=SCHEMA_PATH):
    """Validate ``config`` in place against the schema (filling defaults), then cross-check it.

    Raises
    ------
    ConfigError
        On the first violation, naming the key path, the offending value and the rule.
    """
    import jsonschema
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    if not isinstance(config, dict):
        raise ConfigError(f"the configuration must be a mapping of keys to values, not {config!r}")
    try:
        validate(config, str(schema_path))
    except WorkflowError as error:
        # snakemake formats the jsonschema error into its message text; the error object
        # itself is the exception it was raised while handling.
        cause = error.__context__
        if not isinstance(cause, jsonschema.ValidationError):
            raise
        raise ConfigError(describe_validation_error(cause)) from None
    check_config(config)
    return config


def describe_validation_error(error):
    """Turn a jsonschema ValidationError into one sentence naming key, value and rule."""
    key = ".".join(str(part) for part in error.absolute_path) or "(top level)"
    rule, expected = error.validator, error.validator_value

    if rule == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        where = f"in '{key}'" if error.absolute_path else "at the top level"
        return (f"invalid configuration: unknown key(s) {unknown} {where}; "
                f"allowed keys: {allowed}")
    if rule == "required":
        return f"invalid configuration: {error.message} in '{key}'"
    if rule == "enum":
        return f"invalid configuration: '{key}' is {error.instance!r}; allowed values: {expected}"
    if rule == "type":
        return (f"invalid configuration: '{key}' is {error.instance!r} "
                f"({type(error.instance).__name__}); expected type {expected}")
    bounds = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
    if rule in bounds:
        return f"invalid configuration: '{key}' is {error.instance!r}; it must be {bounds[rule]} {expected}"
    return f"invalid configuration: '{key}' is {error.instance!r}; {error.message}"


def check_config(config):
    """Check the rules that span several keys; raise :class:`ConfigError` on the first failure."""
    simulations = config["simulations"]
    seen = {}
    for role in ROLES:
        for name in simulations[role]:
            # A small suite may validate and test on one simulation (the selection draws disjoint
            # particles), but a training simulation never serves another role.
            shared_evaluation = {seen.get(name), role} == {"validation", "test"}
            if name in seen and not shared_evaluation:
                raise ConfigError(
                    f"invalid configuration: simulation '{name}' is listed under both "
                    f"simulations.{seen[name]} and simulations.{role}; a training simulation "
                    f"cannot also be used for validation or testing")
            seen[name] = seen.get(name, role)

    if simulations["source"] == "gadget" and "files" not in config:
        raise ConfigError("invalid configuration: simulations.source is 'gadget' but the 'files' "
                          "section with initial_snapshot and final_snapshot is missing")
    if simulations["source"] == "demo":
        _check_demo(config, list(seen))

    selection = config["selection"]
    if selection["log_mass_min"] >= selection["log_mass_max"]:
        raise ConfigError(
            f"invalid configuration: selection.log_mass_min ({selection['log_mass_min']}) must be "
            f"below selection.log_mass_max ({selection['log_mass_max']})")

    missing_alpha = [variant for variant in config["variants"]
                     if variant not in config["training"].get("log10_alpha", {})]
    if missing_alpha:
        raise ConfigError(f"invalid configuration: training.log10_alpha has no value for "
                          f"variant(s) {missing_alpha}; give one per trained variant")


def _check_demo(config, names):
    demo = config.get("demo")
    if demo is None:
        raise ConfigError("invalid configuration: simulations.source is 'demo' but the 'demo' section is missing")
    seeds = demo["seeds"]
    missing = [name for name in names if name not in seeds]
    if missing:
        raise ConfigError(f"invalid configuration: demo.seeds has no seed for simulation(s) {missing}")
    owners = {}
    for name in names:
        seed = seeds[name]
        if seed in owners:
            raise ConfigError(
                f"invalid configuration: demo.seeds gives seed {seed} to both '{owners[seed]}' and "
                f"'{name}'; every simulation needs its own seed or they are the same realisation")
        owners[seed] = name


def simulation_names(config):
    """Return every simulation name once, training first, then validation, then test."""
    names = [name for role in ROLES for name in config["simulations"][role]]
    return list(dict.fromkeys(names))


def simulation_roles(config, name):
    """Return the roles ("train", "validation", "test") of the simulation ``name``."""
    roles = [role for role in ROLES if name in config["simulations"][role]]
    if not roles:
        raise KeyError(f"simulation '{name}' is not in the configuration")
    return roles


def run_directory(config):
    """Return the output folder ``results/<run>`` (relative to the working directory)."""
    return Path("results") / config["run"]


def simulation_files(config, name):
    """Return the paths of one simulation's files as a dict.

    Keys: ``initial_snapshot`` (z=99), ``final_snapshot`` (z=0) and ``halo_catalogue``
    (``None`` when pynbody should find it next to the final snapshot).
    """
    if config["simulations"]["source"] == "demo":
        folder = run_directory(config) / "simulations" / name
        return {
            "initial_snapshot": str(folder / "snapshot_000.hdf5"),
            "final_snapshot": str(folder / "snapshot_001.hdf5"),
            "halo_catalogue": str(folder / "fof_subhalo_tab_001.hdf5"),
        }
    files = config["files"]
    catalogue = files.get("halo_catalogue")
    return {
        "initial_snapshot": files["initial_snapshot"].format(simulation=name),
        "final_snapshot": files["final_snapshot"].format(simulation=name),
        "halo_catalogue": catalogue.format(simulation=name) if catalogue else None,
    }
