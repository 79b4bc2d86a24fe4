"""Each figure function builds its file, with provenance, from synthetic workflow files."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from halo_ml import figures
from halo_ml.figures import credible_levels, truncated_cauchy_pdf

SETTINGS = {"format": "png", "dpi": 50, "mass_bin_edges": None}


def write_predictions(path, seed, scatter=0.6, n=400):
    rng = np.random.default_rng(seed)
    truth = np.round(rng.uniform(11.0, 13.4, n), 2)
    frame = pd.DataFrame({"simulation": "sim", "voxel": np.arange(n), "log_mass_true": truth,
                          "log_mass_pred": truth + rng.normal(0.0, scatter, n),
                          "r_over_r200m": rng.uniform(0.0, 1.2, n)})
    frame.to_csv(path, index=False)
    return path


def write_json(path, record):
    path.write_text(json.dumps(record))
    return path


def provenance_of(path):
    return json.loads(Image.open(path).text["halo-ml provenance"])


def mi_record(variant):
    return {"variant": variant, "seed": 0, "mi": 0.3, "mi_err": 0.01, "n": 400,
            "radial": [{"bin": label, "mi": 0.3, "mi_err": 0.01, "n": 100}
                       for label in ("r/r200m <= 0.3", "0.3 < r/r200m <= 0.6", "r/r200m > 0.6")]}


@pytest.fixture
def files(tmp_path):
    raw = [write_predictions(tmp_path / f"raw{seed}.csv", seed) for seed in (0, 1)]
    averaged = [write_predictions(tmp_path / f"averaged{seed}.csv", 10 + seed, scatter=0.8) for seed in (0, 1)]
    history = tmp_path / "history.csv"
    pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.0, 0.8, 0.7], "validation_loss": [1.1, 0.9, 0.95],
                  "gamma": [0.2, 0.25, 0.26], "learning_rate": 5e-5, "epoch_seconds": 10.0}).to_csv(history, index=False)
    summary = write_json(tmp_path / "summary.json", {"best_epoch": 2, "gamma": 0.25, "best_validation_loss": 0.9})
    mi_table = tmp_path / "mutual_information.csv"
    pd.DataFrame({"variant": ["raw", "raw", "averaged", "averaged"], "seed": [0, 1, 0, 1],
                  "mi": [0.37, 0.38, 0.24, 0.25], "mi_err": 0.004, "n": 400}).to_csv(mi_table, index=False)
    noise = tmp_path / "noise_reference.csv"
    pd.DataFrame({"noise_dex": [1.5, 1.0, 0.5], "mi": [0.1, 0.2, 0.5], "mi_err": 0.01, "n": 400}).to_csv(noise, index=False)
    analytic = tmp_path / "analytic.csv"
    frame = pd.read_csv(raw[0]).rename(columns={"log_mass_pred": "log_mass_eps"})
    frame["log_mass_st"] = frame["log_mass_eps"] - 0.3
    frame.loc[::3, "log_mass_st"] = np.nan
    frame.to_csv(analytic, index=False)
    return {"raw": raw, "averaged": averaged, "history": history, "summary": summary, "mi_table": mi_table,
            "noise": noise, "analytic": analytic,
            "mi_raw": write_json(tmp_path / "mi_raw.json", mi_record("raw")),
            "mi_averaged": write_json(tmp_path / "mi_averaged.json", mi_record("averaged"))}


def build(name, files, output):
    calls = {
        "fig2": lambda: figures.fig2(files["raw"][0], output, SETTINGS),
        "fig3": lambda: figures.fig3(files["raw"], files["averaged"], output, SETTINGS),
        "fig4": lambda: figures.fig4(files["mi_table"], files["noise"], output, SETTINGS),
        "fig5": lambda: figures.fig5({"raw": files["raw"][0], "averaged": files["averaged"][0]},
                                     {"raw": files["mi_raw"], "averaged": files["mi_averaged"]},
                                     output, SETTINGS, [0.3, 0.6]),
        "fig6": lambda: figures.fig6(files["raw"][1], output, SETTINGS),
        "fig7": lambda: figures.fig7(files["raw"][0], files["averaged"][0], output, SETTINGS),
        "fig8": lambda: figures.fig8(files["raw"][0], files["summary"], output, SETTINGS, 11.0, 13.4),
        "fig9": lambda: figures.fig9(files["history"], files["summary"], output, SETTINGS),
        "fig10": lambda: figures.fig10(files["raw"][0], files["analytic"], output, SETTINGS),
    }
    return calls[name]()


@pytest.mark.parametrize("name", ["fig2", "fig3", "fig4", "fig5", "fig6", "fig7", "fig8", "fig9", "fig10"])
def test_figure_written_with_provenance(name, files, tmp_path):
    output = tmp_path / "figures" / f"{name}.png"
    build(name, files, output)
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = provenance_of(output)
    assert record["parameters"] == SETTINGS
    assert record["inputs"], f"{name} names no input file in its provenance"
    assert not list(output.parent.glob(".*tmp*")), "a temporary file was left behind"


def test_figure_pdf_format(files, tmp_path):
    output = tmp_path / "fig9.pdf"
    figures.fig9(files["history"], files["summary"], output, {**SETTINGS, "format": "pdf"})
    assert output.read_bytes()[:5] == b"%PDF-"


def test_truncated_cauchy_normalised():
    grid = np.linspace(-1.0, 1.0, 20001)
    for y in (-0.9, 0.0, 0.7):
        density = truncated_cauchy_pdf(grid, y, 0.26)
        assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-6)


def test_credible_levels_of_gaussian():
    x = np.linspace(-5, 5, 401)
    density = np.exp(-0.5 * (x[:, None] ** 2 + x[None, :] ** 2))
    level_68, level_95 = credible_levels(density, [0.68, 0.95])
    # For a 2D standard Gaussian the region holding fraction p is r^2 <= -2 ln(1 - p).
    assert level_68 == pytest.approx(np.exp(np.log(1 - 0.68)), rel=0.02)
    assert level_95 == pytest.approx(np.exp(np.log(1 - 0.95)), rel=0.05)


def test_figure_target_without_variant_rejected(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((root / "tests" / "configs" / "tiny.yaml").read_text())
    config["variants"] = ["raw", "averaged"]
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", "-s", str(root / "Snakefile"), "-d", str(tmp_path),
               "--configfile", str(config_path), "--cores", "1", "-n", "fig7"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "fig7 needs the model variant(s) ['potential']" in result.stdout + result.stderr
