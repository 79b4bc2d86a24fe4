"""Training of the halo-mass CNN with early stopping, checkpoints and exact resumption.

One call of :func:`train_model` trains one (variant, seed): AMSGrad on the truncated-Cauchy loss
plus the weight priors (:mod:`halo_ml.loss`), the Cauchy scale gamma learned with the weights.
Inputs are standardised with the mean and standard deviation of every voxel of every training
cube. The true log mass is rescaled linearly from [log_mass_min, log_mass_max] to [-1, 1].
Training stops at ``max_epochs`` or after ``patience`` epochs without a lower validation loss,
and keeps the weights of the epoch with the lowest validation loss.

Both the training and the validation loss include the prior term, so they are on one scale.
The training loss of an epoch is the mean of its batch losses, taken while the weights change.
The validation loss uses the weights at the end of the epoch.

``checkpoint.pt`` next to ``model.pt`` contains everything needed to continue (weights, optimizer
and loss state, the shuffling generator, the epoch's permutation and batch position, the
history and the best state). It is written after every epoch and every ``checkpoint_minutes``
inside an epoch. A rerun with the same settings continues from it and, on the same device and
thread count, ends with the same weights bit for bit as a run that was never interrupted. A
checkpoint written with other samples, model settings, seed, alpha, learning rate, batch size,
initial gamma or bf16 setting is ignored with a warning. Changing only ``max_epochs`` or
``patience`` keeps it, so a finished run can be extended.
"""

import copy
import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from halo_ml import __version__
from halo_ml.logs import log_duration
from halo_ml.loss import CauchySelectionLoss, prior_penalty
from halo_ml.model import HaloCNN, count_parameters
from halo_ml.provenance import provenance, write_provenance

logger = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
MODEL_FORMAT = "halo-ml model"
HISTORY_COLUMNS = ["epoch", "train_loss", "validation_loss", "gamma", "learning_rate", "epoch_seconds"]

# On CUDA a finiteness check costs a device synchronisation, so losses are checked in groups.
# The loss of every batch is kept, so the error still names the first bad batch.
_CUDA_CHECK_EVERY_BATCHES = 25


class TrainingDataError(ValueError):
    """Invalid training input: a non-finite cube or a label outside the selection range."""


class TrainingDivergedError(FloatingPointError):
    """The training loss became NaN or infinite; the last checkpoint on disk is still valid."""


def resolve_device(setting):
    """Return the torch device for a ``training.device`` setting ("auto", "cpu", "cuda", "cuda:N")."""
    if setting == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        logger.info("no CUDA device found, training runs on the CPU with %d threads", torch.get_num_threads())
        return torch.device("cpu")
    device = torch.device(setting)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"training.device is {setting!r} but no CUDA device is available; "
                         "set training.device to 'auto' or 'cpu'")
    return device


def alpha_of(training_settings, variant):
    """Return the prior weight alpha of ``variant`` from ``training.alpha`` or ``training.log10_alpha``."""
    if "alpha" in training_settings:
        return float(training_settings["alpha"])
    try:
        return 10.0 ** float(training_settings["log10_alpha"][variant])
    except KeyError:
        raise ValueError(f"training.log10_alpha has no value for variant '{variant}'; add one") from None


def rescale_log_mass(log_mass, log_mass_min, log_mass_max):
    """Map log10(M/Msun) linearly from [log_mass_min, log_mass_max] to [-1, 1]."""
    return 2.0 * (np.asarray(log_mass, dtype=np.float64) - log_mass_min) / (log_mass_max - log_mass_min) - 1.0


def unscale_prediction(rescaled, log_mass_min, log_mass_max):
    """Map a rescaled prediction back to log10(M/Msun); the inverse of :func:`rescale_log_mass`."""
    return log_mass_min + (np.asarray(rescaled, dtype=np.float64) + 1.0) * 0.5 * (log_mass_max - log_mass_min)


def describe_sample(samples, split, index):
    """Return "split 'train', sample 12 (simulation 'sim', voxel 345)" for error messages."""
    row = samples.iloc[int(index)]
    return (f"split '{split}', sample {int(index)} "
            f"(simulation '{row['simulation']}', voxel {int(row['voxel'])})")


def rescaled_labels(samples, split, log_mass_min, log_mass_max):
    """Return the rescaled labels of a samples table as float32, after checking their range.

    Raises
    ------
    TrainingDataError
        When a log mass is missing or lies outside [log_mass_min, log_mass_max].
    """
    log_mass = samples["log_mass"].to_numpy(dtype=np.float64)
    # Selection and training read the range from the same config keys. The tolerance absorbs
    # the float32 rounding of the stored masses.
    tolerance = 1e-5
    outside = ~((log_mass >= log_mass_min - tolerance) & (log_mass <= log_mass_max + tolerance))
    if outside.any():
        index = int(np.flatnonzero(outside)[0])
        raise TrainingDataError(
            f"log_mass {log_mass[index]} of {describe_sample(samples, split, index)} is outside "
            f"selection.log_mass_min..log_mass_max = [{log_mass_min}, {log_mass_max}]; "
            f"{int(outside.sum())} sample(s) in total. Rerun the selection with the same range.")
    labels = rescale_log_mass(log_mass, log_mass_min, log_mass_max).clip(-1.0, 1.0)
    return torch.from_numpy(labels.astype(np.float32))


def check_finite_cubes(cubes, indices, samples, split):
    """Raise :class:`TrainingDataError` naming the first cube of a batch with NaN or infinite values."""
    finite = torch.isfinite(cubes).flatten(start_dim=1).all(dim=1)
    if not bool(finite.all()):
        position = int(torch.nonzero(~finite)[0, 0])
        index = int(indices[position])
        raise TrainingDataError(
            f"the input cube of {describe_sample(samples, split, index)} contains NaN or infinite "
            "values; check the store or sub-box this sample is cut from")


def _batches(n, batch_size):
    return [torch.arange(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]


def input_statistics(source, samples, split, batch_size):
    """Return the mean and standard deviation of every voxel of every cube of ``source``.

    Computed in float64 by combining per-batch means and sums of squared deviations (Chan et
    al.'s parallel update), which avoids the cancellation of a plain sum of squares. Raises
    :class:`TrainingDataError` naming the first cube that contains NaN or infinite values.
    """
    count = 0
    mean = 0.0
    squared_deviations = 0.0
    for indices in tqdm(_batches(len(source), batch_size), desc=f"input statistics ({split})",
                        unit="batch", mininterval=5):
        cubes = source(indices)
        check_finite_cubes(cubes, indices, samples, split)
        values = cubes.to(torch.float64)
        batch_count = values.numel()
        batch_mean = float(values.mean())
        batch_squared = float((values - batch_mean).square().sum())
        delta = batch_mean - mean
        total = count + batch_count
        mean += delta * batch_count / total
        squared_deviations += batch_squared + delta ** 2 * count * batch_count / total
        count = total
    std = math.sqrt(squared_deviations / count)
    if not std > 0:
        raise TrainingDataError(f"every voxel of every {split} cube has the same value {mean}; "
                                "the inputs carry no information to standardise")
    return mean, std


def _autocast(device, bf16):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda")


def evaluate_loss(model, loss_fn, source, labels, samples, split, normalisation, batch_size, alpha, bf16=False):
    """Return the mean loss (likelihood plus prior) of the whole split, in float64."""
    mean, std = normalisation
    device = next(model.parameters()).device
    total = torch.zeros((), dtype=torch.float64, device=device)
    model.eval()
    with torch.no_grad():
        for indices in _batches(len(source), batch_size):
            cubes = source(indices)
            check_finite_cubes(cubes, indices, samples, split)
            with _autocast(device, bf16):
                prediction = model((cubes - mean) / std)
            per_sample = loss_fn.per_sample(prediction.float(), labels[indices.to(labels.device)])
            total += per_sample.to(torch.float64).sum()
        prior = prior_penalty(model, alpha)
    model.train()
    return float(total) / len(source) + float(prior)


def _fingerprint(**items):
    # Digest of everything that changes the training trajectory. A checkpoint with another
    # fingerprint is stale.
    text = json.dumps(items, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _samples_digest(samples):
    hashed = pd.util.hash_pandas_object(samples[["simulation", "voxel", "log_mass"]], index=False)
    return hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest()


def _atomic_torch_save(obj, path):
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    torch.save(obj, temporary)
    os.replace(temporary, path)


def _atomic_write_text(path, text):
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _cpu_state(module):
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in module.state_dict().items()}


class _Run:
    """Mutable state of one training run: what a checkpoint stores besides the modules."""

    def __init__(self):
        self.epoch = 0                  # epochs completed
        self.batch_position = 0         # batches of the current epoch completed
        self.permutation = None         # order of the current epoch, None between epochs
        self.batch_losses = []          # losses of the current epoch's completed batches
        self.epoch_seconds_before = 0.0  # time spent in the current epoch before a restart
        self.history = []
        self.best = None                # {"epoch", "validation_loss", "gamma", "model", "loss"}
        self.epochs_without_improvement = 0
        self.stopped_early = False
        self.normalisation = None       # (mean, std) of the training inputs


def _save_checkpoint(path, run, fingerprint, model, loss_fn, optimizer, shuffle_generator):
    record = {
        "version": CHECKPOINT_VERSION,
        "fingerprint": fingerprint,
        "epoch": run.epoch,
        "batch_position": run.batch_position,
        "permutation": run.permutation,
        "batch_losses": list(run.batch_losses),
        "epoch_seconds_before": run.epoch_seconds_before,
        "history": run.history,
        "best": run.best,
        "epochs_without_improvement": run.epochs_without_improvement,
        "stopped_early": run.stopped_early,
        "normalisation": list(run.normalisation),
        "model": _cpu_state(model),
        "loss": _cpu_state(loss_fn),
        "optimizer": optimizer.state_dict(),
        "shuffle_generator": shuffle_generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    _atomic_torch_save(record, path)


def _load_checkpoint(path, fingerprint, model, loss_fn, optimizer, shuffle_generator):
    """Restore ``path`` into the modules and return a :class:`_Run`, or None if it does not apply."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError) as error:
        logger.warning("checkpoint %s cannot be read (%s); training starts from scratch", path, error)
        return None
    if record.get("version") != CHECKPOINT_VERSION or record.get("fingerprint") != fingerprint:
        logger.warning("checkpoint %s was written with other settings, samples or code version; "
                       "training starts from scratch and will overwrite it", path)
        return None

    model.load_state_dict(record["model"])
    loss_fn.load_state_dict(record["loss"])
    optimizer.load_state_dict(record["optimizer"])
    shuffle_generator.set_state(record["shuffle_generator"])
    torch.set_rng_state(record["torch_rng"])
    if record["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(record["cuda_rng"])

    run = _Run()
    for name in ("epoch", "batch_position", "permutation", "batch_losses", "epoch_seconds_before",
                 "history", "best", "epochs_without_improvement", "stopped_early"):
        setattr(run, name, record[name])
    run.normalisation = tuple(record["normalisation"])
    logger.info("resuming from checkpoint %s at epoch %d, batch %d", path, run.epoch + 1, run.batch_position)
    return run


def _first_bad_loss(batch_losses_device, start, stop):
    window = batch_losses_device[start:stop]
    bad = ~torch.isfinite(window)
    if bool(bad.any()):
        return start + int(torch.nonzero(bad)[0, 0])
    return None


def fit(train_source, train_samples, validation_source, validation_samples, *, model_settings,
        training_settings, alpha, label_range, seed, model_path, history_path, summary_path,
        variant=None, provenance_record=None):
    """Train a :class:`HaloCNN` and write the model, history, summary and provenance.

    Parameters
    ----------
    train_source, validation_source : CubeSource
        Callables returning (B, 1, c, c, c) float32 cubes, not standardised, on their device.
    train_samples, validation_samples : pandas.DataFrame
        Samples tables of the two splits, row i describing cube i (columns simulation, voxel,
        log_mass in log10 Msun).
    model_settings : dict
        ``conv_channels``, ``dense_units``, ``leaky_relu_slope``.
    training_settings : dict
        ``learning_rate``, ``batch_size``, ``max_epochs``, ``patience``, ``initial_gamma``,
        ``device``, ``bf16``, ``checkpoint_minutes``, ``deterministic``.
    alpha : float
        Weight of the priors.
    label_range : tuple of float
        (log_mass_min, log_mass_max) in log10 Msun, mapped to [-1, 1].
    seed : int
        Seeds the initial weights and the shuffling.
    model_path, history_path, summary_path : path-like
        Outputs; ``checkpoint.pt`` and ``provenance.json`` are written next to ``model_path``.

    Returns
    -------
    dict
        The summary also written to ``summary_path``.

    Raises
    ------
    TrainingDataError
        A non-finite cube or an out-of-range label, naming the split and the sample.
    TrainingDivergedError
        The loss turned NaN or infinite; names the epoch and batch, and leaves the last
        checkpoint as it was.
    """
    settings = _training_defaults(training_settings)
    device = resolve_device(settings["device"])
    for name, source in (("train", train_source), ("validation", validation_source)):
        if not _same_device(torch.device(source.device), device):
            raise ValueError(f"the {name} cube source is on {source.device} but training runs on {device}; "
                             "open the source with the training device")
    bf16 = bool(settings["bf16"])
    if bf16 and device.type != "cuda":
        logger.warning("training.bf16 is set but training runs on %s; bf16 autocast is used on CUDA only", device)
    previous_determinism = _determinism_state()
    try:
        _configure_determinism(settings["deterministic"], device)
        return _fit(train_source, train_samples, validation_source, validation_samples, settings, device, bf16,
                    model_settings, alpha, label_range, seed, model_path, history_path, summary_path, variant,
                    provenance_record)
    finally:
        _restore_determinism(previous_determinism)


def _fit(train_source, train_samples, validation_source, validation_samples, settings, device, bf16,
         model_settings, alpha, label_range, seed, model_path, history_path, summary_path, variant,
         provenance_record):
    log_mass_min, log_mass_max = (float(value) for value in label_range)
    train_labels = rescaled_labels(train_samples, "train", log_mass_min, log_mass_max).to(device)
    validation_labels = rescaled_labels(validation_samples, "validation", log_mass_min, log_mass_max).to(device)
    if len(train_source) != len(train_samples) or len(validation_source) != len(validation_samples):
        raise ValueError(f"cube sources hold {len(train_source)} and {len(validation_source)} cubes but the "
                         f"samples tables have {len(train_samples)} and {len(validation_samples)} rows")

    cube_size = int(train_source.cube_voxels)
    model_settings = {"cube_size": cube_size, **{key: model_settings[key] for key in
                      ("conv_channels", "dense_units", "leaky_relu_slope") if key in model_settings}}
    # Initial weights are drawn on the CPU, so a seed gives the same network on every device.
    torch.manual_seed(seed)
    model = HaloCNN(**model_settings)
    loss_fn = CauchySelectionLoss(settings["initial_gamma"])
    model.to(device)
    loss_fn.to(device)
    optimizer = torch.optim.Adam([*model.parameters(), *loss_fn.parameters()],
                                 lr=settings["learning_rate"], amsgrad=True)
    shuffle_generator = torch.Generator().manual_seed(seed)
    n_parameters = count_parameters(model, loss_fn)
    logger.info("model: %s, %d parameters including gamma, alpha %.3g, device %s",
                model.settings, n_parameters, alpha, device)

    fingerprint = _fingerprint(
        version=CHECKPOINT_VERSION, model=model.settings, seed=seed, alpha=alpha,
        label_range=[log_mass_min, log_mass_max],
        training={key: settings[key] for key in ("learning_rate", "batch_size", "initial_gamma", "bf16")},
        train=_samples_digest(train_samples), validation=_samples_digest(validation_samples),
        variant=variant)
    model_path = Path(model_path)
    checkpoint_path = model_path.with_name("checkpoint.pt")
    model_path.parent.mkdir(parents=True, exist_ok=True)

    run = _load_checkpoint(checkpoint_path, fingerprint, model, loss_fn, optimizer, shuffle_generator)
    resumed = run is not None
    if run is None:
        run = _Run()
        with log_duration(logger, f"input statistics over {len(train_source)} training cubes") as details:
            run.normalisation = input_statistics(train_source, train_samples, "train", settings["batch_size"])
            details["mean"], details["std"] = (f"{value:.6g}" for value in run.normalisation)

    _train_epochs(run, settings, model, loss_fn, optimizer, shuffle_generator, alpha, fingerprint,
                  checkpoint_path, device, bf16, train_source, train_labels,
                  (validation_source, validation_labels, validation_samples))

    summary = _finish(run, settings, model, loss_fn, alpha, n_parameters, device, variant, seed,
                      (log_mass_min, log_mass_max), len(train_samples), len(validation_samples), resumed,
                      model_path, history_path, summary_path, provenance_record)
    return summary


def _same_device(first, second):
    if first.type != second.type:
        return False
    if first.type != "cuda":
        return True
    # "cuda" without an index means the current device.
    current = torch.cuda.current_device()
    first_index = current if first.index is None else first.index
    second_index = current if second.index is None else second.index
    return first_index == second_index


def _training_defaults(training_settings):
    defaults = {"learning_rate": 5e-5, "batch_size": 64, "max_epochs": 100, "patience": 10,
                "initial_gamma": 0.2, "device": "auto", "bf16": False, "checkpoint_minutes": 10.0,
                "deterministic": True}
    return {**defaults, **training_settings}


def _determinism_state():
    return (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)


def _restore_determinism(state):
    enabled, warn_only, benchmark, deterministic = state
    if (enabled, warn_only) != (torch.are_deterministic_algorithms_enabled(),
                                torch.is_deterministic_algorithms_warn_only_enabled()):
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
    torch.backends.cudnn.benchmark = benchmark
    torch.backends.cudnn.deterministic = deterministic


def _configure_determinism(deterministic, device):
    # On the CPU every kernel this model uses is deterministic for a fixed thread count, as the
    # tests check, so only CUDA needs switching. Skipping the switch on the CPU also avoids
    # torch.use_deterministic_algorithms importing torch._inductor, which takes seconds.
    if device.type != "cuda":
        return
    if not deterministic:
        torch.backends.cudnn.benchmark = True
        return
    # cuBLAS is deterministic only with a fixed workspace. It reads this variable when it
    # starts, which is at the first matrix product on the device.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    # NOTE: warn_only, because some CUDA kernels (max_pool3d backward among them in
    # torch 2.x) have no deterministic version. Exact resumption is tested on the CPU only.
    torch.use_deterministic_algorithms(True, warn_only=True)


def training_step(model, loss_fn, optimizer, cubes, targets, normalisation, alpha, bf16=False):
    """Take one optimizer step on a batch and return its loss (likelihood plus prior), detached.

    ``cubes`` are raw (B, 1, c, c, c) inputs, standardised here with ``normalisation`` = (mean,
    std); ``targets`` are the rescaled labels. Under bf16 autocast the network output is cast
    to float32 before the loss, because bf16 keeps about 3 significant digits, too few for the
    differences of arctangents in the likelihood.
    """
    mean, std = normalisation
    with _autocast(cubes.device, bf16):
        prediction = model((cubes - mean) / std)
    loss = loss_fn(prediction.float(), targets) + prior_penalty(model, alpha)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def _train_epochs(run, settings, model, loss_fn, optimizer, shuffle_generator, alpha, fingerprint,
                  checkpoint_path, device, bf16, train_source, train_labels, validation):
    validation_source, validation_labels, validation_samples = validation
    batch_size = settings["batch_size"]
    n_train = len(train_source)
    n_batches = math.ceil(n_train / batch_size)
    check_every = _CUDA_CHECK_EVERY_BATCHES if device.type == "cuda" else 1
    checkpoint_seconds = 60.0 * settings["checkpoint_minutes"]

    def save():
        _save_checkpoint(checkpoint_path, run, fingerprint, model, loss_fn, optimizer, shuffle_generator)

    model.train()
    while not run.stopped_early and run.epoch < settings["max_epochs"]:
        epoch_number = run.epoch + 1
        epoch_start = time.perf_counter()
        if run.permutation is None:
            run.permutation = torch.randperm(n_train, generator=shuffle_generator)
            run.batch_position = 0
            run.batch_losses = []
            run.epoch_seconds_before = 0.0
        batch_losses = torch.full((n_batches,), float("nan"), dtype=torch.float64, device=device)
        if run.batch_losses:
            batch_losses[:len(run.batch_losses)] = torch.tensor(run.batch_losses, dtype=torch.float64)
        checked = run.batch_position
        last_checkpoint = time.monotonic()

        progress = tqdm(total=n_batches, initial=run.batch_position, desc=f"epoch {epoch_number}",
                        unit="batch", mininterval=5)
        for batch in range(run.batch_position, n_batches):
            indices = run.permutation[batch * batch_size:(batch + 1) * batch_size]
            batch_losses[batch] = training_step(model, loss_fn, optimizer, train_source(indices),
                                                train_labels[indices.to(device)], run.normalisation, alpha, bf16)
            progress.update()

            done = batch + 1
            due = time.monotonic() - last_checkpoint >= checkpoint_seconds and done < n_batches
            if done - checked >= check_every or due or done == n_batches:
                bad = _first_bad_loss(batch_losses, checked, done)
                if bad is not None:
                    progress.close()
                    raise TrainingDivergedError(
                        f"the training loss became {float(batch_losses[bad])} at epoch {epoch_number}, "
                        f"batch {bad + 1} of {n_batches}; the checkpoint {checkpoint_path} from before "
                        "it is kept. Lower training.learning_rate or raise training.log10_alpha and rerun.")
                checked = done
            if due:
                run.batch_position = done
                run.batch_losses = batch_losses[:done].tolist()
                run.epoch_seconds_before += time.perf_counter() - epoch_start
                epoch_start = time.perf_counter()
                save()
                last_checkpoint = time.monotonic()
        progress.close()

        train_loss = float(batch_losses.mean())
        validation_loss = evaluate_loss(model, loss_fn, validation_source, validation_labels, validation_samples,
                                        "validation", run.normalisation, batch_size, alpha, bf16)
        gamma = float(loss_fn.gamma.detach())
        epoch_seconds = run.epoch_seconds_before + time.perf_counter() - epoch_start
        run.history.append({"epoch": epoch_number, "train_loss": train_loss, "validation_loss": validation_loss,
                            "gamma": gamma, "learning_rate": optimizer.param_groups[0]["lr"],
                            "epoch_seconds": epoch_seconds})
        _update_best(run, epoch_number, validation_loss, gamma, model, loss_fn, settings["patience"])
        logger.info("epoch %d/%d: train loss %.5f, validation loss %.5f, gamma %.4f, %.1f s; best %.5f at epoch %d",
                    epoch_number, settings["max_epochs"], train_loss, validation_loss, gamma, epoch_seconds,
                    run.best["validation_loss"], run.best["epoch"])

        run.epoch = epoch_number
        run.permutation = None
        run.batch_position = 0
        run.batch_losses = []
        run.epoch_seconds_before = 0.0
        save()
    if run.stopped_early:
        logger.info("early stopping: no lower validation loss in the %d epochs after epoch %d",
                    settings["patience"], run.best["epoch"])


def _update_best(run, epoch_number, validation_loss, gamma, model, loss_fn, patience):
    if not math.isfinite(validation_loss):
        raise TrainingDivergedError(f"the validation loss became {validation_loss} after epoch {epoch_number}; "
                                    "the checkpoint from the previous epoch is kept")
    if run.best is None or validation_loss < run.best["validation_loss"]:
        run.best = {"epoch": epoch_number, "validation_loss": validation_loss, "gamma": gamma,
                    "model": _cpu_state(model), "loss": _cpu_state(loss_fn)}
        run.epochs_without_improvement = 0
    else:
        run.epochs_without_improvement += 1
        run.stopped_early = run.epochs_without_improvement >= patience


def _finish(run, settings, model, loss_fn, alpha, n_parameters, device, variant, seed, label_range,
            n_train, n_validation, resumed, model_path, history_path, summary_path, provenance_record):
    best = run.best
    model.load_state_dict(best["model"])
    loss_fn.load_state_dict(best["loss"])
    mean, std = run.normalisation
    model_record = {
        "format": MODEL_FORMAT,
        "version": 1,
        "model_settings": model.settings,
        "state_dict": copy.deepcopy(best["model"]),
        "loss_state_dict": copy.deepcopy(best["loss"]),
        "gamma": best["gamma"],
        "input_mean": mean,
        "input_std": std,
        "log_mass_min": label_range[0],
        "log_mass_max": label_range[1],
        "variant": variant,
        "seed": seed,
        "best_epoch": best["epoch"],
        "halo_ml_version": __version__,
    }
    _atomic_torch_save(model_record, model_path)

    history = pd.DataFrame(run.history, columns=HISTORY_COLUMNS)
    _atomic_write_text(history_path, history.to_csv(index=False))

    summary = {
        "variant": variant,
        "seed": seed,
        "best_epoch": best["epoch"],
        "best_validation_loss": best["validation_loss"],
        "gamma": best["gamma"],
        "alpha": alpha,
        "n_parameters": n_parameters,
        "device": str(device),
        "stopped_early": run.stopped_early,
        "epochs_run": run.epoch,
        "training_seconds": float(history["epoch_seconds"].sum()),
        "resumed_from_checkpoint": resumed,
        "n_train": n_train,
        "n_validation": n_validation,
        "input_mean": mean,
        "input_std": std,
        "log_mass_min": label_range[0],
        "log_mass_max": label_range[1],
        "learning_rate": settings["learning_rate"],
        "batch_size": settings["batch_size"],
    }
    _atomic_write_text(summary_path, json.dumps(summary, indent=2) + "\n")

    record = provenance_record if provenance_record is not None else provenance(
        seeds={"training": seed}, parameters={"training": settings, "model": model.settings, "alpha": alpha})
    write_provenance(Path(model_path).with_name("provenance.json"), record)
    logger.info("best epoch %d: validation loss %.5f, gamma %.4f; wrote %s", best["epoch"],
                best["validation_loss"], best["gamma"], model_path)
    return summary


def provenance_inputs(sample_paths, store_paths, subbox_paths=()):
    """Return the paths whose checksums identify a model's inputs.

    Samples tables are checksummed whole. Of a zarr store only the root ``zarr.json`` is,
    because it carries the store's own provenance with the checksums of its source files.
    Hashing the arrays would read every byte, for example 337 GB of z=0 sub-boxes for 200,000
    training cubes of 75^3 float32.
    """
    paths = [Path(path) for path in sample_paths]
    for store in [*store_paths, *subbox_paths]:
        metadata = Path(store) / "zarr.json"
        paths.append(metadata if metadata.exists() else Path(store))
    return paths


def train_model(variant, seed, train_samples_path, validation_samples_path, store_paths, *,
                model_settings, training_settings, input_settings, selection_settings,
                model_path, history_path, summary_path, train_subbox_paths=None,
                validation_subbox_paths=None, threads=None):
    """Train one (variant, seed) from the samples tables and stores; see :func:`fit`.

    Parameters
    ----------
    store_paths : dict
        ``{simulation name: path of stores/<sim>.zarr}``.
    train_subbox_paths, validation_subbox_paths : list of path-like, optional
        z=0 sub-box chunk stores of each split (z0 variant only).
    selection_settings : dict
        Holds ``log_mass_min`` and ``log_mass_max`` in log10 Msun.
    threads : int, optional
        CPU threads for torch; None keeps torch's default.
    """
    from halo_ml.cubes import open_cube_source

    if threads:
        torch.set_num_threads(int(threads))

    settings = _training_defaults(training_settings)
    device = resolve_device(settings["device"])
    settings["device"] = str(device)
    train_samples = pd.read_csv(train_samples_path)
    validation_samples = pd.read_csv(validation_samples_path)
    alpha = alpha_of(settings, variant)
    label_range = (selection_settings["log_mass_min"], selection_settings["log_mass_max"])

    with log_duration(logger, f"opening the '{variant}' cubes of {len(train_samples)} training and "
                              f"{len(validation_samples)} validation samples"):
        train_source = open_cube_source(variant, train_samples, store_paths, train_subbox_paths,
                                        input_settings, device)
        validation_source = open_cube_source(variant, validation_samples, store_paths,
                                             validation_subbox_paths, input_settings, device)

    record = provenance(
        inputs=provenance_inputs([train_samples_path, validation_samples_path], store_paths.values(),
                                 [*(train_subbox_paths or []), *(validation_subbox_paths or [])]),
        seeds={"training": seed},
        parameters={"variant": variant, "alpha": alpha, "model": model_settings, "training": settings,
                    "inputs": input_settings, "selection": selection_settings})
    with log_duration(logger, f"training variant '{variant}' seed {seed}"):
        return fit(train_source, train_samples, validation_source, validation_samples,
                   model_settings=model_settings, training_settings=settings, alpha=alpha,
                   label_range=label_range, seed=seed, model_path=model_path, history_path=history_path,
                   summary_path=summary_path, variant=variant, provenance_record=record)
