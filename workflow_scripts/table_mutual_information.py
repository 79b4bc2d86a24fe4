"""Rule table_mutual_information: MI of every (variant, seed), and the mean over seeds."""

from halo_ml.logs import configure_logging
from halo_ml.tables import gather_mutual_information

configure_logging(snakemake.log[0])
gather_mutual_information(list(snakemake.input), snakemake.output.table, snakemake.output.summary)
