"""Tests of the demo suite's configuration checks, which run before any simulation starts."""

import math
from pathlib import Path

import pytest

from halo_ml.config import ConfigError, load_config

DEFAULT = Path(__file__).resolve().parents[1] / "config" / "config.yaml"


def test_default_demo_config_valid():
    config = load_config(DEFAULT)
    assert config["demo"]["subhalo_min_particles"] == 20
    assert config["inputs"]["cube_voxels"] <= config["demo"]["particles_per_side"]


def test_cube_larger_than_grid_rejected():
    with pytest.raises(ConfigError, match=r"inputs.cube_voxels \(65\) exceeds demo.particles_per_side \(64\)"):
        load_config(DEFAULT, overrides={"inputs": {"cube_voxels": 65}})


def test_largest_cube_that_fits_accepted():
    # Cubes have an odd side so that they centre on a voxel.
    config = load_config(DEFAULT, overrides={"inputs": {"cube_voxels": 63}})
    assert config["inputs"]["cube_voxels"] == 63


def test_unreachable_mass_range_rejected():
    # 32 particles of Omega_m rho_crit (20 Mpc/h)^3 / 64^3 = 3.37e9 Msun make 1.08e11 Msun,
    # log10 = 11.03, the smallest FoF halo that GADGET-4 finds in the same setup.
    smallest = math.log10(32 * 3.371e9)
    with pytest.raises(ConfigError, match=r"selection.log_mass_max \(11.0\) is below the smallest demo halo"):
        load_config(DEFAULT, overrides={"selection": {"log_mass_min": 10.0, "log_mass_max": 11.0}})
    config = load_config(DEFAULT, overrides={"selection": {"log_mass_min": 10.0, "log_mass_max": smallest + 0.01}})
    assert config["selection"]["log_mass_max"] > smallest


def test_mass_check_follows_particle_mass():
    # Eight times more particles in the same box: particles of 4.2e8 Msun, so 11.0 is reachable.
    config = load_config(DEFAULT, overrides={
        "demo": {"particles_per_side": 128},
        "selection": {"log_mass_min": 10.0, "log_mass_max": 11.0},
    })
    assert config["demo"]["particles_per_side"] == 128


def test_shared_seed_rejected():
    with pytest.raises(ConfigError, match="gives seed 1001 to both"):
        load_config(DEFAULT, overrides={"demo": {"seeds": {"demo_test": 1001}}})
