"""Rule predict: predict the halo mass of every test particle with one trained model."""

from halo_ml.logs import configure_logging
from halo_ml.prediction import predict_split

configure_logging(snakemake.log[0])  # noqa: F821 (the `snakemake` object is injected by Snakemake)

predict_split(
    model_path=snakemake.input.model,  # noqa: F821
    samples_path=snakemake.input.test_samples,  # noqa: F821
    store_paths=dict(zip(snakemake.params.simulations, snakemake.input.stores)),  # noqa: F821
    subbox_paths=list(snakemake.input.test_subboxes) or None,  # noqa: F821
    output_path=snakemake.output.predictions,  # noqa: F821
    input_settings=snakemake.params.inputs,  # noqa: F821
    device=snakemake.params.device,  # noqa: F821
    bf16=snakemake.params.bf16,  # noqa: F821
    split="test",
    threads=snakemake.threads,  # noqa: F821
)
