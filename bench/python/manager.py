"""CPython side of the `manager` group: prints one number (the median of its samples).

The manager's server and the children use CPython's default start method (fork on 3.11, Linux);
the Rust side (`mpbench`) does the same work with `multiproc::Manager`.

    python3 manager.py manager_start        ms for Manager() (the server runs and answers), median of 20
    python3 manager.py manager_shutdown     ms for shutdown() of a manager with a proxy in use, median of 20
    python3 manager.py manager_dict_set     us per d[k] = v from a child, each timed alone, median of 20k
    python3 manager.py manager_dict_get     us per d[k] from a child, each timed alone, median of 20k
    python3 manager.py manager_list_append  us per l.append(i) from a child, each timed alone, median of 20k
    python3 manager.py manager_server_rss   kB resident in an idle manager server holding one dict
"""
import multiprocessing as mp
import statistics
import sys
import time

CYCLES = 20
OPS = 20_000
WARMUP = 500


def manager_start():
    samples = []
    for _ in range(CYCLES):
        t = time.perf_counter()
        manager = mp.Manager()
        samples.append(time.perf_counter() - t)
        manager.shutdown()
    return statistics.median(samples) * 1e3


def manager_shutdown():
    samples = []
    for _ in range(CYCLES):
        manager = mp.Manager()
        d = manager.dict()
        d[1] = 1
        t = time.perf_counter()
        manager.shutdown()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1e3


def time_each(op):
    for i in range(WARMUP):
        op(i)
    perf_counter = time.perf_counter
    samples = []
    for i in range(OPS):
        t = perf_counter()
        op(i)
        samples.append(perf_counter() - t)
    return statistics.median(samples)


def child_dict_set(d, conn):
    def op(i):
        d[i] = i
    conn.send(time_each(op))


def child_dict_get(d, conn):
    def op(i):
        d[i % 100]
    conn.send(time_each(op))


def child_list_append(l, conn):
    conn.send(time_each(l.append))


def from_child(which):
    with mp.Manager() as manager:
        ours, theirs = mp.Pipe()
        # The proxy is kept in a variable: CPython frees an object whose only parent-side proxy is
        # collected before the child increfs it.
        if which == "set":
            proxy, target = manager.dict(), child_dict_set
        elif which == "get":
            proxy, target = manager.dict({i: i for i in range(100)}), child_dict_get
        else:
            proxy, target = manager.list(), child_list_append
        p = mp.Process(target=target, args=(proxy, theirs))
        p.start()
        seconds = ours.recv()
        p.join()
    return seconds * 1e6


def manager_server_rss():
    with mp.Manager() as manager:
        d = manager.dict()
        d[1] = 1
        time.sleep(0.1)
        with open(f"/proc/{manager._process.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return float(line.split()[1])
    raise RuntimeError("no VmRSS")


METRICS = {
    "manager_start": manager_start,
    "manager_shutdown": manager_shutdown,
    "manager_dict_set": lambda: from_child("set"),
    "manager_dict_get": lambda: from_child("get"),
    "manager_list_append": lambda: from_child("append"),
    "manager_server_rss": manager_server_rss,
}

if __name__ == "__main__":
    print(METRICS[sys.argv[1]]())
