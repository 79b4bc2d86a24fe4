"""Rule analytic_baselines: EPS and Sheth-Tormen masses of the test particles."""

from halo_ml.analytic import run_analytic_baselines
from halo_ml.logs import configure_logging

configure_logging(snakemake.log[0])
run_analytic_baselines(snakemake.input.samples, dict(zip(snakemake.params.simulations, snakemake.input.stores)),
                       snakemake.output.predictions, snakemake.output.summary, snakemake.params.analysis)
