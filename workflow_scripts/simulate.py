"""Rule simulate: generate one demo simulation as three GADGET-4 HDF5 files."""

from pathlib import Path

from halo_ml.demo_suite import simulate
from halo_ml.logs import configure_logging

configure_logging(snakemake.log[0])  # noqa: F821 (the `snakemake` object is injected by Snakemake)

simulate(
    name=snakemake.wildcards.simulation,  # noqa: F821
    seed=snakemake.params.seed,  # noqa: F821
    demo_settings=snakemake.params.demo,  # noqa: F821
    cosmology=snakemake.params.cosmology,  # noqa: F821
    out_dir=Path(snakemake.output.initial_snapshot).parent,  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
)
