"""CPython's half of tests/shm_interop.rs: SharedMemory and ShareableList shared with Rust.

Usage: shm_peer.py MODE [ARGS]. Prints one JSON object per line on stdout; where a mode waits
for the Rust side, it reads one line from stdin. Blocks this script only attaches to are
untracked, so that CPython's tracker
never unlinks a block Rust owns (gh-82300): attaching registers the block with CPython's tracker
(before 3.13 always; since, unless track=False, which ShareableList does not take), so the peer
unregisters it.
"""

import json
import signal
import sys
from multiprocessing import resource_tracker, shared_memory


def on_alarm(signum, frame):
    sys.stderr.write("shm_peer: timed out\n")
    sys.exit(3)


def out(**fields):
    print(json.dumps(fields), flush=True)


def attach(name):
    shm = shared_memory.SharedMemory(name)
    resource_tracker.unregister(shm._name, "shared_memory")
    return shm


def attach_list(name):
    sl = shared_memory.ShareableList(name=name)
    resource_tracker.unregister(sl.shm._name, "shared_memory")
    return sl


def encode(items):
    """JSON for a list of ShareableList items: bytes as {"b": hex}, floats as {"f": repr}."""
    def one(v):
        if isinstance(v, bytes):
            return {"b": v.hex()}
        if isinstance(v, float):
            return {"f": repr(v)}
        return v
    return [one(v) for v in items]


SEVEN = ['howdy', b'HoWdY', -273.154, 100, None, True, 42]


def main():
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(10)
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "create_shm":
        shm = shared_memory.SharedMemory(create=True, size=int(args[0]))
        shm.buf[:5] = b"howdy"
        out(name=shm.name, size=shm.size)
        sys.stdin.readline()
        out(head=bytes(shm.buf[:10]).hex())
        shm.close()
        shm.unlink()
    elif mode == "attach_shm":
        shm = attach(args[0])
        out(size=shm.size, head=bytes(shm.buf[:5]).hex())
        shm.buf[5:10] = b"HOWDY"
        shm.close()
    elif mode == "create_list":
        sl = shared_memory.ShareableList(SEVEN)
        out(name=sl.shm.name, format=sl.format, raw=bytes(sl.shm.buf).hex())
        sys.stdin.readline()
        out(items=encode(sl))
        sl.shm.close()
        sl.shm.unlink()
    elif mode == "attach_list":
        sl = attach_list(args[0])
        out(items=encode(sl), format=sl.format, len=len(sl))
        sl[-1] = -999
        sl[0] = "hi"
        sl[4] = b"bytes!"
        sl.shm.close()
    elif mode == "layout":
        sl = shared_memory.ShareableList(json.loads(args[0]))
        out(format=sl.format, raw=bytes(sl.shm.buf).hex())
        sl.shm.close()
        sl.shm.unlink()
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
