"""CPython side of the `connection` group: prints one number (the median of its samples).

Children are started with the `fork` method (CPython 3.11's default on Linux) on one end of a
`Pipe()`; the Rust side (`mpbench`) does the same work with its default method (the fork server).

    python3 connection.py rtt_value        us per send(int) + recv() round trip through an echoing child
    python3 connection.py rtt_bytes8       us per send_bytes(8 bytes) + recv_bytes() round trip
    python3 connection.py oneway_msg64     msgs/s of 64-byte send_bytes to a child that counts them
    python3 connection.py oneway_mib1      MB/s of 1 MiB send_bytes to a child that counts them
    python3 connection.py transfer_100mb   s per 100 MB message, received whole, acknowledged
"""
import multiprocessing as mp
import statistics
import sys
import time

from sampling import BUDGET_S, sample


def echo_value(conn):
    try:
        while True:
            conn.send(conn.recv())
    except (EOFError, OSError):
        pass


def echo_bytes(conn):
    try:
        while True:
            conn.send_bytes(conn.recv_bytes())
    except (EOFError, OSError):
        pass


def count_sink(conn):
    """Counts messages until an empty one, then acknowledges the count; until end of file."""
    count = 0
    try:
        while True:
            if conn.recv_bytes():
                count += 1
            else:
                conn.send(count)
                count = 0
    except (EOFError, OSError):
        pass


def len_sink(conn):
    """Acknowledges every message with its length; until end of file."""
    try:
        while True:
            conn.send(len(conn.recv_bytes()))
    except (EOFError, OSError):
        pass


def run_child(target, conn, parent_end):
    parent_end.close()  # inherited through fork; closed so that the parent's close reaches the child
    target(conn)


class Child:
    def __init__(self, target):
        ctx = mp.get_context("fork")
        self.conn, child_end = ctx.Pipe()
        self.process = ctx.Process(target=run_child, args=(target, child_end, self.conn))
        self.process.start()
        child_end.close()

    def finish(self):
        self.conn.close()  # end of file: the child's loop ends
        self.process.join()
        assert self.process.exitcode == 0


def rtt_value():
    child = Child(echo_value)
    conn = child.conn

    def op():
        conn.send(42)
        assert conn.recv() == 42
    for _ in range(1000):
        op()
    us = statistics.median(sample(op, min_samples=1000)) * 1e6
    child.finish()
    return us


def rtt_bytes8():
    child = Child(echo_bytes)
    conn = child.conn

    def op():
        conn.send_bytes(b"01234567")
        assert len(conn.recv_bytes()) == 8
    for _ in range(1000):
        op()
    us = statistics.median(sample(op, min_samples=1000)) * 1e6
    child.finish()
    return us


def oneway_batches(size, count):
    """Median seconds per batch of `count` messages of `size` bytes closed by an acknowledged empty one."""
    child = Child(count_sink)
    conn = child.conn
    msg = b"\x5a" * size

    def batch():
        for _ in range(count):
            conn.send_bytes(msg)
        conn.send_bytes(b"")
        assert conn.recv() == count
    batch()
    secs = statistics.median(sample(batch, max_samples=10_000))
    child.finish()
    return secs


def oneway_msg64():
    count = 20_000
    return count / oneway_batches(64, count)


def oneway_mib1():
    count = 32
    return count * (1 << 20) / 1e6 / oneway_batches(1 << 20, count)


def transfer_100mb():
    size = 100_000_000
    child = Child(len_sink)
    conn = child.conn
    msg = b"\x5a" * size

    def op():
        conn.send_bytes(msg)
        assert conn.recv() == size
    op()
    secs = statistics.median(sample(op, max_samples=100))
    child.finish()
    return secs


if __name__ == "__main__":
    metrics = {f.__name__: f for f in (rtt_value, rtt_bytes8, oneway_msg64, oneway_mib1, transfer_100mb)}
    if len(sys.argv) != 2 or sys.argv[1] not in metrics:
        sys.exit(f"usage: connection.py {' | '.join(metrics)}")
    print(metrics[sys.argv[1]]())
