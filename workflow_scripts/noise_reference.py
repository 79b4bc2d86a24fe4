"""Rule noise_reference: MI of the true test masses plus Gaussian noise (the Fig. 4 lines)."""

from halo_ml.logs import configure_logging
from halo_ml.mutual_information import run_noise_reference

configure_logging(snakemake.log[0])
run_noise_reference(snakemake.input.samples, snakemake.output[0], snakemake.params.analysis)
