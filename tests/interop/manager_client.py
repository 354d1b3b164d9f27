"""CPython clients of multiproc's manager server (tests/python_clients.rs): CPython's own
SyncManager/BaseManager and proxies, unchanged, against a server written in Rust. Every check is
what CPython's own server gives (the same script passes against CPython's server: run it with
"--cpython" to check that).

Usage: python3 manager_client.py HOST:PORT KEY_HEX [SCENARIO ...]    (all scenarios without names)

Prints "ok NAME" per scenario; on a failure, the traceback on stderr and exit status 1.
"""

import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
import traceback
from multiprocessing.managers import BaseManager, DictProxy, ListProxy, RemoteError, SyncManager

signal.alarm(60)

SHORT = 0.05


class Remote(SyncManager):
    pass


# Objects the Rust side named before serving (Server::register, ManagerClient::named).
Remote.register("get_queue")
Remote.register("get_results")
Remote.register("get_shared", proxytype=DictProxy)
Remote.register("get_items", proxytype=ListProxy)
Remote.register("LifoQueue")
Remote.register("MathsClass")


def raises(exception, function, *args, **kwargs):
    try:
        function(*args, **kwargs)
    except exception as e:
        return e
    raise AssertionError("%s did not raise %s" % (getattr(function, "__name__", function), exception.__name__))


def scenario_dict(m):
    d = m.dict()
    d["a"] = 1
    d[2] = "two"
    d[(1, 2)] = [3]
    assert d["a"] == 1 and d[2] == "two" and d[(1, 2)] == [3]
    assert len(d) == 3 and "a" in d and "z" not in d
    e = raises(KeyError, lambda: d["missing"])
    assert e.args == ("missing",), e.args
    assert d.get("missing") is None and d.get("missing", 5) == 5
    assert d.keys() == ["a", 2, (1, 2)] and d.values() == [1, "two", [3]]
    assert d.items() == [("a", 1), (2, "two"), ((1, 2), [3])]
    assert d.copy() == {"a": 1, 2: "two", (1, 2): [3]}
    assert list(d) == ["a", 2, (1, 2)], list(d)  # __iter__ gives an Iterator proxy
    d.update({"b": 2}, c=3)
    d.update([("e", 5)])
    assert d.setdefault("a", 99) == 1 and d.setdefault("f", 6) == 6
    assert d.pop("f") == 6 and d.pop("f", None) is None
    raises(KeyError, d.pop, "f")
    assert d.popitem() == ("e", 5)
    del d["c"]
    raises(KeyError, d.__delitem__, "c")
    d[1.0] = "float"  # 1.0 == 1, and keeps the first form of the key
    d[True] = "bool"
    assert d[1] == "bool" and len([k for k in d.keys() if k == 1]) == 1
    raises(TypeError, d.__setitem__, ["unhashable"], 1)
    assert str(d) == str(d.copy()), str(d)
    d.clear()
    assert len(d) == 0 and d.copy() == {}
    raises(KeyError, m.dict().popitem)
    assert dict(m.dict({"x": 1}, y=2)) == {"x": 1, "y": 2}


def scenario_list(m):
    l = m.list([3, 1, 2])
    l.append(4)
    l.extend([5, 6])
    assert l[0] == 3 and l[-1] == 6 and len(l) == 6
    assert l[1:3] == [1, 2] and l[::2] == [3, 2, 5] and l[::-1] == [6, 5, 4, 2, 1, 3]
    raises(IndexError, lambda: l[10])
    l[0] = 30
    l[1:3] = [10, 20, 25]
    assert l[:] == [30, 10, 20, 25, 4, 5, 6], l[:]
    del l[0]
    del l[::2]
    assert l[:] == [20, 4, 6], l[:]
    raises(ValueError, l.index, 99)
    assert l.index(4) == 1 and l.count(4) == 1 and 6 in l and 7 not in l
    l.insert(0, 1)
    l.sort()
    assert l[:] == [1, 4, 6, 20]
    l.sort(reverse=True)
    assert l[:] == [20, 6, 4, 1]
    l.reverse()
    assert l.pop() == 20 and l.pop(0) == 1
    l.remove(4)
    raises(ValueError, l.remove, 4)
    l += [7]
    l *= 2
    assert l[:] == [6, 7, 6, 7], l[:]
    assert l + [1] == [6, 7, 6, 7, 1] and l * 2 == [6, 7] * 4
    assert list(l) == [6, 7, 6, 7]  # iterates by __getitem__ until IndexError
    assert list(reversed(l)) == [7, 6, 7, 6]
    assert str(l) == "[6, 7, 6, 7]"
    raises(TypeError, m.list([1, "a"]).sort)
    raises(IndexError, m.list().pop)
    assert l._getvalue() == [6, 7, 6, 7]


def scenario_namespace(m):
    ns = m.Namespace()
    ns.x = 1
    ns.name = "n"
    assert ns.x == 1 and ns.name == "n"
    raises(AttributeError, lambda: ns.missing)
    del ns.x
    raises(AttributeError, lambda: ns.x)
    assert str(ns) == "Namespace(name='n')", str(ns)


def scenario_value_array(m):
    v = m.Value("i", 5)
    assert v.value == 5
    v.value = 7
    assert v.get() == 7
    a = m.Array("i", [1, 2, 3])
    assert len(a) == 3 and a[0] == 1 and a[-1] == 3
    a[0] = 10
    assert list(a) == [10, 2, 3]
    assert a[1:3].tolist() == [2, 3] and a[1:3].typecode == "i"
    raises(TypeError, a.__setitem__, 0, "x")
    raises(OverflowError, a.__setitem__, 0, 2**40)
    raises(IndexError, lambda: a[5])
    d = m.Array("d", [1, 2.5])
    assert d[0] == 1.0 and isinstance(d[0], float)


def scenario_queue(m):
    q = m.Queue()
    q.put(1)
    q.put_nowait(("two", 2))
    assert q.qsize() == 2 and not q.empty() and not q.full()
    assert q.get() == 1 and q.get_nowait() == ("two", 2)
    raises(queue.Empty, q.get_nowait)
    raises(queue.Empty, q.get, timeout=SHORT)
    raises(queue.Empty, q.get, False)
    raises(ValueError, q.get, timeout=-1)
    bounded = m.Queue(1)
    bounded.put("x")
    assert bounded.full()
    raises(queue.Full, bounded.put_nowait, "y")
    raises(queue.Full, bounded.put, "y", timeout=SHORT)
    # A getter in another thread (its own channel) wakes a blocked put.
    t = threading.Thread(target=lambda: (time.sleep(SHORT), bounded.get()))
    t.start()
    bounded.put("y")
    t.join()
    assert bounded.get() == "y"
    jq = m.JoinableQueue()
    for i in range(3):
        jq.put(i)

    def work():
        while True:
            try:
                jq.get(timeout=SHORT)
            except queue.Empty:
                return
            jq.task_done()

    worker = threading.Thread(target=work)
    worker.start()
    jq.join()
    worker.join()
    raises(ValueError, jq.task_done)


def scenario_locks(m):
    lock = m.Lock()
    with lock:
        held = []
        t = threading.Thread(target=lambda: held.append(lock.acquire(False)))
        t.start()
        t.join()
        assert held == [False]
        assert lock.acquire(timeout=SHORT) is False
    assert lock.acquire(False) is True
    lock.release()
    raises(RuntimeError, lock.release)
    raises(ValueError, lock.acquire, False, 1)

    rlock = m.RLock()
    with rlock:
        with rlock:
            pass
        errors = []

        def foreign_release():
            try:
                rlock.release()
            except RuntimeError as e:
                errors.append(e)

        t = threading.Thread(target=foreign_release)
        t.start()
        t.join()
        assert len(errors) == 1
    raises(RuntimeError, rlock.release)

    sem = m.Semaphore(2)
    assert sem.acquire() and sem.acquire()
    assert sem.acquire(False) is False
    assert sem.acquire(timeout=SHORT) is False
    sem.release()
    sem.release()
    bounded = m.BoundedSemaphore(1)
    with bounded:
        pass
    raises(ValueError, bounded.release)


def scenario_event(m):
    e = m.Event()
    assert not e.is_set()
    assert e.wait(SHORT) is False
    t = threading.Timer(SHORT, e.set)
    t.start()
    assert e.wait(5) is True and e.is_set()
    t.join()
    e.clear()
    assert not e.is_set()


def scenario_condition(m):
    c = m.Condition()
    raises(RuntimeError, c.notify)
    ready = m.Value("b", False)
    with c:
        assert c.wait(SHORT) is False

        def notifier():
            with c:
                ready.value = True
                c.notify_all()

        t = threading.Thread(target=notifier)
        t.start()
        assert c.wait_for(lambda: ready.value, 5)
        t.join()


def scenario_barrier(m):
    b = m.Barrier(3)
    assert b.parties == 3 and b.n_waiting == 0 and not b.broken
    indices = []
    threads = [threading.Thread(target=lambda: indices.append(b.wait())) for _ in range(2)]
    for t in threads:
        t.start()
    indices.append(b.wait())
    for t in threads:
        t.join()
    assert sorted(indices) == [0, 1, 2], indices
    raises(threading.BrokenBarrierError, b.wait, SHORT)
    assert b.broken
    b.reset()
    assert not b.broken
    b.abort()
    raises(threading.BrokenBarrierError, b.wait)


def scenario_errors(m):
    d = m.dict()
    e = raises(RemoteError, d._callmethod, "not_a_method")
    assert "not in exposed" in str(e), str(e)
    e = raises(KeyError, d.__getitem__, (1, "k"))
    assert e.args == ((1, "k"),)


def scenario_refcounts(m):
    before = m._number_of_objects()
    d = m.dict()
    l = m.list()
    assert m._number_of_objects() == before + 2
    del d, l
    deadline = time.time() + 5
    while m._number_of_objects() != before and time.time() < deadline:
        time.sleep(0.01)
    assert m._number_of_objects() == before, (m._number_of_objects(), before)


def scenario_shared_with_rust(m):
    # Filled by the Rust side before the server started (issue 15, item 7).
    q = m.get_queue()
    assert q.get(timeout=5) == "hello from Rust"
    assert q.get(timeout=5) == {"n": 1, "tags": {"a", "b"}}
    results = m.get_results()
    results.put(("python", sys.version_info[:2]))
    shared = m.get_shared()
    assert shared["from_rust"] == [1, 2, 3]
    shared["from_python"] = {"ok": True}
    items = m.get_items()
    items.append(42)
    lifo = m.LifoQueue()
    lifo.put(1)
    lifo.put(2)
    assert lifo.get() == 2
    maths = m.MathsClass({"calls": 0})
    assert maths.add(2, 3) == 5
    assert maths.calls() == 1


SCENARIOS = {name[len("scenario_"):]: f for name, f in sorted(globals().items()) if name.startswith("scenario_")}


def main():
    host, _, port = sys.argv[1].rpartition(":")
    key = bytes.fromhex(sys.argv[2])
    names = sys.argv[3:] or list(SCENARIOS)
    m = Remote(address=(host, int(port)), authkey=key)
    m.connect()
    for name in names:
        try:
            SCENARIOS[name](m)
        except Exception:
            traceback.print_exc()
            print("FAIL", name, flush=True)
            sys.exit(1)
        print("ok", name, flush=True)


if __name__ == "__main__":
    main()
