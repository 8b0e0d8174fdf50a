"""Candor's own preference losses: pure torch functions on summed response log-probs.

Every function takes, per pair row, the policy's and the reference's log-probabilities of the chosen and the
rejected answer, each **summed over response tokens**, and returns a scalar loss. With
r(y) = log π_θ(y|x) − log π_ref(y|x) (the implicit reward, unscaled) and σ the sigmoid:

- ``sigmoid_dpo``: mean over pairs of −log σ(β[r(y_w) − r(y_l)])  (RLAIF-V, SeVa, BPO; TRL's "sigmoid").
- ``mdpo``: AMP's multi-level DPO. A group holds the K(K−1)/2 pairs of K ranked answers y_0 ≻ … ≻ y_{K−1};
  L = mean over the group's pairs of [−log σ(β[r(y_i) − r(y_j)]) + [i = 0]·(−r(y_0))], i.e. exactly the
  reference code's ``losses.mean()`` where the pairs whose chosen is the best answer carry the penalty
  −r(y_0) (unscaled by β). For K = 4: mean pair loss + (3/6)·(−r(y_0)) = mean pair loss + 0.5·(−r(y_0)).
- ``infonce``: SeVa's multi-negative DPO (appendix). A group holds one chosen y_w against k rejected y_l,j:
  L = −log( e^{βr(y_w)} / (e^{βr(y_w)} + Σ_j e^{βr(y_l,j)}) ) = logsumexp(βr(y_w), βr(y_l,1..k)) − βr(y_w),
  which for k = 1 is log(1 + e^{β(r_l − r_w)}) = −log σ(β[r_w − r_l]): DPO.

Grouped losses are averaged within each group, then over the groups of the batch, so every prompt weighs the
same whatever its number of pairs (with equal group sizes this is the reference code's mean over all pairs).
``group`` is any integer tensor labelling each row's group.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("sigmoid", "mdpo", "infonce")


def rewards(policy_chosen, policy_rejected, ref_chosen, ref_rejected):
    """(r(y_w), r(y_l)) per row: policy minus reference summed log-probs."""
    return policy_chosen - ref_chosen, policy_rejected - ref_rejected


def sigmoid_dpo(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float) -> torch.Tensor:
    """Mean over rows of −log σ(β[r(y_w) − r(y_l)])."""
    chosen, rejected = rewards(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    return -F.logsigmoid(beta * (chosen - rejected)).mean()


def mdpo(policy_chosen, policy_rejected, ref_chosen, ref_rejected, chosen_rank, group, beta: float) -> torch.Tensor:
    """Per row −log σ(β[r(y_i) − r(y_j)]) + [chosen_rank = 0]·(−r(y_i)); mean per group, then over groups."""
    chosen, rejected = rewards(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    per_row = -F.logsigmoid(beta * (chosen - rejected)) - (chosen_rank == 0).to(chosen.dtype) * chosen
    return _mean_of_group_means(per_row, group)


def infonce(policy_chosen, policy_rejected, ref_chosen, ref_rejected, group, beta: float) -> torch.Tensor:
    """Per group logsumexp(βr(y_w), βr(y_l,1..k)) − βr(y_w); mean over groups.

    Every row of a group carries the same chosen answer, so r(y_w) is the mean of the group's rows (they are
    equal up to padding noise; the mean lets the gradient reach all copies evenly).
    """
    chosen, rejected = rewards(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    index, count = _group_index(group)
    chosen_per_group = torch.zeros(count, dtype=chosen.dtype, device=chosen.device).index_add(0, index, chosen)
    chosen_per_group = chosen_per_group / torch.bincount(index, minlength=count).to(chosen.dtype)
    losses = []
    for g in range(count):  # groups are few per batch; a loop keeps the formula readable
        logits = beta * torch.cat([chosen_per_group[g:g + 1], rejected[index == g]])
        losses.append(torch.logsumexp(logits, dim=0) - logits[0])
    return torch.stack(losses).mean()


def candor_loss(name: str, policy_chosen, policy_rejected, ref_chosen, ref_rejected, chosen_rank, group,
                beta: float) -> torch.Tensor:
    """The loss called ``name`` (one of LOSSES) on one batch of pair rows."""
    if name == "sigmoid":
        return sigmoid_dpo(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    if name == "mdpo":
        return mdpo(policy_chosen, policy_rejected, ref_chosen, ref_rejected, chosen_rank, group, beta)
    if name == "infonce":
        return infonce(policy_chosen, policy_rejected, ref_chosen, ref_rejected, group, beta)
    raise ValueError(f"loss={name!r}: expected one of {', '.join(LOSSES)}")


def _group_index(group: torch.Tensor) -> tuple[torch.Tensor, int]:
    labels, index = torch.unique(group, return_inverse=True)
    return index, len(labels)


def _mean_of_group_means(per_row: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    index, count = _group_index(group)
    sums = torch.zeros(count, dtype=per_row.dtype, device=per_row.device).index_add(0, index, per_row)
    return (sums / torch.bincount(index, minlength=count).to(per_row.dtype)).mean()
