"""Tune: one trial of a hyperparameter search, run as its own task of the search's ParallelFor.

The logic is :func:`keel.search.run_trial`; this module is the stage's entry point, so that the
stage table's rule (module ``keel.<stage>``, component, image) holds for it too.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from keel.errors import reports_errors
from keel.settings import checked

#: Threads a trial's estimator may use (unset: all). Set where trials share a machine.
TRIAL_THREADS_ENV = "KEEL_TRIAL_THREADS"


@reports_errors
def run(train_path: str, spec_path: str, estimator: str, trial: str, seed: int,
        validation_size: float) -> str:
    """The tune stage: the trial's JSON result ("" for the single trial of a run with no search)."""
    threads = os.environ.get(TRIAL_THREADS_ENV, "")
    limit: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if threads.isdigit():  # before scikit-learn starts its OpenMP and BLAS thread pools
        for pool in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(pool, threads)
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

        # In a fork of the warm worker the pools were loaded already: limit them in place.
        limit = threadpool_limits(limits=int(threads))
    from keel.search import run_trial

    with limit:
        return run_trial(train_path, spec_path, checked("estimator", estimator), trial,
                         checked("seed", seed), checked("validation_size", validation_size))
