"""Progress: plain lines every few seconds in a log, a bar on a terminal; rate and ETA from a given clock."""
import io
import threading

import pytest

from engine.progress import Progress


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_log_mode_prints_a_line_every_few_seconds_and_a_last_line():
    clock, lines = Clock(), []
    with Progress(10, "sample: shards", lines.append, every=5, stream=io.StringIO(), clock=clock) as progress:
        for _ in range(10):
            clock.now += 2
            progress.update()
    # items finish at t=2,4,...,20: a line at t=6, 12, 18 (each >= 5 s after the last), then the final line
    assert len(lines) == 4
    assert lines[0] == "sample: shards: 3/10 (30%) 0.50/s elapsed 6s ETA 14s"
    assert lines[-1] == "sample: shards: 10/10 (100%) 0.50/s elapsed 20s"


def test_terminal_mode_draws_a_bar_in_place_and_logs_nothing():
    clock, lines, terminal = Clock(), [], Terminal()
    with Progress(4, "verify", lines.append, stream=terminal, clock=clock) as progress:
        clock.now += 30
        progress.update(2)
    text = terminal.getvalue()
    assert lines == []
    assert text.count("\r") == 2 and text.endswith("\n")
    assert "[##############..............] verify: 2/4 (50%) 0.07/s elapsed 30s ETA 30s" in text


def test_eta_is_unknown_until_an_item_finishes_and_counts_never_pass_total():
    clock = Clock()
    progress = Progress(3, "train: steps", [].append, stream=io.StringIO(), clock=clock)
    assert progress.eta() is None and progress.rate == 0.0
    clock.now += 90
    progress.update(5)
    assert progress.done == 3 and progress.eta() == 0.0
    assert progress.line() == "train: steps: 3/3 (100%) 0.03/s elapsed 1m30s"


def test_updates_from_several_threads_are_all_counted():
    lines = []
    progress = Progress(400, "shards", lines.append, every=3600, stream=io.StringIO(), clock=Clock())
    workers = [threading.Thread(target=lambda: [progress.update() for _ in range(100)]) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    progress.close()
    progress.close()
    assert progress.done == 400 and lines == ["shards: 400/400 (100%) 0.00/s elapsed 0s"]


def test_negative_total_is_refused_naming_the_label():
    with pytest.raises(ValueError, match="'eval'"):
        Progress(-1, "eval")
