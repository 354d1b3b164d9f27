"""A CPython manager for tests/cpython_manager.rs (standard library only).

Usage: python3 manager_peer.py FAMILY KEY

FAMILY is "tcp" (127.0.0.1, a free port) or "unix" (a fresh socket path); KEY is hex. The peer
serves a SyncManager (with SyncManager's typeids: Queue, dict, list, Event, Lock, ...) and more and prints its address ("host:port" or the path) as the first line on stdout
once it accepts connections. Then it reads commands on stdin, one a line, answering each with one
line on stdout:

  queue          the next item of the shared queue (repr), waiting up to 5 s
  put LITERAL    puts the Python literal on the shared queue; answers "ok"
  dict           the shared dict's items, sorted (repr)

End of stdin ends the peer; so does an alarm after LIMIT seconds. Registered typeids:
  get_queue  the shared queue.Queue
  get_dict   the shared dict (DictProxy)
  Store      get(k) raises KeyError for a missing key; set(k, v); func() returns a lambda;
             me() returns the Store itself (an instance); price() a decimal.Decimal
  Gate       wait() prints "blocked" and never returns
  Maker      child() returns a dict, handed out as a new 'dict' proxy (method_to_typeid)
"""

import ast
import decimal
import os
import queue
import signal
import sys
import threading
from multiprocessing.managers import DictProxy, SyncManager

LIMIT = 30  # seconds before the peer gives up

signal.signal(signal.SIGALRM, lambda *_: os._exit(2))
signal.alarm(LIMIT)

shared_queue = queue.Queue()
shared_dict = {}


class Store:
    def __init__(self):
        self.items = {}

    def get(self, key):
        return self.items[key]

    def set(self, key, value):
        self.items[key] = value

    def func(self):
        return lambda: None

    def me(self):
        return self

    def price(self):
        return decimal.Decimal("1.50")


class Gate:
    def wait(self):
        print("blocked", flush=True)
        threading.Event().wait()


class Maker:
    def child(self):
        return {"made": 1}


class PeerManager(SyncManager):
    pass


PeerManager.register("get_queue", callable=lambda: shared_queue)
PeerManager.register("get_dict", callable=lambda: shared_dict, proxytype=DictProxy)
PeerManager.register("Store", Store)
PeerManager.register("Gate", Gate)
PeerManager.register("Maker", Maker, method_to_typeid={"child": "dict"})


def main():
    family, key = sys.argv[1], bytes.fromhex(sys.argv[2])
    address = ("127.0.0.1", 0) if family == "tcp" else None
    manager = PeerManager(address=address, authkey=key)
    server = manager.get_server()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    if isinstance(server.address, tuple):
        print(f"{server.address[0]}:{server.address[1]}", flush=True)
    else:
        print(server.address, flush=True)
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "queue":
            print(repr(shared_queue.get(timeout=5)), flush=True)
        elif command == "put":
            shared_queue.put(ast.literal_eval(arg))
            print("ok", flush=True)
        elif command == "dict":
            print(repr(sorted(shared_dict.items())), flush=True)
        else:
            print(f"unknown command {command!r}", flush=True)
    os._exit(0)


main()
