"""Worker pools (``dlw.workers``): real processes, really killed."""

import subprocess
import sys
import time

KILLED_WITH_A_POOL = """
import os, signal
from dlw.workers import worker_pool
pool = worker_pool(2, ("dlw.workers",))
print(sorted(pool.submit(os.getpid).result() for _ in range(4)), flush=True)
os.kill(os.getpid(), signal.SIGKILL)   # as the OOM killer would: no atexit, no shutdown
"""


def test_a_killed_process_leaves_no_worker_holding_its_output():
    started = time.monotonic()
    # capture_output: communicate() returns only once every holder of the pipes (the workers too) has exited
    proc = subprocess.run([sys.executable, "-c", KILLED_WITH_A_POOL], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9
    assert proc.stdout.startswith("[")  # the workers ran
    assert time.monotonic() - started < 30  # without the workers' watch of their parent this waited for ever (measured: 15 s timeout)
