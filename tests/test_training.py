"""Tests of training: determinism, exact resumption, failure handling and outputs.

The cube source is an in-memory stand-in with the interface of ``halo_ml.cubes.CubeSource``,
on 9^3 cubes and a narrow network so that each training run takes seconds.
"""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from halo_ml.model import HaloCNN
from halo_ml.prediction import load_trained_model, predict_log_mass, write_predictions
from halo_ml.training import (
    HISTORY_COLUMNS, TrainingDataError, TrainingDivergedError, fit, input_statistics,
    rescale_log_mass, unscale_prediction,
)

CUBE = 9
LOG_MASS_RANGE = (11.0, 13.4)
MODEL = {"conv_channels": [2, 2, 4, 4, 4, 4], "dense_units": [8, 4], "leaky_relu_slope": 0.03}


class MemoryCubeSource:
    """Stand-in for halo_ml.cubes.CubeSource serving cubes from one tensor."""

    def __init__(self, cubes, fail_after_calls=None):
        self.cubes = cubes
        self.device = torch.device("cpu")
        self.cube_voxels = cubes.shape[-1]
        self.calls = 0
        self.fail_after_calls = fail_after_calls

    def __len__(self):
        return self.cubes.shape[0]

    def __call__(self, indices):
        self.calls += 1
        if self.fail_after_calls is not None and self.calls > self.fail_after_calls:
            raise KeyboardInterrupt("simulated kill")
        return self.cubes[torch.as_tensor(indices)]


def make_split(n, seed, name):
    """Cubes whose central density sets the log mass, so there is something to learn."""
    generator = np.random.default_rng(seed)
    log_mass = generator.uniform(*LOG_MASS_RANGE, size=n)
    cubes = generator.normal(0.0, 1.0, size=(n, 1, CUBE, CUBE, CUBE)).astype(np.float32)
    cubes[:, :, 3:6, 3:6, 3:6] += (log_mass[:, None, None, None, None] - 12.2).astype(np.float32)
    samples = pd.DataFrame({
        "simulation": name, "voxel": np.arange(n), "i": 0, "j": 0, "k": 0,
        "log_mass": log_mass.astype(np.float32), "r_over_r200m": generator.uniform(0, 1, n),
        "final_x": 0.0, "final_y": 0.0, "final_z": 0.0,
    })
    return torch.from_numpy(cubes), samples


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Train on one thread: the runs are tiny, and two threads on busy cores wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def splits():
    return make_split(96, 1, "sim_train"), make_split(32, 2, "sim_validation")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, splits):
    """Output folder of a training run with the default test settings that nothing interrupts."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    run_fit(folder, splits)
    return folder


def settings(**changes):
    values = {"learning_rate": 1e-3, "batch_size": 16, "max_epochs": 3, "patience": 5,
              "initial_gamma": 0.2, "device": "cpu", "bf16": False, "checkpoint_minutes": 10.0,
              "deterministic": True}
    values.update(changes)
    return values


def run_fit(folder, splits, training=None, train_source=None, seed=0):
    (train_cubes, train_samples), (validation_cubes, validation_samples) = splits
    folder.mkdir(parents=True, exist_ok=True)
    return fit(train_source or MemoryCubeSource(train_cubes), train_samples,
               MemoryCubeSource(validation_cubes), validation_samples,
               model_settings=MODEL, training_settings=training or settings(), alpha=1e-3,
               label_range=LOG_MASS_RANGE, seed=seed, model_path=folder / "model.pt",
               history_path=folder / "history.csv", summary_path=folder / "summary.json", variant="raw")


def model_weights(folder):
    return torch.load(folder / "model.pt", weights_only=True)["state_dict"]


def assert_same_weights(first, second):
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name


def test_rescaling_round_trip():
    log_mass = np.array([11.0, 12.2, 13.4])
    rescaled = rescale_log_mass(log_mass, *LOG_MASS_RANGE)
    np.testing.assert_allclose(rescaled, [-1.0, 0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(unscale_prediction(rescaled, *LOG_MASS_RANGE), log_mass)


def test_input_statistics_match_numpy(splits):
    (cubes, samples), _ = splits
    mean, std = input_statistics(MemoryCubeSource(cubes), samples, "train", batch_size=7)
    values = cubes.numpy().astype(np.float64)
    assert mean == pytest.approx(values.mean(), rel=1e-12)
    assert std == pytest.approx(values.std(), rel=1e-12)


def test_training_writes_outputs(tmp_path, splits):
    summary = run_fit(tmp_path, splits, settings(max_epochs=4))

    history = pd.read_csv(tmp_path / "history.csv")
    assert list(history.columns) == HISTORY_COLUMNS
    assert list(history["epoch"]) == [1, 2, 3, 4]
    best = history.loc[history["validation_loss"].idxmin()]
    assert summary["best_epoch"] == best["epoch"]
    assert summary["best_validation_loss"] == pytest.approx(best["validation_loss"])
    assert summary["gamma"] == pytest.approx(best["gamma"])
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert summary["n_parameters"] == sum(p.numel() for p in HaloCNN(CUBE, **MODEL).parameters()) + 1
    assert summary["device"] == "cpu"
    assert (tmp_path / "provenance.json").exists()
    assert (tmp_path / "checkpoint.pt").exists()
    # The loss falls on data with a learnable signal.
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]


def test_model_file_holds_best_epoch(tmp_path, splits):
    (train_cubes, train_samples), (validation_cubes, validation_samples) = splits
    summary = run_fit(tmp_path, splits, settings(max_epochs=4))
    model, record = load_trained_model(tmp_path / "model.pt", torch.device("cpu"))
    assert record["best_epoch"] == summary["best_epoch"]
    assert record["input_mean"] == pytest.approx(float(train_cubes.double().mean()), rel=1e-9)

    # The stored weights reproduce the best validation loss, recomputed here by hand.
    from halo_ml.loss import CauchySelectionLoss, prior_penalty
    loss_fn = CauchySelectionLoss()
    loss_fn.load_state_dict(record["loss_state_dict"])
    with torch.no_grad():
        prediction = model((validation_cubes - record["input_mean"]) / record["input_std"])
        target = torch.from_numpy(rescale_log_mass(validation_samples["log_mass"], *LOG_MASS_RANGE)).float()
        loss = loss_fn.per_sample(prediction, target).double().mean() + prior_penalty(model, 1e-3)
    assert float(loss) == pytest.approx(summary["best_validation_loss"], rel=1e-5)

    predicted = predict_log_mass(model, record, MemoryCubeSource(validation_cubes), validation_samples, "validation")
    np.testing.assert_allclose(predicted, unscale_prediction(prediction.numpy(), *LOG_MASS_RANGE), rtol=1e-6)
    table = write_predictions(tmp_path / "predictions.csv", validation_samples, predicted)
    assert list(pd.read_csv(tmp_path / "predictions.csv").columns) == list(table.columns)


def test_same_seed_same_weights(tmp_path, splits):
    run_fit(tmp_path / "first", splits, settings(max_epochs=2))
    run_fit(tmp_path / "second", splits, settings(max_epochs=2))
    assert_same_weights(model_weights(tmp_path / "first"), model_weights(tmp_path / "second"))


def test_other_seed_other_weights(tmp_path, splits):
    run_fit(tmp_path / "first", splits, settings(max_epochs=1), seed=0)
    run_fit(tmp_path / "second", splits, settings(max_epochs=1), seed=1)
    first, second = model_weights(tmp_path / "first"), model_weights(tmp_path / "second")
    assert not torch.equal(first["conv_layers.0.weight"], second["conv_layers.0.weight"])


@pytest.mark.parametrize("fail_after_calls, checkpoint_minutes", [
    (6 + 6 + 3, 1e-9),   # statistics pass (6 batches), epoch 1 (6), then 3 batches into epoch 2
    (6 + 6 + 6, 10.0),   # killed at the first batch of epoch 3, resumed from the epoch-2 checkpoint
])
def test_resume_after_kill_matches(tmp_path, splits, uninterrupted, fail_after_calls, checkpoint_minutes):
    (train_cubes, _), _ = splits
    training = settings(checkpoint_minutes=checkpoint_minutes)
    killed = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        run_fit(killed, splits, training, train_source=MemoryCubeSource(train_cubes, fail_after_calls))
    assert not (killed / "model.pt").exists()
    assert (killed / "checkpoint.pt").exists()

    summary = run_fit(killed, splits, training)
    assert summary["resumed_from_checkpoint"]
    assert_same_weights(model_weights(uninterrupted), model_weights(killed))
    first = pd.read_csv(uninterrupted / "history.csv")
    second = pd.read_csv(killed / "history.csv")
    pd.testing.assert_frame_equal(first.drop(columns="epoch_seconds"), second.drop(columns="epoch_seconds"))


def test_stale_checkpoint_ignored(tmp_path, splits):
    run_fit(tmp_path, splits, settings(max_epochs=1))
    summary = run_fit(tmp_path, splits, settings(max_epochs=1, learning_rate=2e-3))
    assert not summary["resumed_from_checkpoint"]


def test_early_stopping_keeps_best(tmp_path, splits):
    # A learning rate this large makes the validation loss rise after the first epochs.
    summary = run_fit(tmp_path, splits, settings(max_epochs=30, patience=2, learning_rate=0.3))
    history = pd.read_csv(tmp_path / "history.csv")
    assert summary["stopped_early"]
    assert len(history) == summary["best_epoch"] + 2
    assert summary["best_validation_loss"] == pytest.approx(history["validation_loss"].min())


def test_nan_loss_names_batch(tmp_path, splits):
    (train_cubes, train_samples), _ = splits
    training = settings(checkpoint_minutes=1e-9)

    class PoisonAfter(MemoryCubeSource):
        # The statistics pass makes 6 calls, so call 6 + 5 is batch 5 of epoch 1.
        def __call__(self, indices):
            cubes = super().__call__(indices)
            return cubes * float("inf") if self.calls == 11 else cubes

    with pytest.raises(TrainingDivergedError, match=r"epoch 1, batch 5 of 6"):
        run_fit(tmp_path, splits, training, train_source=PoisonAfter(train_cubes))
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert checkpoint["batch_position"] == 4
    assert all(np.isfinite(checkpoint["batch_losses"]))
    assert all(torch.isfinite(tensor).all() for tensor in checkpoint["model"].values())
    assert not (tmp_path / "model.pt").exists()


def test_nan_input_names_sample(tmp_path, splits):
    (train_cubes, train_samples), validation = splits
    poisoned = train_cubes.clone()
    poisoned[37, 0, 4, 4, 4] = float("nan")
    with pytest.raises(TrainingDataError, match=r"split 'train', sample 37 \(simulation 'sim_train', voxel 37\)"):
        run_fit(tmp_path, ((poisoned, train_samples), validation), settings(max_epochs=1))


def test_label_outside_range_rejected(tmp_path, splits):
    (train_cubes, train_samples), validation = splits
    shifted = train_samples.copy()
    shifted.loc[5, "log_mass"] = 14.0
    with pytest.raises(TrainingDataError, match=r"log_mass 14.0 of split 'train', sample 5"):
        run_fit(tmp_path, ((train_cubes, shifted), validation), settings(max_epochs=1))


def write_samples(path, store_path, name, log_mass, r_over_r200m, count, seed):
    n = log_mass.shape[0]
    eligible = np.flatnonzero((log_mass >= LOG_MASS_RANGE[0]) & (log_mass <= LOG_MASS_RANGE[1]))
    voxel = np.sort(np.random.default_rng(seed).choice(eligible, count, replace=False))
    i, j, k = np.unravel_index(voxel, (n, n, n))
    pd.DataFrame({"simulation": name, "voxel": voxel, "i": i, "j": j, "k": k,
                  "log_mass": log_mass.ravel()[voxel], "r_over_r200m": r_over_r200m.ravel()[voxel],
                  "final_x": 0.0, "final_y": 0.0, "final_z": 0.0}).to_csv(path, index=False)
    return path


def test_train_and_predict_from_stores(tmp_path):
    """train_model and predict_split on zarr stores, through halo_ml.cubes."""
    from synthetic_store import make_store

    from halo_ml.prediction import predict_split
    from halo_ml.training import train_model

    stores, samples = {}, {}
    for number, (name, count) in enumerate([("sim_a", 96), ("sim_b", 32), ("sim_c", 40)]):
        generator = np.random.default_rng(number)
        log_mass = generator.uniform(10.5, 14.0, (16, 16, 16)).astype(np.float32)
        r_over_r200m = generator.uniform(0, 1.5, (16, 16, 16)).astype(np.float32)
        stores[name] = make_store(tmp_path / f"{name}.zarr", log_halo_mass=log_mass,
                                  r_over_r200m=r_over_r200m, seed=number)
        samples[name] = write_samples(tmp_path / f"{name}.csv", stores[name], name, log_mass,
                                      r_over_r200m, count, seed=number)

    folder = tmp_path / "models" / "raw" / "seed0"
    folder.mkdir(parents=True)
    training = settings(max_epochs=2, log10_alpha={"raw": -3.0})
    summary = train_model(
        "raw", 0, samples["sim_a"], samples["sim_b"], {"sim_a": stores["sim_a"], "sim_b": stores["sim_b"]},
        model_settings=MODEL, training_settings=training, input_settings={"cube_voxels": CUBE},
        selection_settings=dict(zip(("log_mass_min", "log_mass_max"), LOG_MASS_RANGE)),
        model_path=folder / "model.pt", history_path=folder / "history.csv", summary_path=folder / "summary.json")
    assert summary["alpha"] == pytest.approx(1e-3)
    assert summary["epochs_run"] == 2
    provenance_record = json.loads((folder / "provenance.json").read_text())
    assert str(samples["sim_a"]) in provenance_record["inputs"]

    output = tmp_path / "predictions" / "raw" / "seed0.csv"
    predict_split(folder / "model.pt", samples["sim_c"], {"sim_c": stores["sim_c"]}, output,
                  input_settings={"cube_voxels": CUBE}, device="cpu")
    table = pd.read_csv(output)
    expected = pd.read_csv(samples["sim_c"])
    assert list(table.columns) == ["simulation", "voxel", "log_mass_true", "log_mass_pred", "r_over_r200m"]
    np.testing.assert_array_equal(table["voxel"], expected["voxel"])
    np.testing.assert_allclose(table["log_mass_true"], expected["log_mass"])
    assert np.isfinite(table["log_mass_pred"]).all()
    assert (tmp_path / "predictions" / "raw" / "seed0.csv.provenance.json").exists()


def test_foreign_model_file_rejected(tmp_path):
    from halo_ml.prediction import ModelFileError

    torch.save({"weights": torch.zeros(2)}, tmp_path / "model.pt")
    with pytest.raises(ModelFileError, match="is not a halo-ml model file"):
        load_trained_model(tmp_path / "model.pt", torch.device("cpu"))
    with pytest.raises(ModelFileError, match="not found"):
        load_trained_model(tmp_path / "missing.pt", torch.device("cpu"))


KILLED_CHILD = """
import os, signal, sys
from pathlib import Path
import torch
sys.path.insert(0, {tests!r})
import test_training as helpers

torch.set_num_threads(1)

class KillAfter(helpers.MemoryCubeSource):
    def __call__(self, indices):
        if self.calls == {kill_at}:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__call__(indices)

splits = helpers.make_split(96, 1, "sim_train"), helpers.make_split(32, 2, "sim_validation")
helpers.run_fit(Path({folder!r}), splits, helpers.settings(checkpoint_minutes=1e-9),
                train_source=KillAfter(splits[0][0]))
"""


def test_resume_after_sigkill_matches(tmp_path, splits, uninterrupted):
    import subprocess
    import sys
    from pathlib import Path

    killed = tmp_path / "killed"
    # Statistics pass (6 calls), epoch 1 (6), then killed before batch 4 of epoch 2.
    script = KILLED_CHILD.format(tests=str(Path(__file__).parent), kill_at=15, folder=str(killed))
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert child.returncode == -9, child.stderr
    assert not (killed / "model.pt").exists()

    summary = run_fit(killed, splits, settings(checkpoint_minutes=1e-9))
    assert summary["resumed_from_checkpoint"]
    assert_same_weights(model_weights(uninterrupted), model_weights(killed))
