"""Rule fig10: CNN vs Sheth-Tormen vs EPS predictions with 68% and 95% contours."""

from halo_ml.figures import fig10
from halo_ml.logs import configure_logging

configure_logging(snakemake.log[0])
fig10(snakemake.input.cnn, snakemake.input.analytic, snakemake.output[0], snakemake.params.figures)
