# Analysis: mutual information per model, EPS/ST baselines, tables, the paper's Figs. 2-10.
# Each figure is a target of its own (`snakemake fig4`); a figure whose model variant the
# configuration does not train stops with a message naming the variant to add.

report: "../report/workflow.rst"

FIGURE_FORMAT = config["figures"]["format"]
FIRST_SEED = SEEDS[0]
TABLES = f"{RUN}/tables"
FIGURES = f"{RUN}/figures"

# Variants each figure draws; Figs. 4 and 10 use whichever are trained besides these.
FIGURE_VARIANTS = {
    "fig2": ["raw"], "fig3": ["raw", "averaged"], "fig4": [], "fig5": ["raw"], "fig6": ["z0"],
    "fig7": ["raw", "potential"], "fig8": ["raw"], "fig9": ["raw"], "fig10": ["raw"],
}


def predictions_file(variant, seed):
    return f"{RUN}/predictions/{variant}/seed{seed}.csv"


def mi_file(variant, seed):
    return f"{RUN}/mi/{variant}/seed{seed}.json"


def model_file(variant, seed, name):
    return f"{RUN}/models/{variant}/seed{seed}/{name}"


def analysis_settings(*keys):
    """Return the named keys of the `analysis` section, so a rule reruns only when they change."""
    return {key: config["analysis"][key] for key in keys}


def missing_variants(figure):
    return [variant for variant in FIGURE_VARIANTS[figure] if variant not in VARIANTS]


def reject_figure(figure):
    """Input function of a figure that cannot be drawn: raise a WorkflowError naming the fix."""
    def raise_error(wildcards):
        raise WorkflowError(
            f"{figure} needs the model variant(s) {missing_variants(figure)}, which this configuration "
            f"does not train (variants: {VARIANTS}); add them to 'variants' in the configuration "
            f"to draw {figure}")
    return raise_error


def figure_output(figure):
    return report(f"{FIGURES}/{figure}.{FIGURE_FORMAT}", caption=f"../report/{figure}.rst", category="Figures")


def table_output(name):
    return report(f"{TABLES}/{name}.csv", caption=f"../report/{name}.rst", category="Tables")


ANALYTIC_VARIANTS = [variant for variant in ("raw", "averaged") if variant in VARIANTS]


rule mutual_information:
    input:
        predictions=predictions_file("{variant}", "{seed}"),
    output:
        f"{RUN}/mi/{{variant}}/seed{{seed}}.json",
    params:
        analysis=analysis_settings("n_bootstrap", "radial_edges"),
    resources:
        **job_resources("mutual_information"),
    benchmark:
        f"{RUN}/benchmarks/mutual_information/{{variant}}_seed{{seed}}.tsv",
    log:
        f"{LOGS}/mutual_information/{{variant}}_seed{{seed}}.log",
    conda:
        "../envs/analyze.yaml"
    script:
        "../workflow_scripts/mutual_information.py"


rule noise_reference:
    input:
        samples=f"{RUN}/samples/test.csv",
    output:
        table_output("noise_reference"),
    params:
        analysis=analysis_settings("n_bootstrap", "noise_dex", "seed"),
    benchmark:
        f"{RUN}/benchmarks/noise_reference/noise_reference.tsv",
    log:
        f"{LOGS}/noise_reference/noise_reference.log",
    conda:
        "../envs/analyze.yaml"
    script:
        "../workflow_scripts/noise_reference.py"


rule analytic_baselines:
    input:
        samples=f"{RUN}/samples/test.csv",
        stores=[store_path(simulation) for simulation in TEST_SIMULATIONS],
    output:
        predictions=f"{RUN}/analytic/predictions.csv",
        summary=f"{RUN}/analytic/summary.json",
    params:
        analysis=analysis_settings("analytic_mass_scales", "analytic_log_mass_min", "analytic_log_mass_max"),
        simulations=TEST_SIMULATIONS,
    resources:
        **job_resources("analytic_baselines"),
    benchmark:
        f"{RUN}/benchmarks/analytic_baselines/analytic_baselines.tsv",
    log:
        f"{LOGS}/analytic_baselines/analytic_baselines.log",
    conda:
        "../envs/analyze.yaml"
    script:
        "../workflow_scripts/analytic_baselines.py"


rule table_mutual_information:
    input:
        expand(mi_file("{variant}", "{seed}"), variant=VARIANTS, seed=SEEDS),
    output:
        table=table_output("mutual_information"),
        summary=table_output("mutual_information_summary"),
    benchmark:
        f"{RUN}/benchmarks/table_mutual_information/table_mutual_information.tsv",
    log:
        f"{LOGS}/table_mutual_information/table_mutual_information.log",
    conda:
        "../envs/analyze.yaml"
    script:
        "../workflow_scripts/table_mutual_information.py"


rule table_radial_split:
    input:
        expand(mi_file("{variant}", "{seed}"), variant=VARIANTS, seed=SEEDS),
    output:
        table_output("radial_split"),
    benchmark:
        f"{RUN}/benchmarks/table_radial_split/table_radial_split.tsv",
    log:
        f"{LOGS}/table_radial_split/table_radial_split.log",
    conda:
        "../envs/analyze.yaml"
    script:
        "../workflow_scripts/table_radial_split.py"


rule table1_eps:
    input:
        analytic=f"{RUN}/analytic/predictions.csv",
        summary=f"{RUN}/analytic/summary.json",
        predictions=expand(predictions_file("{variant}", "{seed}"), variant=ANALYTIC_VARIANTS, seed=SEEDS),
    output:
        table_output("table1_eps"),
    params:
        analysis=analysis_settings("n_bootstrap", "seed"),
        predictions={variant: [predictions_file(variant, seed) for seed in SEEDS] for variant in ANALYTIC_VARIANTS},
    benchmark:
        f"{RUN}/benchmarks/table1_eps/table1_eps.tsv",
    log:
        f"{LOGS}/table1_eps/table1_eps.log",
    conda:
        "../envs/analyze.yaml"
    script:
        "../workflow_scripts/table1_eps.py"


rule table2_st:
    input:
        analytic=f"{RUN}/analytic/predictions.csv",
        summary=f"{RUN}/analytic/summary.json",
        predictions=expand(predictions_file("{variant}", "{seed}"), variant=ANALYTIC_VARIANTS, seed=SEEDS),
    output:
        table_output("table2_st"),
    params:
        analysis=analysis_settings("n_bootstrap", "seed"),
        predictions={variant: [predictions_file(variant, seed) for seed in SEEDS] for variant in ANALYTIC_VARIANTS},
    benchmark:
        f"{RUN}/benchmarks/table2_st/table2_st.tsv",
    log:
        f"{LOGS}/table2_st/table2_st.log",
    conda:
        "../envs/analyze.yaml"
    script:
        "../workflow_scripts/table2_st.py"


ALL_TARGETS.extend([
    f"{TABLES}/noise_reference.csv",
    f"{TABLES}/mutual_information.csv",
    f"{TABLES}/mutual_information_summary.csv",
    f"{TABLES}/radial_split.csv",
    f"{TABLES}/table1_eps.csv",
    f"{TABLES}/table2_st.csv",
])


# Figures. Each rule's params carry the `figures` section, plus what the figure itself
# depends on (the rescaling range for Fig. 8, the radial bins for Fig. 5).

if not missing_variants("fig2"):
    rule fig2:
        input:
            predictions_file("raw", FIRST_SEED),
        output:
            figure_output("fig2"),
        params:
            figures=config["figures"],
        benchmark:
            f"{RUN}/benchmarks/fig2/fig2.tsv",
        log:
            f"{LOGS}/fig2/fig2.log",
        conda:
            "../envs/analyze.yaml"
        script:
            "../workflow_scripts/fig2.py"

if not missing_variants("fig3"):
    rule fig3:
        input:
            raw=expand(predictions_file("raw", "{seed}"), seed=SEEDS),
            averaged=expand(predictions_file("averaged", "{seed}"), seed=SEEDS),
        output:
            figure_output("fig3"),
        params:
            figures=config["figures"],
        benchmark:
            f"{RUN}/benchmarks/fig3/fig3.tsv",
        log:
            f"{LOGS}/fig3/fig3.log",
        conda:
            "../envs/analyze.yaml"
        script:
            "../workflow_scripts/fig3.py"

rule fig4:
    input:
        mi=f"{TABLES}/mutual_information.csv",
        noise=f"{TABLES}/noise_reference.csv",
    output:
        figure_output("fig4"),
    params:
        figures=config["figures"],
    benchmark:
        f"{RUN}/benchmarks/fig4/fig4.tsv",
    log:
        f"{LOGS}/fig4/fig4.log",
    conda:
        "../envs/analyze.yaml"
    script:
        "../workflow_scripts/fig4.py"

if not missing_variants("fig5"):
    rule fig5:
        input:
            predictions=[predictions_file(variant, FIRST_SEED) for variant in ANALYTIC_VARIANTS],
            mi=[mi_file(variant, FIRST_SEED) for variant in ANALYTIC_VARIANTS],
        output:
            figure_output("fig5"),
        params:
            figures=config["figures"],
            variants=ANALYTIC_VARIANTS,
            radial_edges=config["analysis"]["radial_edges"],
        benchmark:
            f"{RUN}/benchmarks/fig5/fig5.tsv",
        log:
            f"{LOGS}/fig5/fig5.log",
        conda:
            "../envs/analyze.yaml"
        script:
            "../workflow_scripts/fig5.py"

if not missing_variants("fig6"):
    rule fig6:
        input:
            predictions_file("z0", FIRST_SEED),
        output:
            figure_output("fig6"),
        params:
            figures=config["figures"],
        benchmark:
            f"{RUN}/benchmarks/fig6/fig6.tsv",
        log:
            f"{LOGS}/fig6/fig6.log",
        conda:
            "../envs/analyze.yaml"
        script:
            "../workflow_scripts/fig6.py"

if not missing_variants("fig7"):
    rule fig7:
        input:
            density=predictions_file("raw", FIRST_SEED),
            potential=predictions_file("potential", FIRST_SEED),
        output:
            figure_output("fig7"),
        params:
            figures=config["figures"],
        benchmark:
            f"{RUN}/benchmarks/fig7/fig7.tsv",
        log:
            f"{LOGS}/fig7/fig7.log",
        conda:
            "../envs/analyze.yaml"
        script:
            "../workflow_scripts/fig7.py"

if not missing_variants("fig8"):
    rule fig8:
        input:
            predictions=predictions_file("raw", FIRST_SEED),
            summary=model_file("raw", FIRST_SEED, "summary.json"),
        output:
            figure_output("fig8"),
        params:
            figures=config["figures"],
            log_mass_min=config["selection"]["log_mass_min"],
            log_mass_max=config["selection"]["log_mass_max"],
        benchmark:
            f"{RUN}/benchmarks/fig8/fig8.tsv",
        log:
            f"{LOGS}/fig8/fig8.log",
        conda:
            "../envs/analyze.yaml"
        script:
            "../workflow_scripts/fig8.py"

if not missing_variants("fig9"):
    rule fig9:
        input:
            history=model_file("raw", FIRST_SEED, "history.csv"),
            summary=model_file("raw", FIRST_SEED, "summary.json"),
        output:
            figure_output("fig9"),
        params:
            figures=config["figures"],
        benchmark:
            f"{RUN}/benchmarks/fig9/fig9.tsv",
        log:
            f"{LOGS}/fig9/fig9.log",
        conda:
            "../envs/analyze.yaml"
        script:
            "../workflow_scripts/fig9.py"

if not missing_variants("fig10"):
    rule fig10:
        input:
            cnn=predictions_file("raw", FIRST_SEED),
            analytic=f"{RUN}/analytic/predictions.csv",
        output:
            figure_output("fig10"),
        params:
            figures=config["figures"],
        benchmark:
            f"{RUN}/benchmarks/fig10/fig10.tsv",
        log:
            f"{LOGS}/fig10/fig10.log",
        conda:
            "../envs/analyze.yaml"
        script:
            "../workflow_scripts/fig10.py"

# A figure the configuration cannot draw keeps its rule name, so `snakemake fig7` stops with
# the message of reject_figure instead of "no rule fig7".
for _figure in FIGURE_VARIANTS:
    if missing_variants(_figure):
        rule:
            name: _figure
            input: reject_figure(_figure)
            run: pass

ALL_TARGETS.extend(
    f"{FIGURES}/{figure}.{FIGURE_FORMAT}" for figure in FIGURE_VARIANTS if not missing_variants(figure))
