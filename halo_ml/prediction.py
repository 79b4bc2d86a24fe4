"""Halo-mass predictions of a trained model for one split.

Reads ``model.pt`` as written by :mod:`halo_ml.training` (weights, input standardisation,
label range, model settings) and writes the predictions table: columns ``simulation, voxel,
log_mass_true, log_mass_pred, r_over_r200m`` (log masses in log10 Msun), with
``<table>.provenance.json`` beside it.
"""

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from halo_ml.logs import log_duration
from halo_ml.model import HaloCNN
from halo_ml.provenance import provenance, write_provenance
from halo_ml.training import (
    MODEL_FORMAT, TrainingDataError, check_finite_cubes, provenance_inputs, resolve_device,
    unscale_prediction,
)

logger = logging.getLogger(__name__)

PREDICTION_COLUMNS = ["simulation", "voxel", "log_mass_true", "log_mass_pred", "r_over_r200m"]


class ModelFileError(ValueError):
    """A model file that is missing, unreadable or not written by halo-ml's training."""


def load_trained_model(path, device):
    """Load ``model.pt`` onto ``device``; return the network in eval mode and the file's record."""
    path = Path(path)
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelFileError(f"model file {path} not found; run the train rule first") from None
    except (RuntimeError, EOFError, OSError) as error:
        raise ModelFileError(f"model file {path} cannot be read ({error}); delete it and retrain") from None
    if not isinstance(record, dict) or record.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{path} is not a halo-ml model file (no '{MODEL_FORMAT}' format tag); "
                             "retrain to produce one")
    model = HaloCNN(**record["model_settings"])
    model.load_state_dict(record["state_dict"])
    model.to(device)
    model.eval()
    return model, record


def predict_log_mass(model, record, source, samples, split, batch_size=256, bf16=False):
    """Return the predicted log10(M/Msun) of every cube of ``source`` as a float64 array.

    Raises :class:`TrainingDataError` naming the sample when a cube contains NaN or infinite values.
    """
    device = next(model.parameters()).device
    mean, std = record["input_mean"], record["input_std"]
    predictions = np.empty(len(source), dtype=np.float64)
    batches = [torch.arange(start, min(start + batch_size, len(source))) for start in range(0, len(source), batch_size)]
    with torch.no_grad():
        for indices in tqdm(batches, desc=f"predict {split}", unit="batch", mininterval=5):
            cubes = source(indices)
            check_finite_cubes(cubes, indices, samples, split)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda"):
                rescaled = model((cubes - mean) / std)
            predictions[indices.numpy()] = rescaled.float().cpu().numpy()
    return unscale_prediction(predictions, record["log_mass_min"], record["log_mass_max"])


def write_predictions(path, samples, log_mass_pred):
    """Write the predictions table atomically (temporary file, then rename)."""
    table = pd.DataFrame({
        "simulation": samples["simulation"].to_numpy(),
        "voxel": samples["voxel"].to_numpy(),
        "log_mass_true": samples["log_mass"].to_numpy(),
        "log_mass_pred": log_mass_pred,
        "r_over_r200m": samples["r_over_r200m"].to_numpy(),
    }, columns=PREDICTION_COLUMNS)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    table.to_csv(temporary, index=False)
    os.replace(temporary, path)
    return table


def predict_split(model_path, samples_path, store_paths, output_path, *, input_settings, device="auto",
                  subbox_paths=None, split="test", batch_size=256, bf16=False, threads=None):
    """Predict the halo mass of every sample of one split and write the predictions table.

    Parameters
    ----------
    model_path : path-like
        ``model.pt`` from training.
    samples_path : path-like
        Samples table of the split (``samples/<split>.csv``).
    store_paths : dict
        ``{simulation name: path of stores/<sim>.zarr}``.
    output_path : path-like
        Predictions CSV; ``<output_path>.provenance.json`` is written beside it.
    input_settings : dict
        The ``inputs`` config section, passed to the cube source.
    subbox_paths : list of path-like, optional
        z=0 sub-box chunk stores of the split (z0 variant only).
    threads : int, optional
        CPU threads for torch; None keeps torch's default.
    """
    from halo_ml.cubes import open_cube_source

    if threads:
        torch.set_num_threads(int(threads))

    device = resolve_device(device)
    model, record = load_trained_model(model_path, device)
    samples = pd.read_csv(samples_path)
    variant = record["variant"]
    cube_size = record["model_settings"]["cube_size"]
    if int(input_settings["cube_voxels"]) != cube_size:
        raise TrainingDataError(f"inputs.cube_voxels is {input_settings['cube_voxels']} but the model "
                                f"{model_path} was trained on cubes of {cube_size} voxels; retrain it")

    with log_duration(logger, f"predicting {len(samples)} '{split}' samples with {model_path}"):
        source = open_cube_source(variant, samples, store_paths, subbox_paths, input_settings, device)
        log_mass_pred = predict_log_mass(model, record, source, samples, split, batch_size, bf16)
        write_predictions(output_path, samples, log_mass_pred)

    record_inputs = provenance_inputs([model_path, samples_path], store_paths.values(), subbox_paths or [])
    write_provenance(f"{output_path}.provenance.json", provenance(
        inputs=record_inputs, seeds={"training": record["seed"]},
        parameters={"variant": variant, "split": split, "inputs": input_settings,
                    "best_epoch": record["best_epoch"], "gamma": record["gamma"]}))
    return log_mass_pred
