"""CPython side of the `pool` group: prints one number (the median of its samples).

    python3 pool.py map_chunk1              tasks/s of Pool().map(square, range(100000), chunksize=1)
    python3 pool.py map_default             tasks/s of Pool().map(square, range(100000))
    python3 pool.py apply_async_10k         tasks/s of 10000 apply_async, then get() of each
    python3 pool.py imap_unordered_chunk1   tasks/s of imap_unordered(square, range(100000))
    python3 pool.py apply_rtt               us per apply(square, (3,)), one call after another
    python3 pool.py start_first_result      ms from Pool() to the result of map(square, [3])
    python3 pool.py close_join              ms of close() + join() of a pool that ran a map
    python3 pool.py worker_rss              kB resident in an idle worker (median over workers)
    python3 pool.py cpu_bound N             s for 20*N busy tasks of 3 ms on N workers (scaling)
    python3 pool.py tiny N                  tasks/s of map(square, range(100000), chunksize=1), N workers

The pool has os.cpu_count() workers and CPython's default start method (fork on Linux before 3.14),
as `Pool()` gives.
"""
import multiprocessing as mp
import os
import statistics
import sys
import time

from sampling import sample

TASKS = 100_000


def square(x):
    return x * x


def pid(_):
    return os.getpid()


def rate(tasks, run):
    run()  # warm-up
    return tasks / statistics.median(sample(run, budget_s=1.0, min_samples=2, max_samples=50))


def map_rate(chunksize):
    with mp.Pool() as pool:
        def run():
            if chunksize is None:
                values = pool.map(square, range(TASKS))
            else:
                values = pool.map(square, range(TASKS), chunksize=chunksize)
            assert len(values) == TASKS
        return rate(TASKS, run)


def apply_async_rate():
    with mp.Pool() as pool:
        def run():
            results = [pool.apply_async(square, (i,)) for i in range(10_000)]
            for i, r in enumerate(results):
                assert r.get() == i * i
        return rate(10_000, run)


def imap_unordered_rate():
    with mp.Pool() as pool:
        def run():
            assert sum(pool.imap_unordered(square, range(TASKS))) > 0
        return rate(TASKS, run)


def apply_rtt():
    with mp.Pool() as pool:
        def call():
            assert pool.apply(square, (3,)) == 9
        for _ in range(100):
            call()
        return statistics.median(sample(call, budget_s=1.0, min_samples=1000, max_samples=100_000)) * 1e6


def start_first_result():
    for _ in range(3):
        with mp.Pool() as pool:
            assert pool.map(square, [3]) == [9]
    samples = []
    start = time.perf_counter()
    while len(samples) < 200 and (len(samples) < 10 or time.perf_counter() - start < 1.0):
        t = time.perf_counter()
        pool = mp.Pool()
        assert pool.map(square, [3]) == [9]
        samples.append(time.perf_counter() - t)
        pool.terminate()
        pool.join()
    return statistics.median(samples) * 1e3


def close_join():
    samples = []
    start = time.perf_counter()
    while len(samples) < 200 and (len(samples) < 10 or time.perf_counter() - start < 1.0):
        pool = mp.Pool()
        assert len(pool.map(square, range(100))) == 100
        t = time.perf_counter()
        pool.close()
        pool.join()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1e3


def rss_kb(p):
    with open(f"/proc/{p}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return float(line.split()[1])
    raise RuntimeError("no VmRSS")


def worker_rss():
    with mp.Pool() as pool:
        n = len(pool._pool)
        pids = sorted(set(pool.map(pid, range(50 * n), chunksize=1)))
        return statistics.median(rss_kb(p) for p in pids)


def spin(micros):
    start = time.perf_counter()
    spins = 0
    while time.perf_counter() - start < micros / 1e6:
        spins += 1
    return spins


def cpu_bound(workers):
    """Seconds for 20 * workers tasks of 3 ms on `workers` workers (chunksize 1)."""
    with mp.Pool(workers) as pool:
        tasks = 20 * workers
        def run():
            assert len(pool.map(spin, [3000] * tasks, chunksize=1)) == tasks
        run()
        return statistics.median(sample(run, budget_s=1.0, min_samples=3, max_samples=20))


def tiny(workers):
    """Tasks/s of map(square, range(100000), chunksize=1) on `workers` workers."""
    with mp.Pool(workers) as pool:
        def run():
            assert len(pool.map(square, range(TASKS), chunksize=1)) == TASKS
        return rate(TASKS, run)


METRICS = {
    "map_chunk1": lambda: map_rate(1),
    "map_default": lambda: map_rate(None),
    "apply_async_10k": apply_async_rate,
    "imap_unordered_chunk1": imap_unordered_rate,
    "apply_rtt": apply_rtt,
    "start_first_result": start_first_result,
    "close_join": close_join,
    "worker_rss": worker_rss,
}

if __name__ == "__main__":
    if sys.argv[1] in ("cpu_bound", "tiny"):
        print(globals()[sys.argv[1]](int(sys.argv[2])))
    else:
        print(METRICS[sys.argv[1]]())
