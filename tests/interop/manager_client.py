"""CPython clients of multiproc's manager server (tests/python_clients.rs): CPython's own
SyncManager/BaseManager and proxies, unchanged, against a server written in Rust. Every check is
what CPython's own server gives (the same script passes against CPython's server: run it with
"--cpython" to check that).

Usage: python3 manager_client.py HOST:PORT KEY_HEX [SCENARIO ...]    (all scenarios without names)
       python3 manager_client.py --cpython [SCENARIO ...]   (against CPython's own server)

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
# Set when running against CPython's own server ("--cpython").
CPYTHON = False


class Remote(SyncManager):
    pass


# Objects the Rust side named before serving (Server::register, ManagerClient::named).
Remote.register("get_queue")
Remote.register("get_results")
Remote.register("get_shared", proxytype=DictProxy)
Remote.register("get_items", proxytype=ListProxy)
Remote.register("get_mixed", proxytype=DictProxy)
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


def scenario_message_limit(m):
    # This crate's server takes requests up to 64 MiB; a larger one is read and dropped, the
    # client is told (a RemoteError naming the limit), and its channel goes on.
    if CPYTHON:
        return
    d = m.dict()
    e = raises(RemoteError, d.__setitem__, "big", "x" * (65 << 20))
    assert "limit" in str(e) and "MiB" in str(e), str(e)
    d["small"] = 1
    assert d.copy() == {"small": 1}


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
    # A Rust DictProxy<Value, Value>: plain Python values.
    assert m.get_mixed().copy() == {1: "1", "2": 2, 0.25: None, "t": (1, 2)}
    lifo = m.LifoQueue()
    lifo.put(1)
    lifo.put(2)
    assert lifo.get() == 2
    maths = m.MathsClass({"calls": 0})
    assert maths.add(2, 3) == 5
    assert maths.calls() == 1


# ---------------------------------------------------------------------------------------------
# Behaviours of CPython's test suite (conformance.md), from a Python client (threads stand for
# its processes: each thread has its own channel to the server, as each process does).


def scenario_conformance_queue(m):
    # every put form until full; non-blocking puts fail at once, timed ones after t.
    q = m.Queue(6)
    assert q.empty() and not q.full()
    q.put(1)
    q.put(2, True)
    q.put(3, True, None)
    q.put(4, False)
    q.put(5, False, None)
    q.put_nowait(6)
    assert not q.empty() and q.full()
    raises(queue.Full, q.put, 7, False)
    raises(queue.Full, q.put, 7, False, None)
    raises(queue.Full, q.put_nowait, 7)
    start = time.time()
    raises(queue.Full, q.put, 7, True, 0.1)
    assert time.time() - start >= 0.09
    start = time.time()
    raises(queue.Full, q.put, 7, False, 10)  # the timeout is ignored when not blocking
    assert time.time() - start < 5
    # drained by another client: in FIFO order, then empty and not full.
    got = []
    t = threading.Thread(target=lambda: got.extend(
        [q.get_nowait(), q.get(True, None), q.get(True), q.get(timeout=1), q.get(), q.get()]))
    t.start()
    t.join()
    assert got == [1, 2, 3, 4, 5, 6] and q.empty() and not q.full()
    # gets on an empty queue.
    for call in (lambda: q.get(False), lambda: q.get(False, None), q.get_nowait, lambda: q.get(False, 10)):
        raises(queue.Empty, call)
    start = time.time()
    raises(queue.Empty, q.get, True, 0.2)
    assert time.time() - start >= 0.1
    # qsize follows puts and gets.
    sizes = [q.qsize()]
    q.put(1)
    sizes.append(q.qsize())
    q.put(2)
    sizes.append(q.qsize())
    q.get()
    sizes.append(q.qsize())
    q.get()
    sizes.append(q.qsize())
    assert sizes == [0, 1, 2, 1, 0], sizes
    # join returns once 4 workers called task_done for 10 items.
    jq = m.JoinableQueue()

    def worker():
        while True:
            item = jq.get()
            if item is None:
                jq.task_done()
                return
            jq.task_done()

    workers = [threading.Thread(target=worker) for _ in range(4)]
    for w in workers:
        w.start()
    for i in range(10):
        jq.put(i)
    jq.join()
    for _ in workers:
        jq.put(None)
    for w in workers:
        w.join()
    # SMT-08: a Queue(2) holding 2 items, used from another client.
    for typeid in ("Queue", "JoinableQueue"):
        q2 = getattr(m, typeid)(2)
        q2.put(5)
        q2.put(6)
        seen = []
        t = threading.Thread(target=lambda: seen.extend(
            [q2.qsize(), q2.full(), q2.empty(), q2.get(), q2.get(), q2.empty()]))
        t.start()
        t.join()
        assert seen == [2, True, False, 5, 6, True], seen
        assert q2.empty() and not q2.full()


def scenario_conformance_locks(m):
    # LOCK-01, LOCK-05: acquire gives True; a held lock refuses others; release gives None;
    # releasing an unheld lock raises.
    lock = m.Lock()
    assert lock.acquire() is True
    other = []
    t = threading.Thread(target=lambda: other.append(lock.acquire(False)))
    t.start()
    t.join()
    assert other == [False]
    assert lock.release() is None
    raises(RuntimeError, lock.release)
    with lock as x:
        assert x is True
    # LOCK-03: an RLock taken 3 times is held until the 3rd release; a 4th raises.
    rlock = m.RLock()
    for _ in range(3):
        assert rlock.acquire()
    for _ in range(3):
        assert rlock.acquire(False)
        rlock.release()
        rlock.release()
    raises(RuntimeError, rlock.release)
    with rlock as x:
        assert x is True
    # SEM-01, SEM-02: counts down to 0, up again beyond its start when unbounded.
    for typeid in ("Semaphore", "BoundedSemaphore"):
        sem = getattr(m, typeid)(2)
        assert sem.acquire() and sem.acquire()
        assert sem.acquire(False) is False
        sem.release()
        sem.release()
        if typeid == "Semaphore":
            sem.release()
            sem.release()
            assert sem.acquire(False) and sem.acquire(False) and sem.acquire(False) and sem.acquire(False)
            assert sem.acquire(False) is False
    # SEM-03: on Semaphore(0), non-blocking forms fail at once, timed ones after t.
    sem = m.Semaphore(0)
    assert sem.acquire(False) is False
    assert sem.acquire(False, None) is False
    start = time.time()
    assert sem.acquire(True, 0.1) is False
    assert sem.acquire(timeout=0.1) is False
    assert time.time() - start >= 0.18


def wait_until(predicate, limit=5):
    deadline = time.time() + limit
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.005)


def scenario_conformance_condition(m):
    cond = m.Condition()
    woken = m.Value("i", 0)
    waiting = m.Value("i", 0)

    def waiter(timeout=None):
        with cond:
            waiting.value += 1
            if cond.wait(timeout):
                woken.value += 1

    def start(n, timeout=None):
        threads = [threading.Thread(target=waiter, args=(timeout,)) for _ in range(n)]
        for t in threads:
            t.start()
        return threads

    def waiters_are_in(n):
        wait_until(lambda: waiting.value >= n)
        # Each waiter holds the condition's lock until its wait() releases it: taking the lock
        # here means they all wait now.
        with cond:
            pass

    # COND-01: each notify wakes exactly one waiter.
    threads = start(2)
    waiters_are_in(2)
    time.sleep(SHORT)
    assert woken.value == 0
    for expected in (1, 2):
        with cond:
            cond.notify()
        wait_until(lambda: woken.value == expected)
        time.sleep(SHORT)
        assert woken.value == expected
    for t in threads:
        t.join()
    # COND-02: timed waiters time out; notify_all wakes six untimed ones.
    woken.value = waiting.value = 0
    timed = start(3, 0.1)
    for t in timed:
        t.join()
    assert woken.value == 0
    threads = start(6)
    waiters_are_in(9)
    with cond:
        cond.notify_all()
    for t in threads:
        t.join()
    assert woken.value == 6
    # COND-03: notify(2) wakes 2 of 6, notify(4) the rest, notify(3) with none waiting nothing.
    woken.value = waiting.value = 0
    threads = start(6)
    waiters_are_in(6)
    with cond:
        cond.notify(2)
    wait_until(lambda: woken.value == 2)
    time.sleep(SHORT)
    assert woken.value == 2
    with cond:
        cond.notify(4)
    for t in threads:
        t.join()
    with cond:
        cond.notify(3)
    assert woken.value == 6
    # COND-04, COND-06: wait(t) and wait_for(pred, t) give False after t.
    with cond:
        start_time = time.time()
        assert cond.wait(0.1) is False
        assert not cond.wait_for(lambda: False, timeout=0.1)
        assert time.time() - start_time >= 0.18
    # COND-07: wait(0) is False.
    with cond:
        assert cond.wait(0) is False


def scenario_conformance_event(m):
    # EVT-01
    e = m.Event()
    assert not e.is_set()
    assert e.wait(0) is False
    start = time.time()
    assert e.wait(0.1) is False
    assert time.time() - start >= 0.09
    e.set()
    assert e.is_set() and e.wait() is True and e.wait(0.1) is True
    e.clear()
    t = threading.Timer(SHORT, e.set)
    t.start()
    assert e.wait() is True
    t.join()
    assert "EventProxy" in repr(e)  # EVT-02, the proxy's repr


def scenario_conformance_barrier(m):
    n = 5

    def parties(target, count=n):
        threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    # BAR-01, BAR-02: lockstep for 10 rounds; one index 0 per round, indices unique.
    b = m.Barrier(n)
    log = []
    indices = []
    lock = threading.Lock()

    def rounds(i):
        for r in range(10):
            with lock:
                log.append((r, "in"))
            index = b.wait()
            with lock:
                indices.append((r, index))
                log.append((r, "out"))
            b.wait()

    parties(rounds)
    for r in range(10):
        assert sorted(i for rr, i in indices if rr == r) == list(range(n))
    for r in range(10):
        ins = [k for k, e in enumerate(log) if e == (r, "in")]
        outs = [k for k, e in enumerate(log) if e == (r, "out")]
        assert max(ins) < min(outs)
    assert b.n_waiting == 0 and not b.broken
    # BAR-04: an abort breaks every waiter.
    b = m.Barrier(n)
    broken = []

    def abort_one(i):
        try:
            if i == 0:
                time.sleep(SHORT)
                b.abort()
            else:
                b.wait()
        except threading.BrokenBarrierError:
            broken.append(i)

    parties(abort_one)
    assert sorted(broken) == [1, 2, 3, 4] and b.broken
    # BAR-05: reset while n-1 wait breaks them; then usable by all n.
    b = m.Barrier(n)
    broken = []

    def wait_then_reset(i):
        try:
            if i == 0:
                wait_until(lambda: b.n_waiting == n - 1)
                b.reset()
            else:
                b.wait()
        except threading.BrokenBarrierError:
            broken.append(i)

    parties(wait_then_reset)
    assert sorted(broken) == [1, 2, 3, 4] and not b.broken
    parties(lambda i: b.wait())
    # BAR-07: a party late past the others' timeout breaks the barrier for all.
    b = m.Barrier(n)
    broken = []

    def late(i):
        if i == 0:
            time.sleep(0.3)
        try:
            b.wait(0.1)
        except threading.BrokenBarrierError:
            broken.append(i)

    parties(late)
    assert sorted(broken) == list(range(n))
    # BAR-08: the barrier's default timeout.
    b = m.Barrier(2, timeout=0.1)
    raises(threading.BrokenBarrierError, b.wait)
    # BAR-09: Barrier(1) passes at once, again and again.
    b = m.Barrier(1)
    for _ in range(3):
        assert b.wait() == 0


def scenario_conformance_containers(m):
    # CONT-01
    a = m.list(list(range(10)))
    assert a[:] == list(range(10)) and a[2:5] == [2, 3, 4] and a[::2] == list(range(0, 10, 2))
    b = m.list()
    assert b[:] == []
    b.extend(range(5))
    assert b[:] == list(range(5)) and b[2] == 2 and b[2:10] == [2, 3, 4]
    b *= 2
    assert b[:] == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
    assert b + [5, 6] == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6] and len(b) == 10
    # CONT-04: iteration by index sees changes made after the iterator was made.
    c = m.list([1, 2])
    it = iter(c)
    c.append(3)
    assert list(it) == [1, 2, 3] and list(it) == []
    # CONT-06, SMT-10 (3.8 to 3.13 methods)
    d = m.dict([(i, chr(i + 65)) for i in range(5)])
    assert d.copy() == {0: "A", 1: "B", 2: "C", 3: "D", 4: "E"}
    assert d.keys() == [0, 1, 2, 3, 4] and d.values() == list("ABCDE")
    assert d.items() == [(i, chr(i + 65)) for i in range(5)]
    assert len(d) == 5 and d[0] == "A" and d.get(4) == "E"
    assert d.popitem() == (4, "E") and d.setdefault(9, "Z") == "Z"
    d.update({10: "K"})
    assert d.pop(10) == "K"
    d.clear()
    assert len(d) == 0
    # CONT-08: iteration in insertion order; clear() meanwhile makes next() raise RuntimeError.
    d = m.dict([(i, i) for i in range(3)])
    assert list(d) == [0, 1, 2]
    it = iter(d)
    assert next(it) == 0
    d.clear()
    raises(RuntimeError, next, it)
    # CONT-11: Namespace str after deleting an attribute.
    n = m.Namespace()
    n.name = "Bob"
    n.job = "Builder"
    n._hidden = "hidden"  # local to the proxy
    assert (n.name, n.job) == ("Bob", "Builder")
    del n.job
    assert str(n) == "Namespace(name='Bob')", str(n)
    assert not hasattr(n, "job")
    # SMT-09 (3.8 to 3.13 methods)
    l = m.list([5, 1, 3])
    assert l[0] == 5 and l.count(5) == 1 and l.index(5) == 0
    l += [7]
    assert type(l).__name__ == "ListProxy" and l[:] == [5, 1, 3, 7]
    l *= 2
    assert type(l).__name__ == "ListProxy" and l[:] == [5, 1, 3, 7] * 2
    assert l * 2 == [5, 1, 3, 7] * 4 and 2 * l == [5, 1, 3, 7] * 4
    l.extend([8])
    l.sort()
    l.reverse()
    assert list(l) == sorted([5, 1, 3, 7] * 2 + [8], reverse=True) and len(l) == 9
    assert l.pop(0) == 8
    # SMT-11, SMT-12, SMT-13
    v = m.Value("i", 1)
    assert v.value == 1 and v.get() == 1
    v.set(2)
    assert v.value == 2
    arr = m.Array("i", [0, 1, 2])
    assert len(arr) == 3 and arr[0] == 0 and list(arr) == [0, 1, 2]
    ns = m.Namespace()
    ns.x = 1
    seen = []
    t = threading.Thread(target=lambda: seen.append(ns.x))
    t.start()
    t.join()
    assert seen == [1]


def scenario_conformance_remote(m):
    # MGR-01: only public methods are exposed; exceptions are re-raised; a method not exposed is
    # a RemoteError.
    maths = m.MathsClass({"calls": 0})
    assert set(maths._exposed_) == {"add", "calls"}, maths._exposed_
    raises(RemoteError, maths._callmethod, "hidden")
    # MGR-05: values of every plain kind round-trip through a queue; an unpicklable one cannot
    # be put.
    q = m.Queue()
    values = ("hello world", None, True, 2.25, "hall\xe5 v\xe4rld", "\u043f\u0440\u0438\u0432\u0456\u0442", b"hall\xe5 v\xe4rld")
    q.put(values)
    assert q.get() == values
    raises(Exception, q.put, lambda: None)
    # MGR-07's cousin: exceptions arrive as the class CPython raises.
    raises(queue.Empty, q.get_nowait)


def child_uses(proxies):
    d, l, q, e = proxies
    d["child"] = os.getpid()
    l.append("from child")
    q.put(("child", 1))
    e.set()


def scenario_conformance_children(m):
    # F2 (TestSyncManagerTypes): objects made in the parent, used in a child process, checked in
    # the parent.
    if "fork" not in multiprocessing.get_all_start_methods():
        return
    ctx = multiprocessing.get_context("fork")
    d, l, q, e = m.dict(), m.list(), m.Queue(), m.Event()
    p = ctx.Process(target=child_uses, args=((d, l, q, e),))
    p.start()
    p.join(10)
    assert p.exitcode == 0, p.exitcode
    assert d["child"] == p.pid and l[:] == ["from child"] and q.get(timeout=5) == ("child", 1) and e.is_set()



SCENARIOS = {name[len("scenario_"):]: f for name, f in sorted(globals().items()) if name.startswith("scenario_")}


class CPythonServer(SyncManager):
    """CPython's own server with the objects the Rust side provides (for "--cpython")."""


class MathsClass:
    def __init__(self, state):
        self._calls = state["calls"]

    def add(self, x, y):
        self._calls += 1
        return x + y

    def calls(self):
        return self._calls

    def _hidden(self):
        return None


def start_cpython_server(key):
    jobs, results, shared, items = queue.Queue(), queue.Queue(), {"from_rust": [1, 2, 3]}, []
    mixed = {1: "1", "2": 2, 0.25: None, "t": (1, 2)}
    jobs.put("hello from Rust")
    jobs.put({"n": 1, "tags": {"a", "b"}})
    CPythonServer.register("get_queue", callable=lambda: jobs)
    CPythonServer.register("get_results", callable=lambda: results)
    CPythonServer.register("get_shared", callable=lambda: shared, proxytype=DictProxy)
    CPythonServer.register("get_items", callable=lambda: items, proxytype=ListProxy)
    CPythonServer.register("get_mixed", callable=lambda: mixed, proxytype=DictProxy)
    CPythonServer.register("LifoQueue", queue.LifoQueue)
    CPythonServer.register("MathsClass", MathsClass)
    server = CPythonServer(address=("127.0.0.1", 0), authkey=key, ctx=multiprocessing.get_context("fork"))
    server.start()
    return server


def main():
    global CPYTHON
    cpython = CPYTHON = sys.argv[1] == "--cpython"
    if cpython:
        key = b"cpython"
        server = start_cpython_server(key)
        host, port = server.address
        names = sys.argv[2:] or list(SCENARIOS)
    else:
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
