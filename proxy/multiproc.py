"""Prometheus metrics across ``perfics serve --workers``: the client's multiprocess mode needs
``PROMETHEUS_MULTIPROC_DIR`` set before ``prometheus_client`` is first imported, so the command
line enters ``metrics_directory`` before it imports the server. Nothing here imports it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def metrics_directory(workers: int) -> Iterator[None]:
    """For several workers, a fresh directory for the run under the temporary directory
    (``TMPDIR``, else /tmp) unless the variable names one already (which the operator then
    keeps empty between runs), removed at the end."""
    if workers <= 1 or os.environ.get(MULTIPROC_ENV):
        yield
        return
    made = tempfile.mkdtemp(prefix="perfics-metrics-")
    os.environ[MULTIPROC_ENV] = made
    try:
        yield
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(made, ignore_errors=True)
