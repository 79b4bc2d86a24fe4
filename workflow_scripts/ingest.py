"""Rule ingest: GADGET snapshots and halo catalogue of one simulation -> its Lagrangian zarr store."""

from halo_ml.ingest import ingest_simulation
from halo_ml.logs import configure_logging

configure_logging(snakemake.log[0])  # noqa: F821 (the `snakemake` object is injected by Snakemake)

paths = snakemake.params.paths  # noqa: F821
ingest_simulation(
    initial_snapshot=paths["initial_snapshot"],
    final_snapshot=paths["final_snapshot"],
    halo_catalogue=paths["halo_catalogue"],
    store_path=snakemake.output.store,  # noqa: F821
    settings={**snakemake.params.ingest, "threads": snakemake.threads},  # noqa: F821
    units=snakemake.params.units,  # noqa: F821
)
