"""Rule train: fit the CNN of one (variant, seed) and write models/<variant>/seed<k>/.

A rerun after a killed job continues from checkpoint.pt in the same folder.
"""

from halo_ml.logs import configure_logging
from halo_ml.training import train_model

configure_logging(snakemake.log[0])  # noqa: F821 (the `snakemake` object is injected by Snakemake)

train_model(
    variant=snakemake.wildcards.variant,  # noqa: F821
    seed=int(snakemake.wildcards.seed),  # noqa: F821
    train_samples_path=snakemake.input.train_samples,  # noqa: F821
    validation_samples_path=snakemake.input.validation_samples,  # noqa: F821
    store_paths=dict(zip(snakemake.params.simulations, snakemake.input.stores)),  # noqa: F821
    train_subbox_paths=list(snakemake.input.train_subboxes) or None,  # noqa: F821
    validation_subbox_paths=list(snakemake.input.validation_subboxes) or None,  # noqa: F821
    model_settings=snakemake.params.model,  # noqa: F821
    training_settings=snakemake.params.training,  # noqa: F821
    input_settings=snakemake.params.inputs,  # noqa: F821
    selection_settings=snakemake.params.selection,  # noqa: F821
    model_path=snakemake.output.model,  # noqa: F821
    history_path=snakemake.output.history,  # noqa: F821
    summary_path=snakemake.output.summary,  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
)
