"""Run adversarial cases in a child interpreter, many per process, each bounded.

The child (``python -m tests.adversarial.harness GROUP``) caps its address space with
RLIMIT_AS (:data:`MEMORY_BYTES`), then runs each case of the group under a SIGALRM of
:data:`CASE_SECONDS`, printing one JSON line per case. The parent gives the whole batch
:data:`BATCH_SECONDS`; a case that hangs in C code (where no alarm can interrupt it) or
crashes the interpreter is named as the one that was running. One interpreter per group,
not per case: starting Python with torch costs seconds, a case milliseconds.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

MEMORY_BYTES = 2**30  # 1 GB of address space for the whole child, torch included
CASE_SECONDS = 10
BATCH_SECONDS = 240
ROOT = Path(__file__).resolve().parents[2]


class CaseTimeout(BaseException):
    """Raised by SIGALRM inside a case (BaseException: a case's except Exception misses it)."""


def run_group(group: str) -> dict[str, dict[str, object]]:
    """{case id: {"ok": bool, "message": str, "seconds": float}} for every case of ``group``;
    a case the child never finished is reported with what happened to the child."""
    from tests.adversarial.cases import case_ids

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    results: dict[str, dict[str, object]] = {}
    started = None
    try:
        proc = subprocess.run([sys.executable, "-m", "tests.adversarial.harness", group],
                              capture_output=True, text=True, env=env, cwd=ROOT,
                              timeout=BATCH_SECONDS, check=False)
        out, err, rc = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err, rc = "batch timed out", "timeout"
    for line in out.splitlines():
        if not line.startswith("{"):
            continue
        rec = json.loads(line)
        if rec.get("start"):
            started = rec["start"]
        else:
            results[rec["id"]] = rec
            started = None
    for cid in case_ids(group):
        if cid not in results:
            what = "was running when" if cid == started else "never ran:"
            results[cid] = {"ok": False, "seconds": None,
                            "message": f"{what} the child ended (exit {rc}): {err[-1500:]}"}
    return results


def _child(group: str) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))

    def alarm(signum: int, frame: object) -> None:
        raise CaseTimeout(f"case took longer than {CASE_SECONDS} s")

    signal.signal(signal.SIGALRM, alarm)
    from tests.adversarial.cases import cases, warm_up

    warm_up(group)  # imports and first-use costs, outside any case's time

    for cid, fn in cases(group):
        print(json.dumps({"start": cid}), flush=True)
        t0 = time.perf_counter()
        signal.alarm(CASE_SECONDS)
        try:
            fn()
            ok, message = True, ""
        except CaseTimeout as e:
            ok, message = False, str(e)
        except BaseException as e:
            ok = False
            message = "".join(traceback.format_exception(e)[-6:])[-3000:]
        finally:
            signal.alarm(0)
        print(json.dumps({"id": cid, "ok": ok, "message": message,
                          "seconds": round(time.perf_counter() - t0, 3),
                          "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                          // 1024}), flush=True)


if __name__ == "__main__":
    _child(sys.argv[1])
