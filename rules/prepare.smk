# Ingest: one job per simulation turns its GADGET snapshots and halo catalogue into the
# Lagrangian store stores/<sim>.zarr (layout in docs/store.md). Nothing is added to
# ALL_TARGETS: the analysis targets pull the stores in.

from halo_ml.snapshots import snapshot_input_files

UNIT_KEYS = ("length_unit", "mass_unit", "velocity_unit")


def ingest_inputs(wildcards):
    paths = simulation_files(config, wildcards.simulation)
    inputs = {
        "initial_snapshot": snapshot_input_files(paths["initial_snapshot"]),
        "final_snapshot": snapshot_input_files(paths["final_snapshot"]),
    }
    # Without a catalogue path, ingest looks for the catalogue next to the final snapshot.
    if paths["halo_catalogue"] is not None:
        inputs["halo_catalogue"] = paths["halo_catalogue"]
    return inputs


rule ingest:
    input:
        unpack(ingest_inputs),
    output:
        store=directory(store_path("{simulation}")),
    params:
        ingest=config["ingest"],
        units={key: config.get("files", {}).get(key) for key in UNIT_KEYS},
        paths=lambda wildcards: simulation_files(config, wildcards.simulation),
    resources:
        **job_resources("ingest"),
    benchmark:
        f"{RUN}/benchmarks/ingest/{{simulation}}.tsv",
    log:
        f"{LOGS}/ingest/{{simulation}}.log",
    threads: config["ingest"]["threads"]
    conda:
        "../envs/prepare.yaml"
    script:
        "../workflow_scripts/ingest.py"
