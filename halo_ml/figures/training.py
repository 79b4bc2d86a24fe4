"""Figures of the training itself: the Cauchy likelihood (Fig. 8) and the loss curves (Fig. 9)."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from halo_ml.figures._common import FigureInputError, read_json, read_predictions, save_figure

HISTORY_COLUMNS = ["epoch", "train_loss", "validation_loss", "gamma", "learning_rate", "epoch_seconds"]


def truncated_cauchy_pdf(d, y, gamma):
    """Return the Cauchy density of ``d`` centred on ``y`` with scale ``gamma``, truncated to [-1, 1].

    This is the likelihood of the training loss: exp(-loss) of one sample, normalised on
    d in [-1, 1].
    """
    d, y = np.asarray(d, dtype=float), np.asarray(y, dtype=float)
    norm = (np.arctan((1.0 - y) / gamma) - np.arctan((-1.0 - y) / gamma)) / np.pi
    density = 1.0 / (np.pi * gamma * (1.0 + ((d - y) / gamma) ** 2)) / norm
    return np.where(np.abs(d) <= 1.0, density, 0.0)


def fig8(predictions_path, summary_path, output, settings, log_mass_min, log_mass_max, n_slices=4):
    """Fig. 8: empirical distribution of the rescaled truth d in slices of the prediction y.

    d and y are the true and predicted log masses rescaled from [log_mass_min, log_mass_max]
    to [-1, 1], as in training. The curve in each slice is the truncated Cauchy likelihood with
    gamma from ``summary.json`` (the value at the early-stopping epoch), averaged over the y
    of the particles in the slice.

    Parameters
    ----------
    predictions_path : path-like
        Predictions CSV of one model.
    summary_path : path-like
        ``summary.json`` of the same model (key ``gamma``).
    log_mass_min, log_mass_max : float
        The training rescaling range, log10(M / Msun) (``selection`` section).
    """
    # NOTE: Lucie-Smith et al. (2024) draw this figure for training particles. The workflow
    # predicts only the test split, so the histograms here are of test particles.
    frame = read_predictions(predictions_path)
    summary = read_json(summary_path)
    if "gamma" not in summary:
        raise FigureInputError(f"model summary {summary_path} has no 'gamma'; retrain with the current halo-ml")
    gamma = float(summary["gamma"])
    scale = 2.0 / (log_mass_max - log_mass_min)
    d = (frame["log_mass_true"].to_numpy() - log_mass_min) * scale - 1.0
    y = (frame["log_mass_pred"].to_numpy() - log_mass_min) * scale - 1.0

    slice_edges = np.quantile(y, np.linspace(0.0, 1.0, n_slices + 1))
    grid = np.linspace(-1.0, 1.0, 201)
    figure, axes = plt.subplots(1, n_slices, figsize=(3.3 * n_slices, 3.3), sharey=True)
    for s, axis in enumerate(axes):
        in_slice = (y >= slice_edges[s]) & (y <= slice_edges[s + 1])
        axis.hist(d[in_slice], bins=np.linspace(-1, 1, 26), density=True, color="0.7", label="empirical")
        model = truncated_cauchy_pdf(grid[:, None], y[in_slice][None, :], gamma).mean(axis=1)
        axis.plot(grid, model, "k", label=f"Cauchy, gamma = {gamma:.3f}")
        axis.set_title(f"{slice_edges[s]:.2f} <= y <= {slice_edges[s + 1]:.2f}", fontsize="small")
        axis.set_xlabel("d (rescaled true log mass)")
    axes[0].set_ylabel("p(d | y)")
    axes[0].legend(fontsize="small")
    return save_figure(figure, output, settings, [predictions_path, summary_path],
                       "Fig. 8: Cauchy likelihood vs empirical distribution of d")


def fig9(history_path, summary_path, output, settings):
    """Fig. 9: training and validation loss, and gamma, per epoch, with the early-stopping epoch."""
    history = pd.read_csv(history_path)
    missing = [column for column in HISTORY_COLUMNS if column not in history.columns]
    if missing:
        raise FigureInputError(f"training history {history_path} lacks column(s) {missing}")
    summary = read_json(summary_path)

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(5.5, 5.5), sharex=True)
    top.plot(history["epoch"], history["train_loss"], "o-", label="training")
    top.plot(history["epoch"], history["validation_loss"], "o-", label="validation")
    top.set_ylabel("loss")
    bottom.plot(history["epoch"], history["gamma"], "o-", color="k")
    bottom.set_ylabel(r"Cauchy scale $\gamma$")
    bottom.set_xlabel("epoch")
    if "best_epoch" in summary:
        for axis in (top, bottom):
            axis.axvline(summary["best_epoch"], color="0.6", label="early stopping")
    top.legend()
    return save_figure(figure, output, settings, [history_path, summary_path], "Fig. 9: loss and gamma per epoch")
