"""Rule fig2: predicted vs true halo mass of the raw-density model (first seed)."""

from halo_ml.figures import fig2
from halo_ml.logs import configure_logging

configure_logging(snakemake.log[0])
fig2(snakemake.input[0], snakemake.output[0], snakemake.params.figures)
