"""Rule table2_st: Table II, MI of the CNN models and ST on the particles ST gives a mass."""

from halo_ml.logs import configure_logging
from halo_ml.tables import analytic_comparison

configure_logging(snakemake.log[0])
analytic_comparison(snakemake.input.analytic, snakemake.input.summary, snakemake.params.predictions, "st",
                    snakemake.output[0], snakemake.params.analysis)
