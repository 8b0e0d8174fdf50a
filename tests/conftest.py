"""Session fixtures: the small zoo is built once (cached by recipe hash) and one vLLM engine serves every test."""
import pytest

from engine.zoo import SMALL, build_zoo


@pytest.fixture(scope="session")
def small_zoo():
    return build_zoo(SMALL)


@pytest.fixture(scope="session")
def policy_engine(small_zoo):
    from engine.generation import VLLMEngine

    # LoRA off: vLLM 0.32 CPU fails prompt_logprobs when LoRA is enabled (punica bgmv shape error); the
    # loop tests cover adapters.
    return VLLMEngine(str(small_zoo["policy"]), seed=0, max_model_len=256, enforce_eager=True)
