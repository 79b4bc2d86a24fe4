"""Rule fig7: density vs potential model predictions per true-mass bin."""

from halo_ml.figures import fig7
from halo_ml.logs import configure_logging

configure_logging(snakemake.log[0])
fig7(snakemake.input.density, snakemake.input.potential, snakemake.output[0], snakemake.params.figures)
