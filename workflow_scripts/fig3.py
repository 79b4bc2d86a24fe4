"""Rule fig3: residual histograms of the raw- and averaged-density models over all seeds."""

from halo_ml.figures import fig3
from halo_ml.logs import configure_logging

configure_logging(snakemake.log[0])
fig3(list(snakemake.input.raw), list(snakemake.input.averaged), snakemake.output[0], snakemake.params.figures)
