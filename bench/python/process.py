"""CPython side of the `process` group: prints one number (the median of its samples).

    python3 process.py start_join METHOD    ms per Process(target=noop) start + join
    python3 process.py child_rss METHOD     kB resident in an idle child
"""
import multiprocessing as mp
import os
import statistics
import sys
import time


def noop():
    pass


def idle(ready, go):
    ready.set()
    go.wait()


def start_join(ctx, budget_s=1.0, min_samples=10, max_samples=3000):
    def run():
        p = ctx.Process(target=noop)
        p.start()
        p.join()
        assert p.exitcode == 0
    for _ in range(3):  # warm-up; starts the fork server
        run()
    samples = []
    start = time.perf_counter()
    while len(samples) < max_samples and (len(samples) < min_samples or time.perf_counter() - start < budget_s):
        t = time.perf_counter()
        run()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1e3


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return float(line.split()[1])
    raise RuntimeError("no VmRSS")


def child_rss(ctx):
    samples = []
    for _ in range(5):
        ready, go = ctx.Event(), ctx.Event()
        p = ctx.Process(target=idle, args=(ready, go))
        p.start()
        ready.wait()
        samples.append(rss_kb(p.pid))
        go.set()
        p.join()
    return statistics.median(samples)


if __name__ == "__main__":
    what, method = sys.argv[1], sys.argv[2]
    ctx = mp.get_context(method)
    if what == "start_join":
        print(start_join(ctx))
    elif what == "child_rss":
        print(child_rss(ctx))
    else:
        sys.exit(f"unknown metric {what}")
