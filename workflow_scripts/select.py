"""Rule select: draw the training, validation and test particles from the stores."""

from halo_ml.logs import configure_logging
from halo_ml.selection import select_particles

configure_logging(snakemake.log[0])  # noqa: F821 (the `snakemake` object is injected by Snakemake)

select_particles(
    simulations=snakemake.params.simulations,  # noqa: F821
    store_paths=dict(zip(snakemake.params.names, snakemake.input.stores)),  # noqa: F821
    settings=snakemake.params.selection,  # noqa: F821
    output_paths={split: snakemake.output[split] for split in ("train", "validation", "test")},  # noqa: F821
)
