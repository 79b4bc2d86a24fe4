"""Rule cut_final_subboxes: SPH-render the z=0 sub-boxes of one chunk of one split."""

from halo_ml.final_subboxes import render_final_subboxes
from halo_ml.logs import configure_logging

configure_logging(snakemake.log[0])  # noqa: F821 (the `snakemake` object is injected by Snakemake)

render_final_subboxes(
    samples_path=snakemake.input.samples,  # noqa: F821
    chunk=int(snakemake.wildcards.chunk),  # noqa: F821
    store_paths=dict(zip(snakemake.params.names, snakemake.input.stores)),  # noqa: F821
    input_settings=snakemake.params.inputs,  # noqa: F821
    output_path=snakemake.output.subboxes,  # noqa: F821
    sph_neighbours=snakemake.params.sph_neighbours,  # noqa: F821
)
