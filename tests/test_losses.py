"""Identity margin losses, Partial FC, the age loss and the masked multi-task loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from swinface import tasks
from swinface.train.losses import (
    ArcFace,
    CosFace,
    MultiTaskLoss,
    SFace,
    TaskTargets,
    annealed_age_loss,
    make_margin_loss,
)
from swinface.train.partial_fc import PartialFC, _ShardedCrossEntropy, shard_range


def test_cosface_and_arcface_change_only_the_target_logit():
    cosine = torch.tensor([[0.5, 0.1, -0.2], [0.3, 0.9, 0.0]])
    labels = torch.tensor([0, -1])  # the second row's class lives on another shard
    cos = CosFace(s=10, m=0.4)(cosine, labels)
    torch.testing.assert_close(cos, torch.tensor([[1.0, 1.0, -2.0], [3.0, 9.0, 0.0]]))
    arc = ArcFace(s=10, m=0.5)(cosine, labels)
    expected = 10 * math.cos(math.acos(0.5) + 0.5)
    assert arc[0, 0].item() == pytest.approx(expected, abs=1e-5)
    torch.testing.assert_close(arc[0, 1:], cos[0, 1:])
    torch.testing.assert_close(arc[1], cos[1])
    # Past pi - m the angle would wrap round: the fallback keeps the logit falling.
    far = ArcFace(s=1, m=0.5)(torch.tensor([[-0.95, 0.0]]), torch.tensor([0]))
    assert far[0, 0].item() == pytest.approx(-0.95 - math.sin(math.pi - 0.5) * 0.5, abs=1e-6)


def test_sface_weights_by_angle_and_pulls_the_target():
    cosine = torch.tensor([[0.2, 0.6, -0.1]], requires_grad=True)
    loss = SFace(s=64, k=80, a=0.8, b=1.23)(cosine, torch.tensor([0])).sum()
    loss.backward()
    theta = torch.acos(cosine.detach())[0]
    intra = torch.sigmoid(80 * (theta[0] - 0.8))
    inter = torch.sigmoid(-80 * (theta[1:] - 1.23))
    expected = -intra * 64 * 0.2 + (inter * 64 * cosine.detach()[0, 1:]).sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert cosine.grad[0, 0] < 0  # descending raises the target cosine
    assert cosine.grad[0, 1] > 0  # and lowers a close impostor's


def test_unknown_margin_loss_is_named():
    with pytest.raises(ValueError, match="unknown loss 'nope'.*arcface"):
        make_margin_loss("nope")


def test_sharded_cross_entropy_matches_torch_with_gradients():
    torch.manual_seed(0)
    logits = (torch.randn(6, 9) * 30).requires_grad_()
    labels = torch.randint(0, 9, (6,))
    ours = _ShardedCrossEntropy.apply(logits, labels, False)
    ours.backward()
    grad = logits.grad.clone()
    logits.grad = None
    reference = F.cross_entropy(logits, labels)
    reference.backward()
    torch.testing.assert_close(ours, reference)
    torch.testing.assert_close(grad, logits.grad)


@pytest.mark.parametrize("name", ["cosface", "arcface", "sface"])
def test_partial_fc_at_full_rate_is_the_plain_margin_classifier(name):
    torch.manual_seed(1)
    margin = make_margin_loss(name, s=64, m=0.4 if name == "cosface" else 0.5)
    pfc = PartialFC(margin, 16, 10)
    emb = torch.randn(8, 16)
    labels = torch.tensor([3, -1, 0, 9, 3, -1, 5, 1])  # -1: the sample has no identity label
    loss = pfc(emb, labels)
    keep = labels >= 0
    cosine = F.linear(F.normalize(emb[keep]), F.normalize(pfc.weight.detach()))
    scored = margin(cosine, labels[keep])
    expected = F.cross_entropy(scored, labels[keep]) if margin.softmax_based else scored.mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_partial_fc_samples_every_positive_and_is_repeatable():
    torch.manual_seed(2)
    pfc = PartialFC(CosFace(), 8, 100, sample_rate=0.1, seed=5)
    labels = torch.tensor([7, 42, 99, 7])
    local = labels.clone()
    index = pfc._sample(local)
    assert index.numel() == 10
    assert set(labels.tolist()) <= set(index.tolist())
    assert torch.equal(index, index.sort().values)
    assert torch.equal(pfc._sample(local), index)  # same call count, same sample
    pfc.calls += 1
    assert not torch.equal(pfc._sample(local), index)
    # The loss uses only the sampled centres, with labels remapped into them.
    emb = torch.randn(4, 8)
    pfc.calls.zero_()
    index = pfc._sample(labels)
    loss = pfc(emb, labels)
    cosine = F.linear(F.normalize(emb), F.normalize(pfc.weight.detach()[index]))
    remapped = torch.searchsorted(index, labels)
    expected = F.cross_entropy(CosFace()(cosine, remapped), remapped)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # Only sampled centres receive a gradient.
    loss.backward()
    touched = torch.nonzero(pfc.weight.grad.abs().sum(1)).flatten()
    assert set(touched.tolist()) <= set(index.tolist())


def test_shards_cover_every_class_once():
    ranges = [shard_range(10, r, 3) for r in range(3)]
    assert ranges == [(0, 4), (4, 3), (7, 3)]


def test_annealed_age_loss_by_hand():
    pred, true = torch.tensor([33.0]), torch.tensor([30.0])
    assert annealed_age_loss(pred, true, 0, 100).item() == pytest.approx(4.5)
    assert annealed_age_loss(pred, true, 100, 100).item() == pytest.approx(1 - math.exp(-0.5))
    half = 0.25 * 9 + 0.5 * (1 - math.exp(-0.5))
    assert annealed_age_loss(pred, true, 50, 100).item() == pytest.approx(half)
    assert annealed_age_loss(true, true, 10, 100).item() == 0.0


def _targets(n: int) -> TaskTargets:
    return TaskTargets(
        age=torch.full((n,), float("nan")),
        gender=torch.full((n,), -1),
        expression=torch.full((n,), -1),
        attributes=torch.full((n, 40), -1),
    )


def test_multitask_loss_reads_each_label_from_its_output():
    slices = tasks.output_slices()
    logits = torch.zeros(2, tasks.PACKED_SIZE)
    logits[0, slices["Age"]] = 28.0
    logits[0, slices["Gender"]] = torch.tensor([0.0, 2.0])
    logits[1, slices["Expression"]] = torch.tensor([0, 0, 0, 3.0, 0, 0, 0])
    logits[1, slices["Smiling"]] = torch.tensor([-1.0, 1.0])
    t = _targets(2)
    t.age[0], t.gender[0] = 30.0, 1
    t.expression[1] = tasks.EXPRESSION_LABELS.index("happiness")
    t.attributes[1, tasks.CELEBA_ATTRIBUTES.index("Smiling")] = 1
    loss = MultiTaskLoss(label_smoothing=0.0, age_kind="annealed")
    _, parts = loss(logits, t, 0, 10)
    assert parts["age"] == pytest.approx(2.0)  # (28 - 30)^2 / 2 at the start
    # by default: smooth L1 on the error in spreads of the training ages (here 4 years)
    _, parts_l1 = MultiTaskLoss(label_smoothing=0.0, age_scale=4.0)(logits, t, 0, 10)
    assert parts_l1["age"] == pytest.approx(0.5 - 0.05)
    assert parts["gender"] == pytest.approx(-math.log(math.exp(2) / (1 + math.exp(2))), rel=1e-5)
    assert parts["expression"] == pytest.approx(
        -math.log(math.exp(3) / (6 + math.exp(3))), rel=1e-5
    )
    assert parts["attributes"] == pytest.approx(
        -math.log(math.exp(1) / (math.exp(-1) + math.exp(1))), rel=1e-5
    )


def test_a_sample_without_a_label_contributes_nothing():
    torch.manual_seed(3)
    logits = torch.randn(3, tasks.PACKED_SIZE, requires_grad=True)
    t = _targets(3)
    t.age[0], t.gender[0], t.expression[1] = 40.0, 0, 2
    t.attributes[1] = torch.randint(0, 2, (40,))
    total, _ = MultiTaskLoss()(logits, t, 5, 10)
    total.backward()
    assert torch.count_nonzero(logits.grad[2]) == 0  # row 2 has no label at all
    assert torch.count_nonzero(logits.grad[0, tasks.output_slices()["Expression"]]) == 0
    none = MultiTaskLoss()(logits, _targets(3), 0, 10)[0]
    assert none.item() == 0.0


def test_a_partly_labelled_sample_trains_only_the_labels_it_has():
    """A CelebA face in the age_gender batch: a gender, no age."""
    torch.manual_seed(4)
    logits = torch.randn(2, tasks.PACKED_SIZE, requires_grad=True)
    t = _targets(2)
    t.gender[0] = 1  # no age
    t.age[1] = 35.0  # no gender (CLAP2015)
    total, parts = MultiTaskLoss()(logits, t, 0, 10)
    total.backward()
    slices = tasks.output_slices()
    assert torch.count_nonzero(logits.grad[0, slices["Gender"]]) == 2
    assert torch.count_nonzero(logits.grad[0, slices["Age"]]) == 0
    assert torch.count_nonzero(logits.grad[1, slices["Age"]]) == 1
    assert torch.count_nonzero(logits.grad[1, slices["Gender"]]) == 0
    assert math.isfinite(parts["age"]) and math.isfinite(parts["gender"])
