"""Where the driver's memory goes, round by round: iterate.py run in this process under tracemalloc.

    python scripts/driver_memory.py --run-dir DIR [--top 8] -- --config configs/shapes-rlaifv.yaml [key=value ...]

Each time a round's eval finishes (its ``_SUCCESS`` appears) a watcher thread takes a tracemalloc snapshot
and prints the driver's resident memory (RSS), split into private pages (USS) and shared ones (Ray's object
store is shared memory the driver maps; its pages count in RSS once touched), the Python heap that
tracemalloc sees, glibc's own account of its heap (``mallinfo2``: bytes in use by malloc's callers, and bytes
free but still held), Arrow's memory pool, and the source lines whose live allocations grew most since the
previous round. With ``--trim`` it then hands glibc's free memory back (``malloc_trim(0)``) and prints the
RSS after it. At the end it prints the growth per round of each (least-squares slope over rounds 2..N: round
1 starts the actors). Private memory that grows while the traced heap stays flat lives in C extensions or the
allocator; malloc's in-use bytes growing means live native allocations, its free bytes growing means
fragmentation.
"""
from __future__ import annotations

import argparse
import ctypes
import sys
import threading
import tracemalloc
from pathlib import Path

import psutil

from soak import slope  # scripts/ is on the path when a script runs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's package, whatever the environment has installed
MB = 1 << 20
LIBC = ctypes.CDLL("libc.so.6")


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


LIBC.mallinfo2.restype = MallInfo2


def malloc_mb() -> tuple[float, float]:
    """(in use, free but held) in MB over all of glibc's arenas and its mmapped blocks."""
    info = LIBC.mallinfo2()
    return (info.uordblks + info.hblkhd) / MB, info.fordblks / MB


def mapped_mb() -> dict[str, float]:
    """Resident MB by kind of mapping: glibc's main heap, anonymous memory (thread arenas, Python's object
    arenas, other allocators, stacks), shared memory and files."""
    kinds, kind = {"heap": 0.0, "anonymous": 0.0, "shm": 0.0, "file": 0.0}, "anonymous"
    for line in open("/proc/self/smaps"):
        fields = line.split()
        if "-" in fields[0]:
            name = fields[5] if len(fields) > 5 else ""
            kind = ("heap" if name == "[heap]" else "shm" if name.startswith("/dev/shm")
                    else "file" if name.startswith("/") else "anonymous")
        elif fields[0] == "Rss:":
            kinds[kind] += int(fields[1]) / 1024
    return kinds


def watch(run_dir: Path, top: int, trim: bool, rows: list, stop: threading.Event) -> None:
    import pyarrow as pa

    from evaluation.layout import RunLayout, eval_stage

    previous, seen = tracemalloc.take_snapshot(), set()
    while True:
        stopping = stop.is_set()  # one more scan after the run ends: its last eval marker
        layout = RunLayout(run_dir)
        markers = [layout.marker(k, eval_stage("shapesworld")) for k in layout.round_numbers()]
        for marker in (m for m in markers if m.exists()):
            if marker in seen:
                continue
            seen.add(marker)
            snapshot = tracemalloc.take_snapshot()
            memory = psutil.Process().memory_full_info()
            rss, uss, shared = memory.rss / MB, memory.uss / MB, memory.shared / MB
            traced = tracemalloc.get_traced_memory()[0] / MB
            in_use, held = malloc_mb()
            figures = {"RSS": rss, "private": uss, "shared": shared, "traced Python heap": traced,
                       "malloc in use": in_use, "malloc free": held, "Arrow pool": pa.total_allocated_bytes() / MB,
                       **{f"{kind} mapping": mb for kind, mb in mapped_mb().items()}}
            if trim:
                LIBC.malloc_trim(0)
                figures["RSS after malloc_trim"] = psutil.Process().memory_info().rss / MB
            rows.append((marker.parent.parent.name, figures))
            print(f"[memory] round {marker.parent.parent.name} (MB): "
                  + ", ".join(f"{name} {mb:.1f}" for name, mb in figures.items()), flush=True)
            for stat in snapshot.compare_to(previous, "lineno")[:top]:
                print(f"[memory]   {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks  {stat.traceback[0]}",
                      flush=True)
            previous = snapshot
        if stopping:
            return
        stop.wait(1.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--top", type=int, default=8, help="source lines shown per round")
    parser.add_argument("--trim", action="store_true", help="malloc_trim(0) after each round's figures")
    parser.add_argument("iterate_args", nargs=argparse.REMAINDER, help="after --: iterate.py's arguments")
    args = parser.parse_args()
    import iterate

    tracemalloc.start(1)
    rows, stop = [], threading.Event()
    watcher = threading.Thread(target=watch, args=(Path(args.run_dir), args.top, args.trim, rows, stop), daemon=True)
    watcher.start()
    forwarded = [a for a in args.iterate_args if a != "--"]
    code = iterate.main(forwarded + ["--run-dir", args.run_dir])
    stop.set()
    watcher.join()
    steady = rows[2:]  # rounds 000 and 001 start and load everything
    if steady:
        print(f"[memory] growth per round over rounds {steady[0][0]}..{steady[-1][0]} (MB): " + ", ".join(
            f"{name} {slope([figures[name] for _, figures in steady]):+.2f}" for name in steady[0][1]))
    return code


if __name__ == "__main__":
    sys.exit(main())
