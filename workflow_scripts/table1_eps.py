"""Rule table1_eps: Table I, MI of the CNN models and EPS on the particles EPS gives a mass."""

from halo_ml.logs import configure_logging
from halo_ml.tables import analytic_comparison

configure_logging(snakemake.log[0])
analytic_comparison(snakemake.input.analytic, snakemake.input.summary, snakemake.params.predictions, "eps",
                    snakemake.output[0], snakemake.params.analysis)
