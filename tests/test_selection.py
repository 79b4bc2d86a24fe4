"""Tests of halo_ml.selection on small synthetic stores."""

import json

import numpy as np
import pandas as pd
import pytest
import zarr

from halo_ml.selection import COLUMNS, SelectionError, select_particles
from synthetic_store import make_store

N = 16
SIMULATIONS = {"train": ["t0", "t1"], "validation": ["v"], "test": ["x0", "x1"]}
SETTINGS = {"log_mass_min": 11.0, "log_mass_max": 13.4, "n_train": 400, "n_validation": 50,
            "n_test": 120, "seed": 7}


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stores")
    names = [name for role in SIMULATIONS.values() for name in role]
    return {name: make_store(folder / f"{name}.zarr", n=N, seed=index) for index, name in enumerate(names)}


def run_selection(folder, stores, settings=SETTINGS, simulations=SIMULATIONS):
    outputs = {split: folder / f"{split}.csv" for split in ("train", "validation", "test")}
    select_particles(simulations, stores, settings, outputs)
    return {split: pd.read_csv(path) for split, path in outputs.items()}


def test_counts_columns_and_roles(tmp_path, stores):
    tables = run_selection(tmp_path, stores)

    for split, count_key in (("train", "n_train"), ("validation", "n_validation"), ("test", "n_test")):
        table = tables[split]
        assert list(table.columns) == COLUMNS
        assert len(table) == SETTINGS[count_key]
        assert set(table["simulation"]) <= set(SIMULATIONS[split])
        assert not table.duplicated(["simulation", "voxel"]).any()
        assert (tmp_path / f"{split}.csv.provenance.json").exists()
    # Both training simulations contribute to the pooled draw.
    assert set(tables["train"]["simulation"]) == {"t0", "t1"}
    assert set(tables["test"]["simulation"]) == {"x0", "x1"}


def test_rows_match_store_values(tmp_path, stores):
    table = run_selection(tmp_path, stores)["train"]

    for name, rows in table.groupby("simulation"):
        group = zarr.open_group(stores[name], mode="r")
        log_mass = group["log_halo_mass"][...]
        radius = group["r_over_r200m"][...]
        final = group["final_position"][...]
        i, j, k = rows["i"].to_numpy(), rows["j"].to_numpy(), rows["k"].to_numpy()
        np.testing.assert_array_equal(rows["voxel"], (i * N + j) * N + k)
        np.testing.assert_allclose(rows["log_mass"], log_mass[i, j, k], rtol=1e-6)
        np.testing.assert_allclose(rows["r_over_r200m"], radius[i, j, k], rtol=1e-6)
        np.testing.assert_allclose(rows[["final_x", "final_y", "final_z"]], final[i, j, k], rtol=1e-6)
        assert rows["log_mass"].between(11.0, 13.4).all()


def test_same_seed_same_draw(tmp_path, stores):
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    first = run_selection(tmp_path / "a", stores)
    second = run_selection(tmp_path / "b", stores)
    other = run_selection(tmp_path / "c", stores, dict(SETTINGS, seed=8))

    for split in first:
        pd.testing.assert_frame_equal(first[split], second[split])
    assert not first["train"]["voxel"].equals(other["train"]["voxel"])


def test_split_draw_independent_of_other_counts(tmp_path, stores):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    base = run_selection(tmp_path / "a", stores)
    more_test = run_selection(tmp_path / "b", stores, dict(SETTINGS, n_test=200))

    pd.testing.assert_frame_equal(base["train"], more_test["train"])
    pd.testing.assert_frame_equal(base["validation"], more_test["validation"])


def test_shared_validation_test_disjoint(tmp_path, stores):
    shared = {"train": ["t0", "t1"], "validation": ["v"], "test": ["v", "x0"]}
    tables = run_selection(tmp_path, stores, simulations=shared)

    validation_voxels = set(tables["validation"]["voxel"])
    test_in_v = tables["test"].loc[tables["test"]["simulation"] == "v", "voxel"]
    assert len(test_in_v) > 0
    assert validation_voxels.isdisjoint(test_in_v)
    assert len(tables["test"]) == SETTINGS["n_test"]


def test_too_few_particles_names_key(tmp_path, stores):
    group = zarr.open_group(stores["v"], mode="r")
    log_mass = group["log_halo_mass"][...]
    available = int(np.count_nonzero((log_mass >= 11.0) & (log_mass <= 13.4)))

    with pytest.raises(SelectionError, match=rf"selection.n_validation asks for {available + 1} .*\['v'\] have only "
                                             rf"{available} "):
        run_selection(tmp_path, stores, dict(SETTINGS, n_validation=available + 1))


def test_no_particle_in_mass_range(tmp_path, stores):
    with pytest.raises(SelectionError, match=r"no particles in the mass range \[15.0, 16.0\].*\['t0', 't1'\]"):
        run_selection(tmp_path, stores, dict(SETTINGS, log_mass_min=15.0, log_mass_max=16.0))


def test_missing_store(tmp_path, stores):
    partial = {name: path for name, path in stores.items() if name != "x1"}
    with pytest.raises(SelectionError, match=r"no store given for simulation\(s\) \['x1'\]"):
        run_selection(tmp_path, partial)


def test_provenance_records_seed(tmp_path, stores):
    run_selection(tmp_path, stores)
    record = json.loads((tmp_path / "test.csv.provenance.json").read_text())
    assert record["seeds"] == {"selection": 7}
    assert record["split"] == "test"
    assert record["rows"] == SETTINGS["n_test"]
