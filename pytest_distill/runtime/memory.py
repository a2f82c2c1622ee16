"""Memory of one managed server: its process tree's resident set, and the GPU memory its
processes hold, not the machine's totals (another server or job on the GPU is not ours).

The tree comes from /proc (no dependency); the GPU figure from
`nvidia-smi --query-compute-apps=pid,used_memory --format=csv`, filtered by the tree's PIDs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

COMPUTE_APPS_QUERY = ["--query-compute-apps=pid,used_memory", "--format=csv"]


def _proc_table(proc: Path = Path("/proc")) -> tuple[dict[int, list[int]], dict[int, int]]:
    """parent pid -> children, pid -> resident bytes, for every process we can read."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for stat in proc.glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended while we looked
            continue
        fields = text.rsplit(")", 1)[1].split()  # the command name may hold spaces and ')'
        this = int(stat.parent.name)
        children.setdefault(int(fields[1]), []).append(this)
        rss[this] = int(fields[21]) * page
    return children, rss


def process_tree_pids(pid: int) -> set[int]:
    """The process and all its descendants (empty when it is gone)."""
    children, rss = _proc_table()
    if pid not in rss:
        return set()
    tree, stack = set(), [pid]
    while stack:
        current = stack.pop()
        if current not in tree:
            tree.add(current)
            stack.extend(children.get(current, []))
    return tree


def process_tree_rss(pid: int) -> int | None:
    """Resident bytes of a process and all its descendants; None when it is gone."""
    children, rss = _proc_table()
    if pid not in rss:
        return None
    total, seen, stack = 0, set(), [pid]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        total += rss.get(current, 0)
        stack.extend(children.get(current, []))
    return total


def parse_compute_apps(text: str) -> dict[int, int]:
    """pid -> MiB from `nvidia-smi --query-compute-apps=pid,used_memory --format=csv` (with or
    without the header and units; a process listed on several GPUs is summed; [N/A] skipped)."""
    used: dict[int, int] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) < 2 or not cells[0].isdigit():
            continue  # the header, blank lines, "No running processes found"
        amount = cells[1].split()[0] if cells[1] else ""
        if not amount.isdigit():
            continue
        value = int(amount)
        if cells[1].lower().endswith("gib"):
            value *= 1024
        used[int(cells[0])] = used.get(int(cells[0]), 0) + value
    return used


def gpu_memory_of(pids: set[int], nvidia_smi: str | None = None) -> int | None:
    """MiB of GPU memory the given processes hold; None without nvidia-smi (or when it fails)."""
    command = nvidia_smi or shutil.which("nvidia-smi")
    if not command or not pids:
        return None
    try:
        done = subprocess.run([command, *COMPUTE_APPS_QUERY], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    used = parse_compute_apps(done.stdout)
    return sum(mib for pid, mib in used.items() if pid in pids)
