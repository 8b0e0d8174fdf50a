"""Candor's losses against hand computations on fixed log-probs, and sigmoid DPO against TRL's own value."""
import math

import pytest
import torch

from engine import losses


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


# Summed log-probs of four pair rows: policy chosen/rejected, reference chosen/rejected.
POLICY_CHOSEN = [-5.0, -7.0, -3.5, -9.0]
POLICY_REJECTED = [-6.0, -4.0, -8.0, -9.5]
REF_CHOSEN = [-5.5, -7.0, -4.0, -8.0]
REF_REJECTED = [-5.0, -5.0, -6.0, -9.0]
BETA = 0.5


def tensors(*lists):
    return [torch.tensor(values, dtype=torch.float64) for values in lists]


def test_sigmoid_dpo_matches_hand_computation():
    expected = 0.0
    for pc, pr, rc, rr in zip(POLICY_CHOSEN, POLICY_REJECTED, REF_CHOSEN, REF_REJECTED):
        expected += -log_sigmoid(BETA * ((pc - rc) - (pr - rr))) / 4
    got = losses.sigmoid_dpo(*tensors(POLICY_CHOSEN, POLICY_REJECTED, REF_CHOSEN, REF_REJECTED), BETA)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def amp_reference_mdpo(policy: list[float], ref: list[float], beta: float) -> float:
    """AMP's reference loop (takomc/amp models/dpo_trainer.py) for one prompt with K ranked levels:
    for i < j, loss = -logsigmoid(beta * logits) plus (ref_i - policy_i) when i == 0; then the mean."""
    pair_losses = []
    for i in range(len(policy) - 1):
        for j in range(i + 1, len(policy)):
            logits = (policy[i] - policy[j]) - (ref[i] - ref[j])
            loss = -log_sigmoid(beta * logits)
            if i == 0:
                loss += ref[i] - policy[i]
            pair_losses.append(loss)
    return sum(pair_losses) / len(pair_losses)


def mdpo_rows(policy: list[float], ref: list[float]):
    """The K(K-1)/2 pair rows of one ranking, as the pairs table holds them (chosen_rank < rejected_rank)."""
    rows = [(i, j) for i in range(len(policy)) for j in range(i + 1, len(policy))]
    chosen_rank = torch.tensor([i for i, _ in rows])
    return (*tensors([policy[i] for i, _ in rows], [policy[j] for _, j in rows],
                     [ref[i] for i, _ in rows], [ref[j] for _, j in rows]), chosen_rank)


def test_mdpo_matches_amp_reference_code_and_the_k4_normalisation():
    policy, ref = [-4.0, -6.0, -7.5, -9.0], [-4.5, -5.0, -7.0, -10.0]
    pc, pr, rc, rr, chosen_rank = mdpo_rows(policy, ref)
    got = losses.mdpo(pc, pr, rc, rr, chosen_rank, torch.zeros(6, dtype=torch.long), BETA)
    assert got.item() == pytest.approx(amp_reference_mdpo(policy, ref, BETA), rel=1e-12)
    # AMP's MDPO: for K = 4 the reference normalisation is mean pair loss + 0.5 * (-r(y_0)).
    mean_pair = losses.sigmoid_dpo(pc, pr, rc, rr, BETA).item()
    assert got.item() == pytest.approx(mean_pair + 0.5 * -(policy[0] - ref[0]), rel=1e-12)


def test_mdpo_averages_each_group_then_the_groups():
    first = ([-4.0, -6.0, -7.5, -9.0], [-4.5, -5.0, -7.0, -10.0])
    second = ([-3.0, -2.0, -8.0], [-3.5, -2.5, -7.0])  # a K = 3 ranking: 3 pairs, penalty weight 2/3
    a, b = mdpo_rows(*first), mdpo_rows(*second)
    joined = [torch.cat([x, y]) for x, y in zip(a, b)]
    group = torch.tensor([7] * 6 + [3] * 3)  # any integer labels
    got = losses.mdpo(*joined[:4], joined[4], group, BETA)
    expected = (amp_reference_mdpo(*first, BETA) + amp_reference_mdpo(*second, BETA)) / 2
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_infonce_matches_hand_computation():
    # One chosen (r_w = 1.0) against three rejected (r_l = -1.0, 0.5, -2.0); every row repeats the chosen.
    pc, rc = [-5.0] * 3, [-6.0] * 3
    pr, rr = [-8.0, -4.5, -9.0], [-7.0, -5.0, -7.0]
    r_w, r_l = 1.0, [-1.0, 0.5, -2.0]
    expected = -math.log(math.exp(BETA * r_w) / (math.exp(BETA * r_w) + sum(math.exp(BETA * r) for r in r_l)))
    got = losses.infonce(*tensors(pc, pr, rc, rr), torch.zeros(3, dtype=torch.long), BETA)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_infonce_equals_dpo_with_one_negative():
    batch = tensors(POLICY_CHOSEN, POLICY_REJECTED, REF_CHOSEN, REF_REJECTED)
    one_negative_each = torch.arange(4)
    infonce = losses.infonce(*batch, one_negative_each, BETA)
    assert torch.allclose(infonce, losses.sigmoid_dpo(*batch, BETA), rtol=1e-12, atol=0)


def test_loss_names_are_checked():
    with pytest.raises(ValueError, match="loss='ipo'"):
        losses.candor_loss("ipo", *tensors([0.0], [0.0], [0.0], [0.0]), torch.zeros(1), torch.zeros(1), BETA)


def test_sigmoid_dpo_equals_trls_loss_on_the_same_batch(small_zoo, tmp_path):
    """TRL's DPOTrainer computes its loss on one batch of real pairs; Candor's sigmoid_dpo on log-probs
    summed by a plain forward pass (log-softmax of the logits at the completion tokens) must agree."""
    from peft import LoraConfig
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import DPOConfig, DPOTrainer

    from engine.training import LORA_TARGETS, load_pairs
    from test_training import write_pairs

    torch.set_num_threads(1)
    torch.manual_seed(0)
    policy = str(small_zoo["policy"])
    write_pairs(tmp_path / "pairs", "pairs", prompts=3)
    processor = AutoProcessor.from_pretrained(policy)
    model = AutoModelForImageTextToText.from_pretrained(policy, dtype=torch.float32)
    args = DPOConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=3, beta=BETA, max_length=None,
                     use_cpu=True, report_to=[], bf16=False)
    trainer = DPOTrainer(model=model, args=args, train_dataset=load_pairs(tmp_path / "pairs"),
                         processing_class=processor,
                         peft_config=LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=LORA_TARGETS))
    with torch.no_grad():  # LoRA B starts at zero (policy = reference); move it so the rewards are not all 0
        for name, parameter in trainer.model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.2)
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, dict(batch)).item()
        policy_logps = plain_summed_logps(trainer.model, batch)
        with trainer.model.disable_adapter():
            ref_logps = plain_summed_logps(trainer.model, batch)
    ours = losses.sigmoid_dpo(*policy_logps.chunk(2), *ref_logps.chunk(2), BETA).item()
    assert abs(trl_loss - math.log(2)) > 1e-3  # the check is not vacuous
    assert ours == pytest.approx(trl_loss, rel=1e-5)


def plain_summed_logps(model, batch) -> torch.Tensor:
    inputs = {k: v for k, v in batch.items() if k != "completion_mask"}
    logits = model(**inputs, use_cache=False).logits[:, :-1]
    targets = batch["input_ids"][:, 1:]
    token_logps = logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (token_logps * batch["completion_mask"][:, 1:]).sum(dim=1)
