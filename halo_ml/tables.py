"""Tables of the analysis: MI per model, the radial split, and the comparison with EPS and ST.

Each table is a CSV under ``results/<run>/tables/`` with a ``<file>.provenance.json`` beside it.
MI values are in nats; ``mi_err`` is the bootstrap standard deviation of one estimate and
``mi_seed_std`` the standard deviation over training seeds.
"""

import json
import logging

import numpy as np
import pandas as pd

from halo_ml.logs import log_duration
from halo_ml.mutual_information import (
    MutualInformationError, mi_of_predictions, read_predictions, summarise_seeds, write_csv_atomic,
)
from halo_ml.provenance import provenance

logger = logging.getLogger(__name__)

ANALYTIC_MODELS = {"eps": "extended Press-Schechter", "st": "Sheth-Tormen"}


def gather_mutual_information(mi_paths, output, summary_output):
    """Collect ``mi/<variant>/seed<k>.json`` into the per-seed and per-variant MI tables.

    Parameters
    ----------
    mi_paths : list of path-like
    output : path-like
        ``tables/mutual_information.csv``: variant, seed, mi, mi_err, n.
    summary_output : path-like
        ``tables/mutual_information_summary.csv``: variant, n_seeds, mi_mean, mi_seed_std (only
        with two or more seeds), mi_err_mean.
    """
    records = [_read_record(path) for path in mi_paths]
    table = pd.DataFrame([{key: record[key] for key in ("variant", "seed", "mi", "mi_err", "n")} for record in records])
    record = provenance(inputs=mi_paths)
    write_csv_atomic(table, output, record)
    write_csv_atomic(_drop_empty_spread(summarise_seeds(table)), summary_output, record)


def gather_radial_split(mi_paths, output):
    """Collect the r/r200m bins of every ``mi/<variant>/seed<k>.json`` into ``tables/radial_split.csv``.

    Columns: variant, seed, bin (its label, such as "0.3 < r/r200m <= 0.6"), mi, mi_err, n. A bin
    whose MI file has no estimate (too few particles) is left out.
    """
    rows = []
    for path in mi_paths:
        record = _read_record(path)
        for row in record["radial"]:
            if row["mi"] is None:
                logger.warning("%s: bin '%s' has no MI estimate (%d particles); left out of the table",
                               path, row["bin"], row["n"])
                continue
            rows.append({"variant": record["variant"], "seed": record["seed"],
                         **{key: row[key] for key in ("bin", "mi", "mi_err", "n")}})
    write_csv_atomic(pd.DataFrame(rows), output, provenance(inputs=mi_paths))


def analytic_comparison(analytic_path, analytic_summary_path, predictions, model, output, analysis):
    """Write Table I (``model="eps"``) or Table II (``model="st"``).

    The MI of every CNN variant and of the analytic model, on the test particles that the
    analytic model gives a mass (the others never cross its barrier).

    Parameters
    ----------
    analytic_path : path-like
        ``analytic/predictions.csv``.
    analytic_summary_path : path-like
        ``analytic/summary.json`` (no-crossing fractions).
    predictions : dict
        Variant to the list of its predictions CSVs, one per seed.
    model : {"eps", "st"}
    output : path-like
        CSV with one row per model: model, n_seeds, mi, mi_err, mi_seed_std (only with two or more
        seeds), n, fraction_no_crossing.
    analysis : dict
        The ``analysis`` section (``n_bootstrap``, ``seed``).
    """
    if model not in ANALYTIC_MODELS:
        raise MutualInformationError(f"analytic model is {model!r}; use one of {sorted(ANALYTIC_MODELS)}")
    analytic = pd.read_csv(analytic_path)
    column = f"log_mass_{model}"
    if column not in analytic.columns:
        raise MutualInformationError(f"analytic predictions {analytic_path} lack the column '{column}'")
    summary = json.loads(open(analytic_summary_path).read())
    crossed = analytic[np.isfinite(analytic[column])]
    keys = ["simulation", "voxel"]
    n_bootstrap, seed = analysis["n_bootstrap"], analysis.get("seed", 0)

    rows = []
    for variant, paths in predictions.items():
        per_seed = []
        for path in paths:
            frame = read_predictions(path).merge(crossed[keys], on=keys, how="inner")
            if len(frame) < len(crossed):
                logger.warning("%s has %d of the %d particles with a %s prediction", path, len(frame),
                               len(crossed), model.upper())
            with log_duration(logger, f"MI of {variant} ({path}) on the {model.upper()} subset"):
                per_seed.append(mi_of_predictions(frame["log_mass_true"], frame["log_mass_pred"], n_bootstrap, seed))
        rows.append(_combine(variant, per_seed))
    with log_duration(logger, f"MI of {model.upper()}"):
        result = mi_of_predictions(crossed["log_mass_true"], crossed[column], n_bootstrap, seed)
    rows.append(_combine(model, [result]))

    table = _drop_empty_spread(pd.DataFrame(rows))
    table["fraction_no_crossing"] = summary[f"fraction_no_crossing_{model}"]
    inputs = [analytic_path, analytic_summary_path, *[path for paths in predictions.values() for path in paths]]
    write_csv_atomic(table, output, provenance(inputs=inputs, parameters=analysis))
    return table


def _drop_empty_spread(table):
    # With one training seed there is no spread over seeds. Leaving the column out makes that
    # plainer than a column of NaN.
    if table["mi_seed_std"].isna().all():
        return table.drop(columns="mi_seed_std")
    return table


def _combine(name, results):
    values = np.array([result["mi"] for result in results])
    return {
        "model": name,
        "n_seeds": len(results),
        "mi": float(values.mean()),
        "mi_err": float(np.mean([result["mi_err"] for result in results])),
        "mi_seed_std": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
        "n": int(results[0]["n"]),
    }


def _read_record(path):
    try:
        with open(path) as stream:
            return json.load(stream)
    except FileNotFoundError:
        raise MutualInformationError(f"MI file {path} not found; run the mutual_information rule first") from None
