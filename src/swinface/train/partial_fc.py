"""Partial FC (An et al., 2022): a sampled, sharded identity classifier.

Each rank holds a contiguous shard of the class centres. Every step the
embeddings of all ranks are gathered, each rank scores them against a sample
of its centres (every positive centre plus random negatives, `sample_rate` of
the shard), and the softmax is computed across shards without ever gathering
the logits. Millions of identities then fit, and each step touches only a
fraction of them. With one process it is an ordinary (optionally sampled)
margin-softmax classifier.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from swinface.train.losses import MarginLoss


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_range(num_classes: int, rank: int, world_size: int) -> tuple[int, int]:
    """(first class, number of classes) of `rank`'s shard; the first ranks take the remainder."""
    base, extra = divmod(num_classes, world_size)
    return base * rank + min(rank, extra), base + int(rank < extra)


class _ShardedCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of logits split by class across ranks; label -1: class on another rank."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor, distributed: bool):
        logits = logits.float()
        row_max = logits.max(dim=1, keepdim=True).values
        if distributed:
            dist.all_reduce(row_max, dist.ReduceOp.MAX)
        probs = (logits - row_max).exp()
        denominator = probs.sum(dim=1, keepdim=True)
        if distributed:
            dist.all_reduce(denominator, dist.ReduceOp.SUM)
        probs /= denominator
        local = torch.nonzero(labels >= 0).flatten()
        # In log space: a target probability can underflow float32 at s = 64.
        target_logit = torch.zeros(logits.shape[0], device=logits.device)
        target_logit[local] = logits[local, labels[local]]
        if distributed:
            dist.all_reduce(target_logit, dist.ReduceOp.SUM)
        ctx.save_for_backward(probs, labels, local)
        loss = row_max.squeeze(1) + denominator.squeeze(1).log() - target_logit
        return loss.mean()

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        probs, labels, local = ctx.saved_tensors
        grad = probs.clone()
        grad[local, labels[local]] -= 1.0
        grad *= grad_output / probs.shape[0]
        return grad, None, None


class _AllGather(torch.autograd.Function):
    """All ranks' rows, concatenated, for a loss that every rank computes alike.

    Backward: each rank holds the part of d(loss)/d(rows) that flows through its
    class shard, so the parts are summed over ranks; this rank's rows then get
    that full gradient times the world size. DistributedDataParallel averages
    the backbone's gradients over ranks, and every rank's (identical) identity
    loss reaches the backbone only through its own rows: without the factor
    the identity gradient would shrink by 1/world_size.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        ctx.rows = tensor.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows] * dist.get_world_size()


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks of a replicated quantity; each rank's own share gets the gradient as is."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor, dist.ReduceOp.SUM)
        return tensor

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


class PartialFC(nn.Module):
    """Class centres for this rank's shard, sampled each step, scored with a margin loss."""

    def __init__(
        self,
        margin_loss: MarginLoss,
        embedding_dim: int,
        num_classes: int,
        *,
        sample_rate: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"identity_loss.sample_rate: must be in (0, 1], got {sample_rate}")
        if num_classes < 1:
            raise ValueError(f"Partial FC needs at least one identity, got {num_classes}")
        self.rank, self.world_size = _world()
        self.margin_loss = margin_loss
        self.num_classes, self.sample_rate, self.seed = num_classes, sample_rate, seed
        self.class_start, self.num_local = shard_range(num_classes, self.rank, self.world_size)
        self.num_sample = max(1, int(sample_rate * self.num_local))
        generator = torch.Generator().manual_seed(seed * 1000003 + self.rank)
        self.weight = nn.Parameter(
            torch.normal(0.0, 0.01, (self.num_local, embedding_dim), generator=generator)
        )
        # Counts calls, so that the negative sampling of step s is the same after a resume.
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def _gather(self, embeddings: torch.Tensor, labels: torch.Tensor):
        if self.world_size == 1:
            return embeddings, labels
        gathered = _AllGather.apply(embeddings)
        label_list = [torch.empty_like(labels) for _ in range(self.world_size)]
        dist.all_gather(label_list, labels.contiguous())
        return gathered, torch.cat(label_list)

    def _sample(self, local_labels: torch.Tensor) -> torch.Tensor:
        """Indices of the centres scored this step: all positives, then random negatives."""
        if self.num_sample >= self.num_local:
            return torch.arange(self.num_local, device=local_labels.device)
        positives = torch.unique(local_labels[local_labels >= 0])
        if positives.numel() >= self.num_sample:
            return positives
        generator = torch.Generator().manual_seed(
            (self.seed * 1000003 + self.rank) * 1000003 + int(self.calls)
        )
        priority = torch.rand(self.num_local, generator=generator).to(local_labels.device)
        priority[positives] = 2.0  # positives always make the cut
        return torch.topk(priority, self.num_sample).indices.sort().values

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Identity loss for a batch; rows labelled -1 (no identity) are left out."""
        embeddings, labels = self._gather(embeddings, labels.long())
        keep = torch.nonzero(labels >= 0).flatten()
        embeddings, labels = embeddings[keep], labels[keep]
        if labels.numel() == 0:
            self.calls += 1
            return self.weight.sum() * 0.0
        on_shard = (labels >= self.class_start) & (labels < self.class_start + self.num_local)
        local_labels = torch.where(on_shard, labels - self.class_start, torch.full_like(labels, -1))
        index = self._sample(local_labels)
        self.calls += 1
        if index.numel() < self.num_local:
            local_labels = torch.where(
                local_labels >= 0, torch.searchsorted(index, local_labels), local_labels
            )
        cosine = F.linear(F.normalize(embeddings.float()), F.normalize(self.weight[index]))
        cosine = cosine.clamp(-1.0, 1.0)
        scored = self.margin_loss(cosine, local_labels)
        distributed = self.world_size > 1
        if self.margin_loss.softmax_based:
            return _ShardedCrossEntropy.apply(scored, local_labels, distributed)
        if distributed:  # SFace: per-row sums over class shards
            scored = _AllReduceSum.apply(scored)
        return scored.mean()
