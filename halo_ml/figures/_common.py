"""Helpers shared by the figure functions: reading inputs, binned statistics, saving with provenance."""

import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from halo_ml.mutual_information import read_predictions  # noqa: E402,F401  (re-exported)
from halo_ml.provenance import provenance  # noqa: E402

LABELS = {"raw": "raw density", "averaged": "averaged density", "potential": "potential", "z0": "z=0 density"}
COLOURS = {"raw": "C0", "averaged": "C1", "potential": "C2", "z0": "C3", "eps": "C4", "st": "C5"}
MASS_LABEL_TRUE = r"$\log_{10}(M_\mathrm{true}/M_\odot)$"
MASS_LABEL_PRED = r"$\log_{10}(M_\mathrm{pred}/M_\odot)$"


class FigureInputError(ValueError):
    """A figure's input file is missing or malformed; the message names the file and the fix."""


def read_json(path):
    """Read a JSON file, raising :class:`FigureInputError` when it is missing."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FigureInputError(f"figure input {path} not found; build it with snakemake first") from None


def mass_bin_edges(settings, log_mass_true, n_bins=3):
    """Return the true-mass bin edges: ``settings['mass_bin_edges']`` or equal-width bins over the data."""
    edges = settings.get("mass_bin_edges")
    if edges:
        return np.asarray(edges, dtype=float)
    return np.linspace(np.min(log_mass_true), np.max(log_mass_true), n_bins + 1)


def binned_quantiles(x, y, edges, quantiles=(0.16, 0.5, 0.84)):
    """Return bin centres and the given quantiles of ``y`` in bins of ``x`` (NaN in empty bins)."""
    x, y = np.asarray(x), np.asarray(y)
    index = np.digitize(x, edges[1:-1])
    values = np.full((len(quantiles), len(edges) - 1), np.nan)
    for b in range(len(edges) - 1):
        in_bin = y[index == b]
        if in_bin.size:
            values[:, b] = np.quantile(in_bin, quantiles)
    return 0.5 * (edges[:-1] + edges[1:]), values


def credible_levels(density, fractions):
    """Return the density thresholds whose upper sets hold the given fractions of the total.

    For a 2D histogram, the region where ``density >= level`` contains ``fraction`` of the
    probability: the contour levels of the 68% and 95% highest-density regions.
    """
    flat = np.sort(np.ravel(density))[::-1]
    cumulative = np.cumsum(flat) / flat.sum()
    return [flat[min(np.searchsorted(cumulative, fraction), flat.size - 1)] for fraction in fractions]


def save_figure(figure, output, settings, inputs, description):
    """Save ``figure`` atomically with its provenance in the file's metadata, then close it.

    PNG files carry the provenance JSON in a text chunk named ``halo-ml provenance``; PDF files
    in the ``Subject`` entry; SVG files in the ``Description`` entry.
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    record = provenance(inputs=[item for item in inputs if Path(item).exists()], parameters=settings)
    record["figure"] = description
    text = json.dumps(record, sort_keys=True)
    suffix = output.suffix.lstrip(".").lower()
    metadata = {"png": {"halo-ml provenance": text}, "pdf": {"Subject": text}, "svg": {"Description": text}}
    if suffix not in metadata:
        raise FigureInputError(f"figure output {output} has format '{suffix}'; use png, pdf or svg")

    temporary = output.with_name(f".{output.stem}.tmp.{suffix}")
    figure.savefig(temporary, dpi=settings.get("dpi", 150), format=suffix, metadata=metadata[suffix],
                   bbox_inches="tight")
    plt.close(figure)
    os.replace(temporary, output)
    return record


def predictions_by_seed(paths):
    """Read several predictions CSVs (one per seed) into a list of DataFrames."""
    return [read_predictions(path) for path in paths]

