"""Celery 5 on Redis: the baseline of bench/compare's cluster group.

    cluster_celery.py map_default | imap_chunk1

Tiny tasks through Celery with 2 prefork worker processes, acks_late=True, Redis as broker and
result backend (a redis-server of its own on a free loopback port, no persistence). map_default:
20 000 tasks in chunks of the size multiproc's default chunking picks for 2 slots (len / (4 * 2),
rounded up). imap_chunk1: one task per message (a group) of 2 000 tasks, not 20 000: at Celery's
few hundred tasks per second, 20 000 take a minute per round on a quiet machine and over five on a
loaded one, past the bench's time limit per run; the rate per task is what is compared. Prints
tasks/s.

Celery is installed on first use into a virtual environment of this bench's own under
target/bench-celery-venv; when that cannot be done, the script exits non-zero saying why, and
bench/compare prints the metric as nan with that reason.
"""
import math
import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV = os.path.join(ROOT, "target", "bench-celery-venv")
VENV_PY = os.path.join(VENV, "bin", "python")
TASKS = {"map_default": 20_000, "imap_chunk1": 2_000}
SLOTS = 2

TASKS_MODULE = """
from celery import Celery
import os
app = Celery("celery_tasks", broker=os.environ["BENCH_REDIS"], backend=os.environ["BENCH_REDIS"])
app.conf.task_acks_late = True
app.conf.worker_hijack_root_logger = False
app.conf.broker_connection_retry_on_startup = True

@app.task
def square(x):
    return x * x
"""


def ensure_venv():
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    if not os.path.exists(VENV_PY):
        r = subprocess.run([sys.executable, "-m", "venv", VENV], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"cannot create the Celery venv at {VENV}: {r.stderr.strip()[-300:]}")
    check = subprocess.run([VENV_PY, "-c", "import celery, redis"], capture_output=True)
    if check.returncode != 0:
        r = subprocess.run([VENV_PY, "-m", "pip", "install", "-q", "celery[redis]>=5,<6"], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"cannot install Celery 5 into {VENV}: {r.stderr.strip()[-300:]}")
    os.execv(VENV_PY, [VENV_PY, os.path.abspath(__file__), *sys.argv[1:]])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(metric):
    ensure_venv()
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL)
    workdir = tempfile.mkdtemp(prefix="bench-celery-")
    worker = None
    try:
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.time() > deadline:
                    sys.exit("redis-server did not start")
                time.sleep(0.02)
        with open(os.path.join(workdir, "celery_tasks.py"), "w") as f:
            f.write(TASKS_MODULE)
        env = dict(os.environ, BENCH_REDIS=url, PYTHONPATH=workdir)
        os.environ.update(BENCH_REDIS=url)
        sys.path.insert(0, workdir)
        worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "celery_tasks", "worker", "--pool=prefork",
                                   f"--concurrency={SLOTS}", "--loglevel=WARNING", "--without-gossip",
                                   "--without-mingle"], cwd=workdir, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        from celery import group
        import celery_tasks
        square = celery_tasks.square
        assert square.delay(3).get(timeout=60) == 9  # the worker is up
        tasks = TASKS[metric]
        chunk = math.ceil(tasks / (4 * SLOTS))
        start = time.perf_counter()
        if metric == "imap_chunk1":
            values = group(square.s(i) for i in range(tasks)).apply_async().get(timeout=600)
            assert len(values) == tasks
        else:
            parts = square.chunks(((i,) for i in range(tasks)), chunk).group().apply_async().get(timeout=600)
            assert sum(len(p) for p in parts) == tasks
        took = time.perf_counter() - start
        print(tasks / took)
    finally:
        if worker is not None:
            worker.kill()
            worker.wait()
        server.kill()
        server.wait()


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in TASKS:
        sys.exit(__doc__)
    main(sys.argv[1])
