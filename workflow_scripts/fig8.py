"""Rule fig8: the fitted Cauchy likelihood against the empirical distribution of the truth."""

from halo_ml.figures import fig8
from halo_ml.logs import configure_logging

configure_logging(snakemake.log[0])
fig8(snakemake.input.predictions, snakemake.input.summary, snakemake.output[0], snakemake.params.figures,
     snakemake.params.log_mass_min, snakemake.params.log_mass_max)
