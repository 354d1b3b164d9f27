"""CPython side of the `queue` group: prints one number (the median of its trials).

Children are started with `fork` (CPython 3.11's default on Linux; they start before the clock).
Producers wait on a Barrier shared with the parent; the clock starts when the parent passes it and
stops at the latest time a consumer saw its end sentinel (JoinableQueue: when the producer's
`join()` returns). Each producer puts its ints then one None; each consumer stops at its first None.

    python3 queues.py queue_1p1c        items/s, Queue, 1 producer -> 1 consumer, 100k ints
    python3 queues.py queue_2p2c        items/s, Queue, 2 producers -> 2 consumers, 100k ints in all
    python3 queues.py simple_1p1c       items/s, SimpleQueue, 1 -> 1
    python3 queues.py joinable_1p1c     items/s, JoinableQueue, task_done per item, until join returns
    python3 queues.py transfer_100mb    s, one 100 MB bytes object put by a child, got by the parent
"""
import sys

# (Named `queues.py`: a `queue.py` here would shadow the standard module that multiprocessing
# imports, for every script of this folder.)
import multiprocessing as mp
import statistics
import time

ITEMS = 100_000
TRIALS = 3
ctx = mp.get_context("fork")


def producer(q, barrier, n):
    barrier.wait()
    for i in range(n):
        q.put(i)
    q.put(None)


def consumer(q, results):
    while q.get() is not None:
        pass
    results.put(time.monotonic_ns())


def joinable_producer(q, barrier, n, results):
    barrier.wait()
    for i in range(n):
        q.put(i)
    q.join()
    results.put(time.monotonic_ns())


def joinable_consumer(q):
    while True:
        q.get()
        q.task_done()


def throughput(make_queue, producers, consumers):
    rates = []
    for _ in range(TRIALS):
        q = make_queue()
        results = ctx.Queue()
        barrier = ctx.Barrier(producers + 1)
        per = ITEMS // producers
        procs = [ctx.Process(target=consumer, args=(q, results)) for _ in range(consumers)]
        procs += [ctx.Process(target=producer, args=(q, barrier, per)) for _ in range(producers)]
        for p in procs:
            p.start()
        barrier.wait()
        start = time.monotonic_ns()
        end = max(results.get() for _ in range(consumers))
        for p in procs:
            p.join()
        rates.append(ITEMS / ((end - start) / 1e9))
    return statistics.median(rates)


def queue_1p1c():
    return throughput(ctx.Queue, 1, 1)


def queue_2p2c():
    return throughput(ctx.Queue, 2, 2)


def simple_1p1c():
    return throughput(ctx.SimpleQueue, 1, 1)


def joinable_1p1c():
    rates = []
    for _ in range(TRIALS):
        q = ctx.JoinableQueue()
        results = ctx.Queue()
        barrier = ctx.Barrier(2)
        cons = ctx.Process(target=joinable_consumer, args=(q,), daemon=True)
        prod = ctx.Process(target=joinable_producer, args=(q, barrier, ITEMS, results))
        cons.start()
        prod.start()
        barrier.wait()
        start = time.monotonic_ns()
        end = results.get()
        prod.join()
        cons.terminate()
        cons.join()
        rates.append(ITEMS / ((end - start) / 1e9))
    return statistics.median(rates)


SIZE = 100_000_000


def big_producer(q, stamps):
    data = b"\x5a" * SIZE
    stamps.put("ready")
    time.sleep(0.2)  # the parent is blocked in get() by then
    stamps.put(time.monotonic_ns())
    q.put(data)


def transfer_100mb():
    secs = []
    for _ in range(TRIALS):
        q = ctx.Queue()
        stamps = ctx.Queue()
        p = ctx.Process(target=big_producer, args=(q, stamps))
        p.start()
        assert stamps.get() == "ready"
        data = q.get()
        end = time.monotonic_ns()
        start = stamps.get()
        assert len(data) == SIZE
        p.join()
        secs.append((end - start) / 1e9)
    return statistics.median(secs)


RTT_ROUNDS = 10_000


def echo(requests, replies):
    while True:
        n = requests.get()
        if n is None:
            return
        replies.put(n)


def rtt():
    """A round trip through two queues (a request, its echo): median us of the trials."""
    times = []
    for _ in range(TRIALS):
        requests, replies = ctx.Queue(), ctx.Queue()
        p = ctx.Process(target=echo, args=(requests, replies))
        p.start()
        for warm in range(100):
            requests.put(warm)
            replies.get()
        start = time.monotonic_ns()
        for i in range(RTT_ROUNDS):
            requests.put(i)
            assert replies.get() == i
        times.append((time.monotonic_ns() - start) / RTT_ROUNDS / 1e3)
        requests.put(None)
        p.join()
    return statistics.median(times)


if __name__ == "__main__":
    metrics = {f.__name__: f for f in (queue_1p1c, queue_2p2c, simple_1p1c, joinable_1p1c, transfer_100mb, rtt)}
    if len(sys.argv) != 2 or sys.argv[1] not in metrics:
        sys.exit(f"usage: queues.py {{{'|'.join(metrics)}}}")
    print(metrics[sys.argv[1]]())
