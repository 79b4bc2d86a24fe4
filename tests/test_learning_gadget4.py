"""On the real GADGET-4 sample, the raw-density CNN learns more than a constant predictor.

The model trains on particles of L20_N64_s1 and is validated on the independent realisation
L20_N64_s2. The benchmark is the best constant prediction: the constant c and Cauchy scale gamma
that minimise the truncated-Cauchy likelihood on the training labels, scored on the validation
labels with the same likelihood. Both scores leave out the weight priors, which a constant has
none of.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.optimize import minimize

from halo_ml.ingest import ingest_simulation
from halo_ml.loss import CauchySelectionLoss
from halo_ml.prediction import predict_split
from halo_ml.selection import select_particles
from halo_ml.training import rescale_log_mass, train_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gadget4"
SELECTION = {"log_mass_min": 11.0, "log_mass_max": 13.4, "n_train": 3000, "n_validation": 1000,
             "n_test": 500, "seed": 0}
INPUTS = {"cube_voxels": 13}
MODEL = {"conv_channels": [4, 4, 8, 16, 16, 16], "dense_units": [32, 16], "leaky_relu_slope": 0.03}
TRAINING = {"learning_rate": 1e-3, "batch_size": 64, "max_epochs": 6, "patience": 3,
            "log10_alpha": {"raw": -4.0}, "initial_gamma": 0.2, "device": "cpu", "bf16": False,
            "checkpoint_minutes": 10.0, "deterministic": True}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DATA.exists(), reason=f"GADGET-4 sample data not found at {DATA}"),
]


def cauchy_likelihood(prediction, target, gamma):
    """Mean truncated-Cauchy negative log-likelihood of rescaled targets (no priors)."""
    loss = CauchySelectionLoss(initial_gamma=gamma).double()
    with torch.no_grad():
        return float(loss(torch.as_tensor(prediction, dtype=torch.float64),
                          torch.as_tensor(target, dtype=torch.float64)))


def best_constant(target):
    """Return (c, gamma) of the constant prediction that best fits ``target``."""
    def objective(parameters):
        constant, log_gamma = parameters
        return cauchy_likelihood(np.full_like(target, constant), target, float(np.exp(log_gamma)))

    result = minimize(objective, x0=[float(np.median(target)), np.log(0.3)], method="Nelder-Mead")
    return result.x[0], float(np.exp(result.x[1]))


def test_raw_model_beats_constant_predictor(tmp_path):
    stores = {}
    for name in ("L20_N64_s1", "L20_N64_s2"):
        run = DATA / name
        stores[name] = tmp_path / f"{name}.zarr"
        ingest_simulation(run / "snapshot_000.hdf5", run / "snapshot_001.hdf5", None, stores[name],
                          {"sph_neighbours": 32, "threads": 2, "chunk_voxels": 32})

    samples = {split: tmp_path / f"{split}.csv" for split in ("train", "validation", "test")}
    simulations = {"train": ["L20_N64_s1"], "validation": ["L20_N64_s2"], "test": ["L20_N64_s2"]}
    select_particles(simulations, stores, SELECTION, samples)

    model_folder = tmp_path / "model"
    model_folder.mkdir()
    train_model("raw", 0, samples["train"], samples["validation"], stores, model_settings=MODEL,
                training_settings=TRAINING, input_settings=INPUTS, selection_settings=SELECTION,
                model_path=model_folder / "model.pt", history_path=model_folder / "history.csv",
                summary_path=model_folder / "summary.json", threads=2)
    gamma = json.loads((model_folder / "summary.json").read_text())["gamma"]

    predictions = tmp_path / "validation_predictions.csv"
    predict_split(model_folder / "model.pt", samples["validation"], stores, predictions,
                  input_settings=INPUTS, device="cpu", split="validation")
    table = pd.read_csv(predictions)
    scale = (SELECTION["log_mass_min"], SELECTION["log_mass_max"])
    target = rescale_log_mass(table["log_mass_true"].to_numpy(), *scale)
    prediction = rescale_log_mass(table["log_mass_pred"].to_numpy(), *scale)
    model_loss = cauchy_likelihood(prediction, target, gamma)

    training_target = rescale_log_mass(pd.read_csv(samples["train"])["log_mass"].to_numpy(), *scale)
    constant, constant_gamma = best_constant(training_target)
    constant_loss = cauchy_likelihood(np.full_like(target, constant), target, constant_gamma)

    assert np.isfinite(model_loss)
    assert model_loss < constant_loss, (
        f"validation likelihood of the raw model {model_loss:.4f} is not below that of the best "
        f"constant {constant:.3f} (gamma {constant_gamma:.3f}): {constant_loss:.4f}")
