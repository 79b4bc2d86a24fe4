"""Logging for halo-ml: one named logger per subsystem, and timing of slow steps.

Each module logs through ``logging.getLogger(__name__)`` (``halo_ml.ingest``,
``halo_ml.training``, ...), so a user can raise or lower the verbosity of one stage alone.
"""

import contextlib
import logging
import sys
import time

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(log_file=None, level=logging.INFO):
    """Send halo-ml's log records to stderr and, optionally, to ``log_file``.

    Workflow scripts call this once at start; library code never configures logging.
    """
    root = logging.getLogger("halo_ml")
    root.setLevel(level)
    root.handlers.clear()
    formatter = logging.Formatter(_FORMAT, datefmt="%Y-%m-%d %H:%M:%S")

    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(formatter)
    root.addHandler(stream)

    if log_file is not None:
        handler = logging.FileHandler(log_file)
        handler.setFormatter(formatter)
        root.addHandler(handler)
    return root


@contextlib.contextmanager
def log_duration(logger, description):
    """Log ``description`` when a step starts and again with its wall time when it ends.

    Yields a dictionary; values put in it under string keys are added to the closing line
    (for example the number of particles processed).
    """
    details = {}
    logger.info("%s ...", description)
    start = time.perf_counter()
    yield details
    elapsed_s = time.perf_counter() - start
    extra = "".join(f", {key} {value}" for key, value in details.items())
    logger.info("%s done in %.1f s%s", description, elapsed_s, extra)
