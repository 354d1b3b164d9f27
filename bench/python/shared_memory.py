"""CPython side of the `shared_memory` group: prints one number (the median of its samples).

Children are started with the `fork` method (CPython 3.11's default on Linux); the Rust side
(`mpbench`) does the same work with `multiproc`'s `SharedMemory` and `Array`.

    python3 shared_memory.py lifecycle_4k       us per create(4 KiB) + attach + close both + unlink
    python3 shared_memory.py array_write_locked ns per arr[i] = v on a synchronized Array('i', 1024)
    python3 shared_memory.py array_slice_write  us per arr[:] = values (1024 elements, synchronized)
    python3 shared_memory.py transfer_256mib    MB/s: a child writes 256 MiB into a fresh segment,
                                                the parent copies it out (child's first write to
                                                the parent's last byte read)
"""
import multiprocessing as mp
import statistics
import sys
import time
from multiprocessing import shared_memory

from sampling import sample


def lifecycle_4k():
    def op():
        a = shared_memory.SharedMemory(create=True, size=4096)
        b = shared_memory.SharedMemory(a.name)
        b.close()
        a.close()
        a.unlink()
    op()  # starts the resource tracker
    return statistics.median(sample(op, max_samples=5000)) * 1e6


def array_write_locked():
    arr = mp.get_context("fork").Array("i", 1024)
    batch = 10_000

    def op():
        for i in range(batch):
            arr[i & 1023] = i
    op()
    return statistics.median(sample(op)) / batch * 1e9


def array_slice_write():
    arr = mp.get_context("fork").Array("i", 1024)
    values = list(range(1024))
    batch = 100

    def op():
        for _ in range(batch):
            arr[:] = values
    op()
    return statistics.median(sample(op)) / batch * 1e6


SIZE = 256 * 1024 * 1024
REPS = 3


def writer(name, src, started, done):
    shm = shared_memory.SharedMemory(name)
    started.value = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
    shm.buf[:] = src
    shm.close()
    done.set()


def transfer_once(ctx, src, dst):
    shm = shared_memory.SharedMemory(create=True, size=SIZE)
    started = ctx.Value("d", 0.0, lock=False)
    done = ctx.Event()
    child = ctx.Process(target=writer, args=(shm.name, src, started, done))
    child.start()
    done.wait()
    dst[:] = shm.buf
    end = time.perf_counter()
    child.join()
    shm.close()
    shm.unlink()
    return SIZE / (end - started.value) / 1e6


def transfer_256mib():
    ctx = mp.get_context("fork")
    src = bytes([0x5A]) * SIZE
    dst = bytearray(SIZE)  # pre-faulted: the copy out is a plain memcpy
    return statistics.median(transfer_once(ctx, src, dst) for _ in range(REPS))


if __name__ == "__main__":
    metrics = {f.__name__: f for f in (lifecycle_4k, array_write_locked, array_slice_write, transfer_256mib)}
    if len(sys.argv) != 2 or sys.argv[1] not in metrics:
        sys.exit(f"usage: shared_memory.py {' | '.join(metrics)}")
    print(metrics[sys.argv[1]]())
