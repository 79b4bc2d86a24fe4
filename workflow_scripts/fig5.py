"""Rule fig5: predictions split by r/r200m, with the MI of each bin."""

from halo_ml.figures import fig5
from halo_ml.logs import configure_logging

configure_logging(snakemake.log[0])
variants = snakemake.params.variants
fig5(dict(zip(variants, snakemake.input.predictions)), dict(zip(variants, snakemake.input.mi)),
     snakemake.output[0], snakemake.params.figures, snakemake.params.radial_edges)
