"""Sampling shared by the CPython benchmark scripts (the same policy as `mpbench`'s `sample`)."""
import time

BUDGET_S = 1.0  # sampling time per metric, after the warm-up (as in mpbench)


def sample(op, budget_s=BUDGET_S, min_samples=5, max_samples=1_000_000):
    """Runs `op` for about `budget_s` (at least `min_samples`, at most `max_samples` times) and
    returns the seconds each call took."""
    samples = []
    perf_counter = time.perf_counter
    start = perf_counter()
    while len(samples) < max_samples and (len(samples) < min_samples or perf_counter() - start < budget_s):
        t = perf_counter()
        op()
        samples.append(perf_counter() - t)
    return samples
