"""Fig. 4: mutual information of each model against the truth-plus-noise reference lines."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from halo_ml.figures._common import COLOURS, LABELS, FigureInputError, save_figure


def fig4(mi_table_path, noise_table_path, output, settings):
    """Fig. 4: MI per model (each seed, and the mean over seeds) with horizontal noise lines.

    Parameters
    ----------
    mi_table_path : path-like
        ``tables/mutual_information.csv`` (variant, seed, mi, mi_err, n).
    noise_table_path : path-like
        ``tables/noise_reference.csv`` (noise_dex, mi, mi_err, n).
    """
    table = pd.read_csv(mi_table_path)
    noise = pd.read_csv(noise_table_path)
    for path, frame, columns in [(mi_table_path, table, ["variant", "seed", "mi", "mi_err"]),
                                 (noise_table_path, noise, ["noise_dex", "mi"])]:
        missing = [column for column in columns if column not in frame.columns]
        if missing:
            raise FigureInputError(f"table {path} lacks column(s) {missing}")

    variants = list(dict.fromkeys(table["variant"]))
    figure, axis = plt.subplots(figsize=(1.6 * len(variants) + 3, 4))
    for row in noise.itertuples():
        axis.axhline(row.mi, color="0.6", ls="--", lw=1)
        axis.text(len(variants) - 0.45, row.mi, f"{row.noise_dex:g} dex", va="bottom", ha="right",
                  color="0.4", fontsize="small")
    for position, variant in enumerate(variants):
        rows = table[table["variant"] == variant]
        spread = np.linspace(-0.15, 0.15, len(rows)) if len(rows) > 1 else np.zeros(1)
        axis.errorbar(position + spread, rows["mi"], yerr=rows["mi_err"], fmt="o", ms=4,
                      color=COLOURS.get(variant, "k"), alpha=0.6)
        axis.errorbar(position + 0.3, rows["mi"].mean(), yerr=rows["mi"].std(ddof=1) if len(rows) > 1 else 0.0,
                      fmt="s", color=COLOURS.get(variant, "k"))
    axis.set_xticks(range(len(variants)), [LABELS.get(variant, variant) for variant in variants])
    axis.set_xlim(-0.6, len(variants) - 0.4)
    axis.set_ylabel(r"$I(M_\mathrm{pred}, M_\mathrm{true})$ [nats]")
    axis.set_title("circles: seeds (bootstrap errors); squares: mean and spread over seeds", fontsize="small")
    return save_figure(figure, output, settings, [mi_table_path, noise_table_path],
                       "Fig. 4: mutual information per model with noise reference lines")
