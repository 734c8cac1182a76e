"""CPU seconds from /proc around a timed window, split by who spent them.

- ``server``: the process tree of the HTTP server under test;
- ``db``: the PostgreSQL cluster serving the bench database: its auxiliary processes and the
  backends connected to the bench database (``/proc`` is also read every 0.5 s during the
  window, so a backend that comes and goes is billed by its title), plus the part of exited
  backends' time never seen (the postmaster's cutime/cstime less what was seen; it cannot be
  told apart by database and is also given alone as ``db_unseen_cpu_s``);
- ``client``: this Python process and its reaped children (wrk), from getrusage;
- ``other``: every other live process, including backends of *other* databases of the same
  cluster (so a test suite running next door is not billed to the servers);
- ``unattributed``: host busy time in none of these (short-lived processes, kernel work);
- ``steal_s``: time the hypervisor ran something else while this VM wanted the CPU (a VM's
  speed drifts with it; it is not part of the busy time).

Times are clock ticks (10 ms), so a cell is accurate to roughly ±10 %.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLK = os.sysconf("SC_CLK_TCK")
# first word of the title of PostgreSQL's auxiliary processes ("postgres: checkpointer", ...)
AUX_PROCESSES = frozenset({"checkpointer", "background", "walwriter", "autovacuum", "logical",
                           "archiver", "startup", "stats", "parallel", "walsender",
                           "walreceiver", "wal"})
NCPU = os.cpu_count() or 1


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    cpu_s: float  # utime + stime
    children_s: float  # cutime + cstime: reaped children
    title: str  # command line (postgres rewrites it to "postgres: user db ...")


@dataclass(frozen=True)
class Snapshot:
    wall: float
    host_busy_s: float
    steal_s: float
    procs: dict[tuple[int, str], Proc]  # key: (pid, start time), so a reused pid is new
    self_s: float


def _stat(pid: str) -> tuple[Proc, str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            "utf-8", "replace").strip()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw.rsplit(")", 1)[1].split()
    proc = Proc(pid=int(pid), ppid=int(fields[1]),
                cpu_s=(int(fields[11]) + int(fields[12])) / CLK,
                children_s=(int(fields[13]) + int(fields[14])) / CLK, title=title)
    return proc, fields[19]


def read_procs() -> dict[tuple[int, str], Proc]:
    out: dict[tuple[int, str], Proc] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            found = _stat(name)
            if found:
                out[(found[0].pid, found[1])] = found[0]
    return out


def host_busy() -> tuple[float, float]:
    """Busy and steal seconds of the whole host (steal: time the hypervisor gave elsewhere)."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    idle = values[3] + values[4]
    steal = values[7] if len(values) > 7 else 0
    return (sum(values[:7]) - idle) / CLK, steal / CLK


def descendants(procs: dict[tuple[int, str], Proc], root: int) -> set[int]:
    kids: dict[int, list[int]] = {}
    for p in procs.values():
        kids.setdefault(p.ppid, []).append(p.pid)
    seen: set[int] = set()
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(kids.get(pid, []))
    return seen


def vm_status(pid: int) -> dict[str, int]:
    """VmHWM (peak resident set) and VmRSS of one process, in kB."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(rest.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def tree_memory(root: int) -> dict[str, Any]:
    """Peak and current RSS of a process tree: the largest process and the sum, in MB."""
    procs = read_procs()
    pids = sorted(descendants(procs, root))
    per = {pid: vm_status(pid) for pid in pids}
    hwm = [v.get("VmHWM", 0) for v in per.values()]
    rss = [v.get("VmRSS", 0) for v in per.values()]
    return {"processes": len(pids),
            "peak_rss_mb_max": round(max(hwm, default=0) / 1024, 1),
            "peak_rss_mb_sum": round(sum(hwm) / 1024, 1),
            "rss_mb_sum": round(sum(rss) / 1024, 1),
            "per_pid_kb": {str(pid): v for pid, v in per.items()}}


class CpuSampler:
    """Snapshots of /proc and the split of CPU time between two of them."""

    def __init__(self, postmaster_pid: int | None, db_name: str,
                 server_pid: int | None = None) -> None:
        self.postmaster = postmaster_pid
        self.db_name = db_name
        self.server_pid = server_pid
        self.me = os.getpid()

    def snap(self) -> Snapshot:
        usage = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        busy, steal = host_busy()
        return Snapshot(wall=time.time(), host_busy_s=busy, steal_s=steal, procs=read_procs(),
                        self_s=sum(u.ru_utime + u.ru_stime for u in usage))

    def _serves_bench(self, title: str) -> bool:
        """A cluster process working for the bench database, or for the whole cluster."""
        words = title.split()
        if not words or words[0] != "postgres:":
            return True  # the postmaster itself
        rest = words[1:]
        if rest[:2] == ["autovacuum", "worker"]:
            return rest[2:3] == [self.db_name]
        if rest[:1] and rest[0] in AUX_PROCESSES:
            return True
        return rest[1:2] == [self.db_name]  # "postgres: <user> <database> [local] idle"

    @contextmanager
    def tracking(self, interval: float = 0.5) -> Iterator[dict[tuple[int, str], Proc]]:
        """Sample /proc every ``interval`` s meanwhile, so that processes that start and end
        inside a window (a test suite's connections next door) are seen with their title."""
        seen: dict[tuple[int, str], Proc] = {}
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(interval):
                seen.update(read_procs())

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield seen
        finally:
            stop.set()
            thread.join()

    def delta(self, a: Snapshot, b: Snapshot,
              seen: dict[tuple[int, str], Proc] | None = None) -> dict[str, Any]:
        # every process known in the window, with its last known CPU time and title
        latest = {**a.procs, **(seen or {}), **b.procs}
        server = descendants(latest, self.server_pid) if self.server_pid else set()
        pg = descendants(latest, self.postmaster) if self.postmaster else set()
        mine = descendants(latest, self.me)
        acc = {"server": 0.0, "db": 0.0, "other": 0.0}
        for key, p in latest.items():
            before = a.procs.get(key)
            spent = p.cpu_s - (before.cpu_s if before else 0.0)
            if p.pid in server:  # (servers are children of this process: test them first)
                acc["server"] += spent
            elif p.pid in mine:  # counted by getrusage below
                continue
            elif p.pid in pg and self._serves_bench(p.title):
                acc["db"] += spent
            else:
                acc["other"] += spent
        exited = 0.0
        if self.postmaster:
            pm_a = next((p for p in a.procs.values() if p.pid == self.postmaster), None)
            pm_b = next((p for p in b.procs.values() if p.pid == self.postmaster), None)
            if pm_a and pm_b:
                # children that exited inside the window were billed above up to when they
                # were last seen; the postmaster's reaped-children time holds their whole
                # lives: what is left is their last moments and processes never seen at all
                known = sum(p.cpu_s for k, p in latest.items()
                            if p.ppid == self.postmaster and k not in b.procs)
                exited = max(0.0, pm_b.children_s - pm_a.children_s - known)
                acc["db"] += exited
        client = b.self_s - a.self_s
        host = b.host_busy_s - a.host_busy_s
        wall = b.wall - a.wall
        unattributed = host - acc["server"] - acc["db"] - acc["other"] - client
        other_frac = (acc["other"] + max(0.0, unattributed)) / (wall * NCPU) if wall else 0.0
        return {"server_cpu_s": round(acc["server"], 3), "db_cpu_s": round(acc["db"], 3),
                "db_unseen_cpu_s": round(exited, 3),
                "client_cpu_s": round(client, 3), "other_cpu_s": round(acc["other"], 3),
                "unattributed_cpu_s": round(unattributed, 3), "host_busy_s": round(host, 3),
                "steal_s": round(b.steal_s - a.steal_s, 3),
                "wall_s": round(wall, 3), "other_frac": round(other_frac, 3)}

    def wait_quiet(self, max_frac: float, max_wait: float, probe: float = 1.0) -> dict[str, Any]:
        """Wait (at most ``max_wait`` s) until other processes use <= max_frac of the host."""
        t0 = time.time()
        while True:
            a = self.snap()
            time.sleep(probe)
            frac = self.delta(a, self.snap())["other_frac"]
            waited = time.time() - t0
            if frac <= max_frac or waited >= max_wait:
                return {"waited_s": round(waited, 1), "other_frac": frac,
                        "quiet": frac <= max_frac}
            time.sleep(min(3.0, max(0.0, max_wait - waited)))
