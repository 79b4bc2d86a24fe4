"""halo-ml: learn the z=0 halo mass of each dark-matter particle from the initial density field.

The package contains every step of the workflow as importable functions, one module per
stage of the data flow. The Snakemake rules under ``rules/`` only wire files to them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("halo-ml")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
