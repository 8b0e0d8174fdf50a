"""The benchmark harness's mechanics (no model runs, no timing asserted): options, the line fit, the
report's tables, and the memory sampler on a child process."""
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import parse
from bench.common import MemorySampler, machine
from bench.report import Section, document
from bench.runs import fit_line


def test_options_pick_stages_and_reject_unknown_ones(capsys):
    args = parse(["--only", "sampling,labeler", "--prompts", "8", "--zoo", "small"])
    assert args.only == ["sampling", "labeler"] and args.prompts == 8 and args.zoo == "small"
    with pytest.raises(SystemExit):
        parse(["--only", "sampling,warp"])
    assert "unknown stage(s) warp" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse(["--only", "scaling", "--budgets", "8,16"])
    assert "at least 3" in capsys.readouterr().err


def test_line_fit_recovers_a_line_and_its_r2():
    a, b, r2 = fit_line([32, 64, 128, 256], [10 + 0.5 * x for x in (32, 64, 128, 256)])
    assert a == pytest.approx(10) and b == pytest.approx(0.5) and r2 == pytest.approx(1.0)
    assert fit_line([1, 2, 3], [1, 3, 2])[2] < 1


def test_report_has_machine_command_and_one_table_per_stage():
    section = Section("1. Sampling (tokens/s)")
    section.add("candor vs bare", "900 tok/s", "1000 tok/s", 0.9, ">= 0.9x", True)
    section.note("contended")
    text = document([section], machine(), {"torch": "x"}, "python -m bench --only sampling", 90.0, ["shared"])
    assert "python -m bench --only sampling" in text and f"{machine()['nproc']} CPUs" in text
    assert "| candor vs bare | 900 tok/s | 1000 tok/s | 0.90x | >= 0.9x | yes |" in text
    assert "- contended" in text and "- shared" in text


def test_memory_sampler_sees_a_child_process_grow():
    code = "import time; x = bytearray(200 * 2**20); time.sleep(1.5)"
    proc = subprocess.Popen([sys.executable, "-c", code])
    with MemorySampler(proc.pid, interval=0.1) as memory:
        proc.wait()
    assert memory.samples > 0
    assert memory.peak_by_role["driver"] >= 200 * 2**20 and memory.peak_total >= memory.peak_by_role["driver"]
