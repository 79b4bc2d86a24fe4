"""Rule fig9: training and validation loss and gamma per epoch."""

from halo_ml.figures import fig9
from halo_ml.logs import configure_logging

configure_logging(snakemake.log[0])
fig9(snakemake.input.history, snakemake.input.summary, snakemake.output[0], snakemake.params.figures)
