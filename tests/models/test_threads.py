"""Building models in one thread while another predicts: no fx NameError, no dtype leak."""

from __future__ import annotations

import threading
import time

import numpy as np
import torch

from macelerate._mace import model_construction, model_inference
from macelerate.calculator import Calculator
from macelerate.models.loading import load
from macelerate.testing import tiny_mace


def test_predicting_while_another_thread_builds_models(tiny_model, silicon):
    """Without the build lock, the predictor sees float64 as default dtype during builds (and
    now and then fx's NameError); with it, every prediction is exact and sees the default."""
    calculator = Calculator(load(tiny_model, dtype="float32"))
    silicon.calc = calculator
    reference = silicon.get_forces().copy()
    default = torch.get_default_dtype()
    done, errors, counts = threading.Event(), [], {"builds": 0, "predictions": 0}

    def build() -> None:
        while not done.is_set():
            tiny_mace([14], channels=4, max_ell=1, num_interactions=1, dtype="float64")
            counts["builds"] += 1
            time.sleep(0.05)  # room for a few predictions between builds

    def predict() -> None:
        atoms = silicon.copy()
        deadline = time.monotonic() + 20.0
        while counts["builds"] < 3 and time.monotonic() < deadline and not errors:
            try:
                calculator.calculate(atoms, ["energy", "forces"])
                with model_inference():
                    seen = torch.get_default_dtype()
                forces = calculator.results["forces"]
                if seen != default or not np.allclose(forces, reference, atol=1e-5):
                    errors.append(f"default dtype {seen}, |ΔF| {abs(forces - reference).max()}")
            except Exception as error:  # the old code raised NameError from fx here
                errors.append(repr(error))
            counts["predictions"] += 1
        done.set()

    threads = [threading.Thread(target=build), threading.Thread(target=predict)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]
    assert counts["builds"] >= 3 and counts["predictions"] >= 3, counts
    assert torch.get_default_dtype() == default


def test_the_build_lock_nests_and_two_predictors_may_build_at_once():
    with model_inference(), model_inference(), model_construction(), model_inference():
        with model_construction():
            pass
    barrier, finished = threading.Barrier(2, timeout=10), []

    def predict_then_build() -> None:
        with model_inference():
            barrier.wait()  # both threads hold the lock shared before either builds
            with model_construction():
                time.sleep(0.01)
            with model_inference():
                finished.append(threading.get_ident())

    threads = [threading.Thread(target=predict_then_build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert len(finished) == 2
