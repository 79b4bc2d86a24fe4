"""Rule fig4: MI per model with the truth-plus-noise reference lines."""

from halo_ml.figures import fig4
from halo_ml.logs import configure_logging

configure_logging(snakemake.log[0])
fig4(snakemake.input.mi, snakemake.input.noise, snakemake.output[0], snakemake.params.figures)
