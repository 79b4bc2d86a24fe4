# Demo suite: one job per simulation generates its initial conditions, evolves them to z=0
# with a particle-mesh code and finds its halos, writing the three files GADGET-4 writes for
# an output list of z=99 and z=0. Only active when simulations.source is "demo"; otherwise
# the user's files are the inputs of ingest.

if config["simulations"]["source"] == "demo":

    def demo_settings(config):
        # Everything that changes a simulation's files. Seeds and threads are left out:
        # the seed goes to each job on its own, so that adding a simulation or changing
        # another one's seed reruns only that one, and the files do not depend on threads.
        return {key: value for key, value in config["demo"].items() if key not in ("seeds", "threads")}

    rule simulate:
        output:
            initial_snapshot=f"{RUN}/simulations/{{simulation}}/snapshot_000.hdf5",
            final_snapshot=f"{RUN}/simulations/{{simulation}}/snapshot_001.hdf5",
            halo_catalogue=f"{RUN}/simulations/{{simulation}}/fof_subhalo_tab_001.hdf5",
        params:
            demo=demo_settings(config),
            cosmology=config["cosmology"],
            seed=lambda wildcards: config["demo"]["seeds"][wildcards.simulation],
        resources:
            **job_resources("simulate"),
        benchmark:
            f"{RUN}/benchmarks/simulate/{{simulation}}.tsv",
        log:
            f"{LOGS}/simulate/{{simulation}}.log",
        threads: config["demo"]["threads"]
        conda:
            "../envs/simulate.yaml"
        script:
            "../workflow_scripts/simulate.py"
