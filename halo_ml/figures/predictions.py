"""Figures of predicted against true halo mass: Figs. 2b, 3b, 5, 6, 7 and 10 of Lucie-Smith et al. (2024, PRD 109, 063524)."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter
from scipy.stats import gaussian_kde, pearsonr

from halo_ml.figures._common import (
    COLOURS, LABELS, MASS_LABEL_PRED, MASS_LABEL_TRUE, FigureInputError, binned_quantiles, credible_levels,
    mass_bin_edges, predictions_by_seed, read_json, read_predictions, save_figure,
)
from halo_ml.mutual_information import radial_bins

N_TRUE_BINS = 12


def fig2(predictions_path, output, settings):
    """Fig. 2b: 2D histogram of predicted vs true log mass, binned medians and 68% intervals, residuals.

    Parameters
    ----------
    predictions_path : path-like
        Predictions CSV of one raw-density model.
    output : path-like
        Figure file; its suffix sets the format.
    settings : dict
        The ``figures`` configuration section.
    """
    frame = read_predictions(predictions_path)
    truth, prediction = frame["log_mass_true"].to_numpy(), frame["log_mass_pred"].to_numpy()
    residual = prediction - truth
    edges = np.linspace(truth.min(), truth.max(), N_TRUE_BINS + 1)

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(5, 6), sharex=True, height_ratios=[3, 1])
    top.hist2d(truth, prediction, bins=40, cmap="Greys", cmin=1)
    centres, (low, median, high) = binned_quantiles(truth, prediction, edges)
    top.errorbar(centres, median, yerr=[median - low, high - median], fmt="o", color="C0",
                 label="median and 68% interval")
    limits = [min(truth.min(), prediction.min()), max(truth.max(), prediction.max())]
    top.plot(limits, limits, "k--", lw=1, label="y = x")
    top.set_ylabel(MASS_LABEL_PRED)
    top.legend(loc="upper left")

    centres, (low, median, high) = binned_quantiles(truth, residual, edges)
    bottom.errorbar(centres, median, yerr=[median - low, high - median], fmt="o", color="C0")
    bottom.axhline(0.0, color="k", ls="--", lw=1)
    bottom.set_xlabel(MASS_LABEL_TRUE)
    bottom.set_ylabel(r"$\log_{10}(M_\mathrm{pred}/M_\mathrm{true})$")
    return save_figure(figure, output, settings, [predictions_path], "Fig. 2b: predicted vs true halo mass")


def fig3(raw_paths, averaged_paths, output, settings):
    """Fig. 3b: residual histograms in three true-mass bins; bands span the seeds; raw vs averaged.

    Parameters
    ----------
    raw_paths, averaged_paths : list of path-like
        Predictions CSVs, one per training seed, of the raw- and averaged-density models.
    """
    models = {"raw": predictions_by_seed(raw_paths), "averaged": predictions_by_seed(averaged_paths)}
    all_truth = np.concatenate([frame["log_mass_true"] for frames in models.values() for frame in frames])
    edges = mass_bin_edges(settings, all_truth)
    residual_bins = np.linspace(-3.0, 3.0, 41)
    centres = 0.5 * (residual_bins[:-1] + residual_bins[1:])

    figure, axes = plt.subplots(1, len(edges) - 1, figsize=(4 * (len(edges) - 1), 3.5), sharey=True)
    for b, axis in enumerate(np.atleast_1d(axes)):
        for variant, frames in models.items():
            densities = []
            for frame in frames:
                selected = frame[(frame["log_mass_true"] >= edges[b]) & (frame["log_mass_true"] <= edges[b + 1])]
                residual = selected["log_mass_pred"] - selected["log_mass_true"]
                densities.append(np.histogram(residual, bins=residual_bins, density=True)[0]
                                 if len(selected) else np.zeros(centres.size))
            densities = np.array(densities)
            axis.fill_between(centres, densities.min(axis=0), densities.max(axis=0), step="mid",
                              color=COLOURS[variant], alpha=0.35)
            axis.step(centres, densities.mean(axis=0), where="mid", color=COLOURS[variant],
                      label=f"{LABELS[variant]} ({len(frames)} seeds)")
        axis.axvline(0.0, color="k", lw=0.8)
        axis.set_title(f"{edges[b]:.1f} <= log M_true <= {edges[b + 1]:.1f}")
        axis.set_xlabel(r"$\log_{10}(M_\mathrm{pred}/M_\mathrm{true})$")
    np.atleast_1d(axes)[0].set_ylabel("probability density")
    np.atleast_1d(axes)[0].legend(loc="upper left", fontsize="small")
    return save_figure(figure, output, settings, [*raw_paths, *averaged_paths],
                       "Fig. 3b: residuals of raw vs averaged density models in mass bins")


def fig5(predictions_paths, mi_paths, output, settings, radial_edges):
    """Fig. 5: predicted vs true mass split by r/r200m, with the MI of each model in the legend.

    Parameters
    ----------
    predictions_paths : dict
        Variant to the predictions CSV of one seed (raw, and averaged when trained).
    mi_paths : dict
        Variant to the matching ``mi/<variant>/seed<k>.json``.
    radial_edges : list of float
        The ``analysis.radial_edges`` used for the MI.
    """
    bins = radial_bins(radial_edges)
    frames = {variant: read_predictions(path) for variant, path in predictions_paths.items()}
    records = {variant: read_json(path) for variant, path in mi_paths.items()}
    truth_all = np.concatenate([frame["log_mass_true"] for frame in frames.values()])
    edges = np.linspace(truth_all.min(), truth_all.max(), 9)

    figure, axes = plt.subplots(1, len(bins), figsize=(4.2 * len(bins), 4), sharey=True)
    for b, (axis, (label, r_min, r_max)) in enumerate(zip(axes, bins)):
        for offset, (variant, frame) in enumerate(frames.items()):
            selected = frame[(frame["r_over_r200m"] > r_min) & (frame["r_over_r200m"] <= r_max)]
            centres, (low, median, high) = binned_quantiles(selected["log_mass_true"], selected["log_mass_pred"], edges)
            row = records[variant]["radial"][b]
            mi_text = "MI n/a" if row["mi"] is None else f"MI = {row['mi']:.3f} ± {row['mi_err']:.3f}"
            axis.errorbar(centres + 0.03 * offset, median, yerr=[median - low, high - median], fmt="o",
                          color=COLOURS[variant], label=f"{LABELS[variant]}: {mi_text}")
        axis.plot(edges[[0, -1]], edges[[0, -1]], "k--", lw=1)
        axis.set_title(label)
        axis.set_xlabel(MASS_LABEL_TRUE)
        axis.legend(loc="upper left", fontsize="small")
    axes[0].set_ylabel(MASS_LABEL_PRED)
    return save_figure(figure, output, settings, [*predictions_paths.values(), *mi_paths.values()],
                       "Fig. 5: predictions split by radial position in the halo")


def fig6(predictions_path, output, settings):
    """Fig. 6: violins of the z=0 model's predictions in bins of true mass, and Pearson r."""
    frame = read_predictions(predictions_path)
    truth, prediction = frame["log_mass_true"].to_numpy(), frame["log_mass_pred"].to_numpy()
    edges = np.linspace(truth.min(), truth.max(), 9)
    index = np.clip(np.digitize(truth, edges[1:-1]), 0, len(edges) - 2)
    centres = 0.5 * (edges[:-1] + edges[1:])
    groups = [(centre, prediction[index == b]) for b, centre in enumerate(centres) if np.sum(index == b) > 1]

    figure, axis = plt.subplots(figsize=(5.5, 4.5))
    parts = axis.violinplot([values for _, values in groups], positions=[c for c, _ in groups],
                            widths=0.8 * (edges[1] - edges[0]), showmedians=True, showextrema=False)
    for body in parts["bodies"]:
        body.set_facecolor(COLOURS["z0"])
    axis.plot(edges[[0, -1]], edges[[0, -1]], "k--", lw=1)
    r_value = pearsonr(truth, prediction).statistic
    axis.set_title(f"z=0 density model: r = {r_value:.3f}")
    axis.set_xlabel(MASS_LABEL_TRUE)
    axis.set_ylabel(MASS_LABEL_PRED)
    return save_figure(figure, output, settings, [predictions_path], "Fig. 6: z=0 density model predictions")


def fig7(density_path, potential_path, output, settings):
    """Fig. 7: kernel density estimates of the predictions per true-mass bin, density vs potential."""
    frames = {"raw": read_predictions(density_path), "potential": read_predictions(potential_path)}
    edges = mass_bin_edges(settings, frames["raw"]["log_mass_true"], n_bins=4)
    grid = np.linspace(min(f["log_mass_pred"].min() for f in frames.values()) - 0.3,
                       max(f["log_mass_pred"].max() for f in frames.values()) + 0.3, 200)

    figure, axes = plt.subplots(1, len(edges) - 1, figsize=(3.5 * (len(edges) - 1), 3.5), sharey=True)
    for b, axis in enumerate(np.atleast_1d(axes)):
        for variant, frame in frames.items():
            selected = frame[(frame["log_mass_true"] >= edges[b]) & (frame["log_mass_true"] <= edges[b + 1])]
            if len(selected) < 3 or selected["log_mass_pred"].nunique() < 2:
                continue
            density = gaussian_kde(selected["log_mass_pred"])(grid)
            axis.plot(grid, density, color=COLOURS[variant], label=LABELS[variant])
        axis.axvspan(edges[b], edges[b + 1], color="0.9")
        axis.set_title(f"{edges[b]:.1f} <= log M_true <= {edges[b + 1]:.1f}", fontsize="small")
        axis.set_xlabel(MASS_LABEL_PRED)
    np.atleast_1d(axes)[0].set_ylabel("probability density")
    np.atleast_1d(axes)[0].legend(fontsize="small")
    return save_figure(figure, output, settings, [density_path, potential_path],
                       "Fig. 7: density vs potential model predictions")


def fig10(cnn_path, analytic_path, output, settings):
    """Fig. 10: CNN, Sheth-Tormen and EPS predictions vs truth with 68% and 95% contours.

    Parameters
    ----------
    cnn_path : path-like
        Predictions CSV of one raw-density model.
    analytic_path : path-like
        ``analytic/predictions.csv`` (columns log_mass_true, log_mass_eps, log_mass_st).
    """
    cnn = read_predictions(cnn_path)
    analytic = pd.read_csv(analytic_path)
    missing = {"log_mass_true", "log_mass_eps", "log_mass_st"} - set(analytic.columns)
    if missing:
        raise FigureInputError(f"analytic predictions {analytic_path} lack column(s) {sorted(missing)}")
    panels = [("CNN (raw density)", cnn["log_mass_true"], cnn["log_mass_pred"]),
              ("Sheth-Tormen", analytic["log_mass_true"], analytic["log_mass_st"]),
              ("extended Press-Schechter", analytic["log_mass_true"], analytic["log_mass_eps"])]

    figure, axes = plt.subplots(1, 3, figsize=(13, 4.2), sharex=True, sharey=True)
    for axis, (title, truth, prediction) in zip(axes, panels):
        valid = np.isfinite(prediction)
        truth, prediction = np.asarray(truth)[valid], np.asarray(prediction)[valid]
        axis.set_title(f"{title}\n{valid.sum()} of {valid.size} particles predicted")
        axis.set_xlabel(MASS_LABEL_TRUE)
        if truth.size < 2:
            continue
        counts, x_edges, y_edges = np.histogram2d(truth, prediction, bins=30)
        axis.pcolormesh(x_edges, y_edges, np.where(counts > 0, counts, np.nan).T, cmap="Greys")
        # Contours of the raw counts trace the noise of single particles. Smoothing by one bin
        # gives the joint density whose 68% and 95% regions the contours outline.
        smoothed = gaussian_filter(counts, 1.0)
        level_95, level_68 = credible_levels(smoothed, [0.95, 0.68])
        if level_95 < level_68:
            centres_x, centres_y = 0.5 * (x_edges[1:] + x_edges[:-1]), 0.5 * (y_edges[1:] + y_edges[:-1])
            axis.contour(centres_x, centres_y, smoothed.T, levels=[level_95, level_68], colors=["C3", "C0"])
        axis.plot([truth.min(), truth.max()], [truth.min(), truth.max()], "k--", lw=1)
    axes[0].set_ylabel(MASS_LABEL_PRED)
    axes[0].plot([], [], color="C0", label="68%")
    axes[0].plot([], [], color="C3", label="95%")
    axes[0].legend(loc="upper left", fontsize="small")
    return save_figure(figure, output, settings, [cnn_path, analytic_path],
                       "Fig. 10: CNN vs Sheth-Tormen vs extended Press-Schechter")
