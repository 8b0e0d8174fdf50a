"""Where the driver's memory goes, round by round: iterate.py run in this process under tracemalloc.

    python scripts/driver_memory.py --run-dir DIR [--top 8] -- --config configs/shapes-rlaifv.yaml [key=value ...]

Each time a round's eval finishes (its ``_SUCCESS`` appears) a watcher thread takes a tracemalloc snapshot
and prints the driver's resident memory (RSS), split into private pages (USS) and shared ones (Ray's object
store is shared memory the driver maps; its pages count in RSS once touched), the Python heap that
tracemalloc sees, and the source lines whose live allocations grew most since the previous round. At the
end it prints the growth per round of each (least-squares slope over rounds 2..N: round 1 starts the
actors). Private memory that grows while the traced heap stays flat lives in C extensions or the allocator.
"""
from __future__ import annotations

import argparse
import sys
import threading
import tracemalloc
from pathlib import Path

import psutil

from soak import slope  # scripts/ is on the path when a script runs

ROOT = Path(__file__).resolve().parent.parent
MB = 1 << 20


def watch(run_dir: Path, top: int, rows: list, stop: threading.Event) -> None:
    previous, seen = tracemalloc.take_snapshot(), set()
    while True:
        stopping = stop.is_set()  # one more scan after the run ends: its last eval marker
        for marker in sorted(run_dir.glob("rounds/*/eval/_SUCCESS")):
            if marker in seen:
                continue
            seen.add(marker)
            snapshot = tracemalloc.take_snapshot()
            memory = psutil.Process().memory_full_info()
            rss, uss, shared = memory.rss / MB, memory.uss / MB, memory.shared / MB
            traced = tracemalloc.get_traced_memory()[0] / MB
            rows.append((marker.parent.parent.name, rss, traced, uss, shared))
            print(f"[memory] round {marker.parent.parent.name}: driver RSS {rss:.1f} MB (private {uss:.1f}, shared "
                  f"{shared:.1f}), traced Python heap {traced:.1f} MB", flush=True)
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
    parser.add_argument("iterate_args", nargs=argparse.REMAINDER, help="after --: iterate.py's arguments")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import iterate

    tracemalloc.start(1)
    rows, stop = [], threading.Event()
    watcher = threading.Thread(target=watch, args=(Path(args.run_dir), args.top, rows, stop), daemon=True)
    watcher.start()
    forwarded = [a for a in args.iterate_args if a != "--"]
    code = iterate.main(forwarded + ["--run-dir", args.run_dir])
    stop.set()
    watcher.join()
    steady = rows[2:]  # rounds 000 and 001 start and load everything
    if steady:
        print(f"[memory] growth per round over rounds {steady[0][0]}..{steady[-1][0]}: "
              f"RSS {slope([r[1] for r in steady]):+.2f} MB (private {slope([r[3] for r in steady]):+.2f} MB, shared "
              f"{slope([r[4] for r in steady]):+.2f} MB), traced heap {slope([r[2] for r in steady]):+.2f} MB")
    return code


if __name__ == "__main__":
    sys.exit(main())
