"""Rule table_radial_split: MI per r/r200m bin of every (variant, seed)."""

from halo_ml.logs import configure_logging
from halo_ml.tables import gather_radial_split

configure_logging(snakemake.log[0])
gather_radial_split(list(snakemake.input), snakemake.output[0])
