"""Rule fig6: violins of the z=0 density model's predictions."""

from halo_ml.figures import fig6
from halo_ml.logs import configure_logging

configure_logging(snakemake.log[0])
fig6(snakemake.input[0], snakemake.output[0], snakemake.params.figures)
