"""Configuration: loading, schema validation and the checks a schema cannot express.

The schema (``config/schema.yaml``) fixes the keys, types and ranges; :func:`check_config`
adds the cross-key rules (roles that share a simulation, seeds reused, missing seeds).
Both stop the run before any job starts, with one message that names the key, the value and
what is allowed.
"""

import json
import math
from pathlib import Path

import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "config" / "schema.yaml"
ROLES = ("train", "validation", "test")


# The schema's patterns in words, for error messages.
PATTERN_WORDS = {
    "^[A-Za-z0-9][A-Za-z0-9_.-]*$":
        "a name of letters, digits, '_', '.' and '-' that starts with a letter or digit",
    "^(auto|cpu|cuda(:[0-9]+)?)$": "'auto', 'cpu', 'cuda' or 'cuda:N'",
}


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
    if rule == "pattern":
        words = PATTERN_WORDS.get(expected, f"the pattern {expected}")
        return f"invalid configuration: '{key}' is {error.instance!r}; it must be {words}"
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

    n = demo["particles_per_side"]
    cube = config["inputs"]["cube_voxels"]
    if cube > n:
        raise ConfigError(
            f"invalid configuration: inputs.cube_voxels ({cube}) exceeds demo.particles_per_side ({n}); "
            f"the input cube has one voxel per Lagrangian cell, so it must fit in the grid: raise "
            f"demo.particles_per_side or lower inputs.cube_voxels")

    # Lazy import: the friends-of-friends module pulls in scipy, which plain validation does not need.
    from halo_ml.friends_of_friends import critical_density_internal

    box_kpc_h = 1000.0 * demo["box_size_mpc_h"]
    particle_mass_msun = (config["cosmology"]["omega_m"] * critical_density_internal() * box_kpc_h**3
                          / n**3 * 1e10 / config["cosmology"]["h"])
    smallest_halo = math.log10(demo["fof_min_particles"] * particle_mass_msun)
    log_mass_max = config["selection"]["log_mass_max"]
    if log_mass_max < smallest_halo:
        raise ConfigError(
            f"invalid configuration: selection.log_mass_max ({log_mass_max}) is below the smallest "
            f"demo halo, log10 of demo.fof_min_particles ({demo['fof_min_particles']}) particles of "
            f"{particle_mass_msun:.3g} Msun = {smallest_halo:.2f}, so no halo can be selected; raise "
            f"selection.log_mass_max, or lower the particle mass (demo.box_size_mpc_h, "
            f"demo.particles_per_side) or demo.fof_min_particles")


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


def configuration_reference(schema_path=SCHEMA_PATH):
    """Render the schema as the Markdown reference in docs/configuration.md.

    The page is generated, so it cannot fall behind the schema: ``python -m halo_ml.config``
    prints it, and a test compares it with the committed page.
    """
    schema = yaml.safe_load(Path(schema_path).read_text())
    definitions = schema.get("$defs", {})
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated from config/schema.yaml by `python -m halo_ml.config > docs/configuration.md`;",
        "     tests/test_config.py checks that this page matches the schema. -->",
        "",
        "A configuration is a YAML file passed with `--configfile` (the default is",
        "`config/config.yaml`). It is validated against `config/schema.yaml` before any job starts:",
        "an unknown key, a wrong type or a value out of range stops the run with a message naming",
        "the key. Keys without a default are required.",
        "",
    ]
    for section, section_schema in schema["properties"].items():
        section_schema = _resolve(section_schema, definitions)
        lines.append(f"## `{section}`")
        lines.append("")
        if "description" in section_schema:
            lines += [" ".join(section_schema["description"].split()), ""]
        children = section_schema.get("properties")
        if not children:
            lines += [f"Type: {_describe_type(section_schema, definitions)}.", ""]
            continue
        lines += ["| key | type and range | default | meaning |", "| --- | --- | --- | --- |"]
        for key, child in children.items():
            child = _resolve(child, definitions)
            if "default" in child:
                default = f"`{json.dumps(child['default'])}`"
            elif key in section_schema.get("required", []):
                default = "required"
            else:
                default = ""
            meaning = " ".join(child.get("description", "").split()).replace("|", "\\|")
            lines.append(f"| `{key}` | {_describe_type(child, definitions)} | {default} | {meaning} |")
        lines.append("")
    return "\n".join(lines)


def _resolve(node, definitions):
    """Inline ``$ref`` and ``allOf`` so a property reads as one flat schema."""
    node = dict(node)
    if "$ref" in node:
        node = {**_resolve(definitions[node.pop("$ref").split("/")[-1]], definitions), **node}
    for part in node.pop("allOf", []):
        node = {**node, **_resolve(part, definitions)}
    return node


def _describe_type(node, definitions):
    node = _resolve(node, definitions)
    kind = node.get("type", "any")
    kind = " or ".join(kind) if isinstance(kind, list) else kind
    if "enum" in node:
        return "one of " + ", ".join(f"`{value}`" for value in node["enum"])
    if kind == "array" and "items" in node:
        kind = f"list of {_describe_type(node['items'], definitions)}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        kind = f"mapping to {_describe_type(node['additionalProperties'], definitions)}"
    limits = []
    for rule, symbol in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if rule in node:
            limits.append(f"{symbol} {node[rule]}")
    for rule, word in (("minItems", "at least"), ("maxItems", "at most")):
        if rule in node:
            limits.append(f"{word} {node[rule]} items")
    if "pattern" in node:
        limits.append(f"matching `{node['pattern']}`")
    return kind + (f" ({', '.join(limits)})" if limits else "")


if __name__ == "__main__":
    print(configuration_reference())
