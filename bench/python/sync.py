"""CPython side of the `sync` group: prints one number (the median of its samples).

Children are started with the `fork` method (CPython 3.11's default on Linux); the Rust side
(`mpbench`) does the same work with its own primitives.

    python3 sync.py lock_uncontended     ns per Lock() acquire() + release(), no other process
    python3 sync.py counter_2proc        ops/s, two processes adding 1 to a Value('i') under its lock
    python3 sync.py semaphore_pingpong   us per round trip through two Semaphore(0) with a child
    python3 sync.py event_pingpong       us per round trip through two Event() with a child
"""
import multiprocessing as mp
import statistics
import sys
import time

from sampling import BUDGET_S, sample


def lock_uncontended():
    lock = mp.get_context("fork").Lock()
    acquire, release = lock.acquire, lock.release
    batch = 10_000

    def op():
        for _ in range(batch):
            acquire()
            release()
    op()
    return statistics.median(sample(op)) / batch * 1e9


# counter_2proc: two children, once both run, add 1 to the shared counter `count` times each
# (`with v.get_lock(): v.value += 1`) and report when they started and ended.
COUNTER_OPS = 100_000  # per process and trial
COUNTER_TRIALS = 5


def counter_worker(v, ready, go, times, slot, count):
    ready.release()
    go.wait()
    start = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
    get_lock = v.get_lock
    for _ in range(count):
        with get_lock():
            v.value += 1
    times[2 * slot], times[2 * slot + 1] = start, time.perf_counter()


def counter_trial(ctx, count):
    v = ctx.Value("i", 0)
    ready, go = ctx.Semaphore(0), ctx.Event()
    times = ctx.Array("d", 4, lock=False)
    workers = [ctx.Process(target=counter_worker, args=(v, ready, go, times, i, count)) for i in range(2)]
    for w in workers:
        w.start()
    for _ in workers:
        ready.acquire()  # both children run: they start adding together
    go.set()
    for w in workers:
        w.join()
        assert w.exitcode == 0
    assert v.value == 2 * count, f"lost updates: {v.value} != {2 * count}"
    span = max(times[1], times[3]) - min(times[0], times[2])
    return 2 * count / span


def counter_2proc():
    ctx = mp.get_context("fork")
    counter_trial(ctx, COUNTER_OPS // 10)  # warm-up
    return statistics.median(counter_trial(ctx, COUNTER_OPS) for _ in range(COUNTER_TRIALS))


def semaphore_echo(ping, pong):
    while True:
        ping.acquire()
        pong.release()


def event_echo(a, b):
    while True:
        a.wait()
        a.clear()
        b.set()


def pingpong(target, make, op):
    ctx = mp.get_context("fork")
    x, y = make(ctx), make(ctx)
    child = ctx.Process(target=target, args=(x, y), daemon=True)
    child.start()

    def round_trip():
        op(x, y)
    for _ in range(1000):
        round_trip()
    us = statistics.median(sample(round_trip, min_samples=1000)) * 1e6
    child.terminate()
    child.join()
    return us


def semaphore_round_trip(ping, pong):
    ping.release()
    pong.acquire()


def event_round_trip(a, b):
    a.set()
    b.wait()
    b.clear()


def semaphore_pingpong():
    return pingpong(semaphore_echo, lambda ctx: ctx.Semaphore(0), semaphore_round_trip)


def event_pingpong():
    return pingpong(event_echo, lambda ctx: ctx.Event(), event_round_trip)


if __name__ == "__main__":
    metrics = {f.__name__: f for f in (lock_uncontended, counter_2proc, semaphore_pingpong, event_pingpong)}
    if len(sys.argv) != 2 or sys.argv[1] not in metrics:
        sys.exit(f"usage: sync.py {' | '.join(metrics)}")
    print(metrics[sys.argv[1]]())
