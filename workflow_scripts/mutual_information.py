"""Rule mutual_information: MI of one model's test predictions, overall and per r/r200m bin."""

from halo_ml.logs import configure_logging
from halo_ml.mutual_information import run_mutual_information

configure_logging(snakemake.log[0])
run_mutual_information(snakemake.input.predictions, snakemake.output[0], snakemake.params.analysis,
                       snakemake.wildcards.variant, int(snakemake.wildcards.seed))
