"""Provenance records that travel with every output of the workflow.

Every store, model, table and figure carries a dictionary of the configuration that made it,
its seeds, the versions of the packages that computed it and SHA-256 checksums of its input
files. A number in a paper can so be traced back to the run that produced it.
"""

import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
from pathlib import Path

PACKAGES = (
    "halo-ml", "numpy", "scipy", "torch", "pynbody", "zarr", "h5py",
    "gmm-mi", "scikit-learn", "camb", "colossus", "snakemake", "matplotlib",
)

_CHUNK_BYTES = 1 << 22


def sha256_file(path):
    """Return the hexadecimal SHA-256 checksum of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(_CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def checksum_tree(path):
    """Return ``{relative path: sha256}`` for a file, or for every file under a directory."""
    path = Path(path)
    if path.is_file():
        return {path.name: sha256_file(path)}
    return {
        str(item.relative_to(path)): sha256_file(item)
        for item in sorted(path.rglob("*")) if item.is_file()
    }


def package_versions():
    """Return the installed version of each package that affects halo-ml's numbers."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    versions["python"] = platform.python_version()
    return versions


def provenance(config=None, inputs=(), seeds=None, parameters=None):
    """Build the provenance dictionary of one output.

    Parameters
    ----------
    config : dict, optional
        The workflow configuration (stored whole, so the output can be remade).
    inputs : iterable of path-like
        Files or directories the output was computed from; each is checksummed.
    seeds : dict, optional
        Random seeds used, by purpose (for example ``{"selection": 0, "training": 3}``).
    parameters : dict, optional
        The parameters of the algorithm that made this output.

    Returns
    -------
    dict
        JSON-serialisable: ``created_utc``, ``host``, ``packages``, ``config``, ``seeds``,
        ``parameters`` and ``inputs`` (path to ``{file: sha256}``).
    """
    record = {
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "packages": package_versions(),
        "config": _jsonable(config) if config is not None else None,
        "seeds": _jsonable(seeds) if seeds is not None else None,
        "parameters": _jsonable(parameters) if parameters is not None else None,
        "inputs": {os.fspath(item): checksum_tree(item) for item in inputs},
    }
    return record


def write_provenance(path, record):
    """Write ``record`` as indented JSON next to an output (``<output>.provenance.json``)."""
    Path(path).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def _jsonable(value):
    # Round-trip through JSON so numpy scalars, tuples and paths become plain types.
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"cannot record {type(value).__name__} in provenance")
