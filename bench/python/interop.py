"""The `interop` group: CPython clients (CPython's own SyncManager/BaseManager and proxies) against
this crate's manager server (`ours`) and against CPython's own server (`cpython`), the same client
code on both sides.

    python3 bench/python/interop.py METRIC ours|cpython

Ours is `examples/manager_for_python.rs` (built here, release), started with `--serve`; CPython's is
a `SyncManager` server started in a child process with the same named objects (`get_dict`,
`get_queue`). The client runs in this process (one client) or in 8 forked processes; each client
thread has its own channel to the server, as CPython's proxies do. Prints one number.

Metrics:
    dict_set_get    one client: d[k] = v then d[k], microseconds per call
    queue_put_get   one client: q.put(x) then q.get(), microseconds per call
    proxy_create    one client: m.dict() and its release, milliseconds (three connections each)
    dict_set_get_8  8 client processes at once on one dict: calls per second, all together
    queue_put_get_8 8 client processes at once on one queue: calls per second, all together
"""
import os
import queue
import subprocess
import sys
import time
from multiprocessing import get_context
from multiprocessing.managers import BaseManager, DictProxy, SyncManager

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEY = b"interop bench"
CALLS = 4000  # per client, each a set and a get (or a put and a get)
CLIENTS = 8


class Client(SyncManager):
    pass


Client.register("get_dict", proxytype=DictProxy)
Client.register("get_queue")


class CPythonServer(SyncManager):
    pass


_dict, _queue = {}, queue.Queue()
CPythonServer.register("get_dict", callable=lambda: _dict, proxytype=DictProxy)
CPythonServer.register("get_queue", callable=lambda: _queue)


def start_ours():
    build = subprocess.run(["cargo", "build", "--release", "-q", "--example", "manager_for_python"], cwd=ROOT)
    if build.returncode != 0:
        raise RuntimeError("building examples/manager_for_python failed")
    binary = os.path.join(ROOT, "target", "release", "examples", "manager_for_python")
    server = subprocess.Popen([binary, "--serve", "127.0.0.1:0", KEY.decode()], stdout=subprocess.PIPE, text=True)
    host, _, port = server.stdout.readline().strip().rpartition(":")
    return (host, int(port)), server.kill


def start_cpython():
    manager = CPythonServer(address=("127.0.0.1", 0), authkey=KEY, ctx=get_context("fork"))
    manager.start()
    # `shutdown` holds the manager weakly: the lambda keeps it alive while the bench runs.
    return manager.address, lambda: manager.shutdown()


def connect(address):
    m = Client(address=address, authkey=KEY)
    m.connect()
    return m


def dict_calls(address, calls, offset=0, go=None):
    d = connect(address).get_dict()
    d[offset] = 0  # the channel is opened outside the clock
    if go is not None:
        go.wait()
    start = time.perf_counter()
    for i in range(calls):
        d[offset + i % 64] = i
        d[offset + i % 64]
    return time.perf_counter() - start


def queue_calls(address, calls, offset=0, go=None):
    q = connect(address).get_queue()
    q.qsize()
    if go is not None:
        go.wait()
    start = time.perf_counter()
    for i in range(calls):
        q.put(i)
        q.get()
    return time.perf_counter() - start


def proxy_create(address):
    m = connect(address)
    m.dict()  # warm
    start = time.perf_counter()
    rounds = 50
    for _ in range(rounds):
        d = m.dict()
        del d
    return (time.perf_counter() - start) / rounds * 1e3


def in_children(address, work):
    """`CLIENTS` forked processes, released together, each making `CALLS` pairs; calls per second."""
    ctx = get_context("fork")
    go = ctx.Event()
    done = ctx.Queue()

    def client(index):
        done.put(work(address, CALLS, 1000 * index, go))

    processes = [ctx.Process(target=client, args=(i,)) for i in range(CLIENTS)]
    for p in processes:
        p.start()
    time.sleep(1)  # every client connected and waits for the start
    start = time.perf_counter()
    go.set()
    for _ in processes:
        done.get(timeout=120)
    elapsed = time.perf_counter() - start
    for p in processes:
        p.join()
    return CLIENTS * CALLS * 2 / elapsed


METRICS = {
    "dict_set_get": lambda a: dict_calls(a, CALLS) / (2 * CALLS) * 1e6,
    "queue_put_get": lambda a: queue_calls(a, CALLS) / (2 * CALLS) * 1e6,
    "proxy_create": proxy_create,
    "dict_set_get_8": lambda a: in_children(a, dict_calls),
    "queue_put_get_8": lambda a: in_children(a, queue_calls),
}


def main():
    metric, side = sys.argv[1], sys.argv[2]
    address, stop = start_ours() if side == "ours" else start_cpython()
    try:
        result = METRICS[metric](address)
    finally:
        stop()
    print(result)


if __name__ == "__main__":
    main()
