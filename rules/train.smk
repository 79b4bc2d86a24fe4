# Selection, z=0 sub-boxes, training and prediction.
#
# select              one job: samples/{train,validation,test}.csv from every store
# cut_final_subboxes  z0 variant only, one job per (split, chunk): subboxes/<split>/chunk<c>.zarr
# train               one job per (variant, seed): models/<variant>/seed<k>/
# predict             one job per (variant, seed): predictions/<variant>/seed<k>.csv on the test split
#
# Interface of workflow_scripts/train.py and predict.py:
#   input.train_samples, input.validation_samples, input.test_samples: samples CSVs
#   input.stores: store paths, in the order of params.simulations (the script zips the two)
#   input.train_subboxes, input.validation_subboxes, input.test_subboxes: sub-box chunk stores
#     (empty lists unless the variant is z0)
#   input.model (predict): models/<variant>/seed<k>/model.pt
#   params.training: the training section with log10_alpha reduced to this variant
#   params.model, params.inputs (only the inputs keys this variant reads), params.selection
#     (log_mass_min, log_mass_max); predict gets params.inputs, params.device, params.bf16
#   wildcards.variant, wildcards.seed
# No resources are set here: the SLURM workflow profile sets them per rule.

# inputs keys that change the cubes of each variant; editing any other key reruns nothing.
VARIANT_INPUT_KEYS = {
    "raw": ["cube_voxels"],
    "potential": ["cube_voxels"],
    "averaged": ["cube_voxels", "shells", "shell_radius_min_voxels"],
    "z0": ["cube_voxels", "z0_cube_size_mpc_h", "z0_chunks"],
}
Z0_CHUNKS = range(config["inputs"]["z0_chunks"])


def variant_inputs(variant):
    return {key: config["inputs"][key] for key in VARIANT_INPUT_KEYS[variant]}


def subbox_paths(split, variant):
    if variant != "z0":
        return []
    return [f"{RUN}/subboxes/{split}/chunk{chunk}.zarr" for chunk in Z0_CHUNKS]


def training_settings(variant):
    # Only this variant's alpha, so that changing another variant's alpha reruns only that one.
    training = dict(config["training"])
    training["log10_alpha"] = {variant: config["training"]["log10_alpha"][variant]}
    return training


SELECTION_RANGE = {key: config["selection"][key] for key in ("log_mass_min", "log_mass_max")}
TRAIN_AND_VALIDATION = TRAIN_SIMULATIONS + VALIDATION_SIMULATIONS


rule select:
    input:
        stores=[store_path(simulation) for simulation in SIMULATIONS],
    output:
        train=f"{RUN}/samples/train.csv",
        validation=f"{RUN}/samples/validation.csv",
        test=f"{RUN}/samples/test.csv",
    params:
        selection=config["selection"],
        simulations={split: config["simulations"][split] for split in SPLITS},
        names=SIMULATIONS,
    resources:
        **job_resources("select"),
    benchmark:
        f"{RUN}/benchmarks/select/select.tsv",
    log:
        f"{LOGS}/select/select.log",
    conda:
        "../envs/train.yaml"
    script:
        "../workflow_scripts/select.py"


rule cut_final_subboxes:
    input:
        samples=f"{RUN}/samples/{{split}}.csv",
        stores=lambda wildcards: [store_path(name) for name in config["simulations"][wildcards.split]],
    output:
        subboxes=directory(f"{RUN}/subboxes/{{split}}/chunk{{chunk}}.zarr"),
    params:
        inputs=variant_inputs("z0"),
        sph_neighbours=config["ingest"]["sph_neighbours"],
        names=lambda wildcards: config["simulations"][wildcards.split],
    resources:
        **job_resources("cut_final_subboxes"),
    benchmark:
        f"{RUN}/benchmarks/cut_final_subboxes/{{split}}_chunk{{chunk}}.tsv",
    log:
        f"{LOGS}/cut_final_subboxes/{{split}}_chunk{{chunk}}.log",
    conda:
        "../envs/train.yaml"
    script:
        "../workflow_scripts/cut_final_subboxes.py"


rule train:
    input:
        train_samples=f"{RUN}/samples/train.csv",
        validation_samples=f"{RUN}/samples/validation.csv",
        stores=[store_path(simulation) for simulation in TRAIN_AND_VALIDATION],
        train_subboxes=lambda wildcards: subbox_paths("train", wildcards.variant),
        validation_subboxes=lambda wildcards: subbox_paths("validation", wildcards.variant),
    output:
        model=f"{RUN}/models/{{variant}}/seed{{seed}}/model.pt",
        history=f"{RUN}/models/{{variant}}/seed{{seed}}/history.csv",
        summary=f"{RUN}/models/{{variant}}/seed{{seed}}/summary.json",
    params:
        training=lambda wildcards: training_settings(wildcards.variant),
        model=config["model"],
        inputs=lambda wildcards: variant_inputs(wildcards.variant),
        selection=SELECTION_RANGE,
        simulations=TRAIN_AND_VALIDATION,
    resources:
        **job_resources("train"),
    benchmark:
        f"{RUN}/benchmarks/train/{{variant}}_seed{{seed}}.tsv",
    log:
        f"{LOGS}/train/{{variant}}_seed{{seed}}.log",
    conda:
        "../envs/train.yaml"
    script:
        "../workflow_scripts/train.py"


rule predict:
    input:
        model=f"{RUN}/models/{{variant}}/seed{{seed}}/model.pt",
        test_samples=f"{RUN}/samples/test.csv",
        stores=[store_path(simulation) for simulation in TEST_SIMULATIONS],
        test_subboxes=lambda wildcards: subbox_paths("test", wildcards.variant),
    output:
        predictions=f"{RUN}/predictions/{{variant}}/seed{{seed}}.csv",
    params:
        inputs=lambda wildcards: variant_inputs(wildcards.variant),
        device=config["training"]["device"],
        bf16=config["training"]["bf16"],
        simulations=TEST_SIMULATIONS,
    resources:
        **job_resources("predict"),
    benchmark:
        f"{RUN}/benchmarks/predict/{{variant}}_seed{{seed}}.tsv",
    log:
        f"{LOGS}/predict/{{variant}}_seed{{seed}}.log",
    conda:
        "../envs/train.yaml"
    script:
        "../workflow_scripts/predict.py"


ALL_TARGETS.extend(
    f"{RUN}/predictions/{variant}/seed{seed}.csv" for variant in VARIANTS for seed in SEEDS
)
