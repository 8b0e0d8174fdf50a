"""The torchvision::nms start-up hook (tools/torchvision_ops_hook.py), installed as scripts/setup.sh installs it
into a fresh site directory, makes torchvision importable beside this environment's torch."""
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOOK = "tools/torchvision_ops_hook.py"


def test_the_hook_setup_installs_lets_torchvision_import(tmp_path):
    setup = (ROOT / "scripts/setup.sh").read_text()
    assert f'cp {HOOK} "$site/candor_torchvision_ops_hook.py"' in setup and HOOK in setup.split("sha256sum")[0]
    (tmp_path / "candor_torchvision_ops_hook.py").write_text((ROOT / HOOK).read_text())
    (tmp_path / "candor-torchvision-ops-hook.pth").write_text("import candor_torchvision_ops_hook\n")
    # -S: no site-packages .pth runs (not the hook this environment already has); the fresh site dir comes first.
    packages = sysconfig.get_paths()["purelib"]
    code = (f"import site, sys; site.addsitedir({str(tmp_path)!r}); sys.path.append({packages!r})\n"
            "import candor_torchvision_ops_hook as hook, torch, torchvision\n"
            "print(hook.__file__, hasattr(torch.ops.torchvision, 'nms'))")
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [str(tmp_path / "candor_torchvision_ops_hook.py"), "True"]
