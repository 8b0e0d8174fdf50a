"""Start-up hook that keeps torchvision importable beside torch 2.13.0+cpu. scripts/setup.sh copies it into the
environment's site-packages as ``candor_torchvision_ops_hook`` with a .pth file that imports it at interpreter start.
It stays out of the package: an import of ``engine`` at every start would fix which checkout's package a later
``sys.path`` line of a script can still choose.

PyPI's torchvision is built against another torch; its ``_C`` extension fails to load here, and then
``torchvision._meta_registrations`` raises ``operator torchvision::nms does not exist``. vLLM's LLaVA
path imports torchvision, also inside the subprocess in which vLLM inspects models, so the fix must run
at interpreter start. It hooks the *import* of torchvision (so plain Python start-up stays fast), and
only when the extension really fails to load does it declare the ``nms``/``qnms`` schemas, without a kernel.
"""
import importlib.abc
import os
import sys

_LIBRARY = None  # keeps the torch.library registration alive


class _TorchvisionOpsFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "torchvision":
            return None
        sys.meta_path.remove(self)
        _declare_nms_if_extension_broken()
        return None  # let the normal finders import torchvision


def _declare_nms_if_extension_broken():
    global _LIBRARY
    import importlib.util

    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    folder = list(spec.submodule_search_locations)[0]
    extension = next((f for f in os.listdir(folder) if f.startswith("_C.") and f.endswith(".so")), None)
    if extension is not None:
        try:
            torch.ops.load_library(os.path.join(folder, extension))
            return
        except (OSError, RuntimeError):
            pass
    try:
        torch.ops.torchvision.nms  # already declared
        return
    except (AttributeError, RuntimeError):
        pass
    _LIBRARY = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):  # the two ops torchvision registers fake kernels for unconditionally
        _LIBRARY.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


sys.meta_path.insert(0, _TorchvisionOpsFinder())
