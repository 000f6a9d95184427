"""The training loop: one model, the multi-task loss, Partial FC, AdamW with a cosine schedule.

Runs on one CPU or GPU, or many through torchrun (DistributedDataParallel,
with Partial FC's class centres sharded across ranks). Checkpoints hold the
model in the native format plus optimizer, scheduler, scaler, random state and
step, so a resumed run continues the same run, step for step.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import nn

from swinface.atomic import atomic_path, atomic_write_text
from swinface.backends import resolve_precision
from swinface.errors import SwinFaceError
from swinface.model import SwinFace, create_model
from swinface.train.batches import MultiTaskBatches
from swinface.train.checkpoints import (
    MANIFEST,
    POINTER,
    ResumeError,
    checkpoint_name,
    read_manifest,
    resume_point,
    write_manifest,
)
from swinface.train.config import TrainConfig

log = logging.getLogger(__name__)


class TrainingCollapsed(SwinFaceError, RuntimeError):
    """Validation after the warm-up is no better than a constant answer on some task."""


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str = "auto") -> DistEnv:
    """Join the process group torchrun describes in the environment (called from main, never at import)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistEnv(rank, world_size, local_rank, dev)


def cosine_with_warmup(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Learning-rate multiplier: linear warm-up, then cosine decay to `min_ratio`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


_NORMS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)
_BIAS = re.compile(r"bias|.+_b\d*")  # `bias`, and stacked per-group biases: `gate_b1`, `out_b`
_WEIGHT = re.compile(r"weight|.+_w\d*")  # `weight`, and stacked per-group weights: `fc1_w`


def decays(name: str, module: nn.Module, no_decay: set[str]) -> bool:
    """Whether weight decay applies to parameter `name` of `module` (its owner).

    An explicit rule: weights of linear and convolutional maps decay; biases,
    every parameter of a normalisation layer and the tables the model lists in
    `no_weight_decay()` (relative position biases) do not. A parameter the rule
    cannot place is an error, not a guess: a rule on `ndim` alone would decay
    the stacked per-group biases (`mlca.gate_b1`, `heads.out_b`).
    """
    leaf = name.rsplit(".", 1)[-1]
    if isinstance(module, _NORMS) or name in no_decay:
        return False
    if _BIAS.fullmatch(leaf):
        return False
    if _WEIGHT.fullmatch(leaf):
        return True
    raise ValueError(
        f"{name}: cannot tell whether weight decay applies (not a weight, bias or norm "
        "parameter, nor listed by the model's no_weight_decay())"
    )


def parameter_groups(model: SwinFace, extra: list[nn.Parameter], config: TrainConfig) -> list[dict]:
    """Optimizer groups: the backbone at `backbone_lr_scale` of the learning rate; weight decay
    as `decays` says; `extra` (Partial FC's class centres) at the full rate, with decay.

    Frozen parameters (requires_grad off) are left out. Each group carries its
    `role` (backbone or head) and `lr_scale`.
    """
    modules = dict(model.named_modules())
    no_decay = model.no_weight_decay()
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        owner = modules[name.rsplit(".", 1)[0]] if "." in name else model
        role = "backbone" if name.startswith("backbone.") else "head"
        groups.setdefault((role, decays(name, owner, no_decay)), []).append(p)
    if extra:
        groups.setdefault(("head", True), []).extend(extra)
    o = config.optim
    return [
        {
            "params": params,
            "role": role,
            "lr_scale": o.backbone_lr_scale if role == "backbone" else 1.0,
            "weight_decay": o.weight_decay if decay else 0.0,
        }
        for (role, decay), params in groups.items()
    ]


def unused_parameters(model: SwinFace, outputs: set[str]) -> list[str]:
    """Names of the parameters that none of `outputs` ("embedding", "logits") depends on.

    Found by one backward pass on a tiny batch in eval mode (so no BatchNorm
    statistics change and no random number is drawn); structural, not data-dependent.
    """
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    size = model.config.img_size
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        out = model(torch.zeros(2, 3, size, size, device=device))
        total = sum(getattr(out, name).float().sum() for name in sorted(outputs))
        grads = torch.autograd.grad(total, [p for _, p in params], allow_unused=True)
    finally:
        model.train(was_training)
    return [name for (name, _), grad in zip(params, grads, strict=True) if grad is None]


class Trainer:
    """Owns the model, losses, optimizer, data and the run's files.

    Use it as a context manager (or call `close()`) to release the TensorBoard
    writer; `fit` also closes it when it returns.
    """

    def __init__(self, config: TrainConfig, env: DistEnv | None = None) -> None:
        from swinface.train.losses import MultiTaskLoss, make_margin_loss
        from swinface.train.partial_fc import PartialFC

        self.config, self.env = config, env or DistEnv()
        self.out = Path(config.output_dir)
        torch.manual_seed(config.seed)
        self.data = MultiTaskBatches(config, self.env.rank, self.env.world_size)
        self.priors = self.data.label_priors()
        self.model = self._build_model().to(self.env.device)
        self._freeze_unused()
        self.precision = resolve_precision(config.precision, self.env.device)
        self.analysis_tasks = [t for t in config.tasks if t != "identity"]
        self.task_loss = MultiTaskLoss(
            weights={name: task.loss_weight for name, task in config.tasks.items()},
            age_weight=config.age_loss_weight,
            age_kind=config.age_loss,
            age_scale=self.model.config.age_std,
        ).to(self.env.device)
        self.partial_fc: PartialFC | None = None
        if "identity" in config.tasks:
            idl = config.identity_loss
            margin = make_margin_loss(idl.margin, s=idl.scale, m=idl.margin_value)
            self.partial_fc = PartialFC(
                margin,
                self.model.config.embedding_dim,
                self.data.num_identities,
                sample_rate=idl.sample_rate,
                seed=config.seed,
            ).to(self.env.device)
        self.distill: nn.Module | None = None
        if config.distill.active:
            from swinface.train.distill import DistillationLoss

            self.distill = DistillationLoss(
                config.distill,
                self.model.config.embedding_dim,
                self.data.teacher_keys,
                age_kind=config.age_loss,
                age_scale=self.model.config.age_std,
            ).to(self.env.device)
        self.ddp_model: nn.Module = self.model
        if self.env.world_size > 1:
            ids = [self.env.device.index] if self.env.device.type == "cuda" else None
            self.ddp_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        extra = list(self.partial_fc.parameters()) if self.partial_fc else []
        extra += list(self.distill.parameters()) if self.distill is not None else []
        o = config.optim
        self.optimizer = torch.optim.AdamW(
            parameter_groups(self.model, extra, config), lr=o.lr, betas=o.betas
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            [
                lambda s, k=g["lr_scale"]: (
                    k * cosine_with_warmup(s, config.steps, o.warmup_steps, o.min_lr_ratio)
                )
                for g in self.optimizer.param_groups
            ],
        )
        self.scaler = torch.amp.GradScaler(
            self.env.device.type, enabled=self.precision == "float16"
        )
        self.step = 0
        self.history: list[dict[str, float]] = []
        self._tb = None
        self._tb_tried = False

    def _build_model(self) -> SwinFace:
        if self.config.init_weights:
            from swinface.weights.loading import load_model

            model = load_model(self.config.init_weights, device="cpu")
            log.info("starting from weights %s", self.config.init_weights)
        else:
            overrides = dict(self.config.model_overrides)
            if self.priors.age_mean is not None and self.config.age_loss != "annealed":
                # Regress ages normalised by the training data (see SwinFaceConfig.age_mean):
                # the output starts at the mean age, at the scale of the other tasks' logits.
                overrides.setdefault("age_mean", round(self.priors.age_mean, 4))
                overrides.setdefault("age_std", round(self.priors.age_std, 4))
            model = create_model(self.config.model, **overrides)
        return model.train()

    def _freeze_unused(self) -> None:
        """Freeze the parameters no configured task trains (the embedding head without an
        identity task; MLCA and the task heads with only identity): DistributedDataParallel
        would otherwise wait for their gradients forever, and the optimizer skips them."""
        distill = self.config.distill
        outputs = set()
        if "identity" in self.config.tasks or distill.embedding is not None:
            outputs.add("embedding")
        if any(t != "identity" for t in self.config.tasks) or any(
            (distill.expression, distill.gender, distill.age)
        ):
            outputs.add("logits")
        unused = unused_parameters(self.model, outputs)
        parameters = dict(self.model.named_parameters())
        for name in unused:
            parameters[name].requires_grad_(False)
        if unused:
            tops = sorted({".".join(n.split(".")[:2]) for n in unused})
            log.info("not trained (no configured task uses them): %s", ", ".join(tops))

    def _autocast(self):
        if self.precision == "float32":
            return contextlib.nullcontext()
        return torch.autocast(self.env.device.type, dtype=getattr(torch, self.precision))

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Flush and close the TensorBoard writer (reopened if the trainer logs again)."""
        if self._tb is not None:
            self._tb.close()
        self._tb, self._tb_tried = None, False

    # ------------------------------------------------------------ one step

    def forward_backward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        """The losses of one batch, with their (loss-scaled) gradients left in `.grad`."""
        from swinface.train.losses import TaskTargets

        dev = self.env.device
        batch = {k: v.to(dev, non_blocking=True) for k, v in batch.items()}
        images = SwinFace.preprocess(batch["images"])
        with self._autocast():
            out = self.ddp_model(images)
        total = torch.zeros((), device=dev)
        parts: dict[str, float] = {}
        if self.analysis_tasks:
            targets = TaskTargets(
                age=batch["age"],
                gender=batch["gender"],
                expression=batch["expression"],
                attributes=batch["attributes"],
            )
            total, parts = self.task_loss(out.logits.float(), targets, self.step, self.config.steps)
        if self.partial_fc is not None:
            identity_loss = self.partial_fc(out.embedding.float(), batch["identity"])
            weight = self.config.tasks["identity"].loss_weight
            total = total + weight * identity_loss
            parts = {**parts, "identity": float(identity_loss.detach())}
        if self.distill is not None:
            distill_loss, distill_parts = self.distill(
                out.embedding, out.logits, batch, self.step, self.config.steps
            )
            total = total + distill_loss
            parts = {**parts, **distill_parts}
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        return total, parts

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One optimisation step on one mixed batch; returns the losses and learning rates."""
        total, parts = self.forward_backward(batch)
        self._reduce_distill_gradients()
        self.scaler.unscale_(self.optimizer)
        grad_norm = self._clip_gradients()
        rates = {g["role"]: g["lr"] for g in self.optimizer.param_groups}
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        return {
            "loss": float(total.detach()),
            **parts,
            "grad_norm": float(grad_norm),
            "lr": rates["head"],  # heads and Partial FC: the configured rate
            "lr_backbone": rates.get("backbone", 0.0),
        }

    def _reduce_distill_gradients(self) -> None:
        """Average the distillation projections' gradients across ranks (they live outside
        DistributedDataParallel, and must stay the same on every rank)."""
        if self.distill is None or self.env.world_size == 1:
            return
        for p in self.distill.parameters():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)
            p.grad /= self.env.world_size

    def _clip_gradients(self) -> torch.Tensor:
        """Clip the global gradient norm, counting every rank's Partial FC shard once.

        The model's gradients are identical on all ranks after DDP's all-reduce;
        the shards' are not, so their squared norms are summed across ranks and
        every rank scales by the same factor (else the replicas would drift).
        """
        replicated = list(self.model.parameters())
        replicated += list(self.distill.parameters()) if self.distill is not None else []
        model_grads = [p.grad for p in replicated if p.grad is not None]
        shard_grads = (
            [p.grad for p in self.partial_fc.parameters() if p.grad is not None]
            if self.partial_fc is not None
            else []
        )
        zero = torch.zeros((), device=self.env.device)
        model_sq = sum((g.float().square().sum() for g in model_grads), zero)
        shard_sq = sum((g.float().square().sum() for g in shard_grads), zero)
        if self.env.world_size > 1:
            dist.all_reduce(shard_sq)
        norm = (model_sq + shard_sq).sqrt()
        scale = (self.config.optim.clip_grad_norm / (norm + 1e-6)).clamp(max=1.0)
        torch._foreach_mul_(model_grads + shard_grads, scale)
        return norm

    # ------------------------------------------------------------ the loop

    def loader(self) -> torch.utils.data.DataLoader:
        """Batches of the steps still to run. The loader draws its own seeds from a private
        generator: drawing from the global one (which dropout uses) would make a resumed
        run differ from an uninterrupted one."""
        workers = self.config.num_workers
        return torch.utils.data.DataLoader(
            self.data,
            batch_size=None,
            sampler=range(self.step, self.config.steps),
            num_workers=workers,
            pin_memory=self.env.device.type == "cuda",
            persistent_workers=False,
            prefetch_factor=4 if workers else None,
            multiprocessing_context=self.config.multiprocessing_context if workers else None,
            generator=torch.Generator().manual_seed(self.config.seed),
        )

    def fit(self, max_steps: int | None = None, max_minutes: float | None = None) -> None:
        """Train to the configured number of steps (or `max_steps` more, or for `max_minutes`
        of wall time), checkpointing on the way and where it stops."""
        from swinface.progress import Progress

        stop = (
            self.config.steps
            if max_steps is None
            else min(self.config.steps, self.step + max_steps)
        )
        images_per_step = (
            sum(t.batch_size for t in self.config.tasks.values()) * self.env.world_size
        )
        bar = Progress(stop - self.step, "train", "step", enabled=self.env.is_main)
        started = time.perf_counter()
        try:
            deadline = None if max_minutes is None else started + 60 * max_minutes
            for done, batch in enumerate(self.loader(), start=1):
                losses = self.train_step(batch)
                if deadline is not None and self._past(deadline):
                    stop = self.step
                rate = done * images_per_step / (time.perf_counter() - started)
                losses["images_per_s"] = rate
                self.history.append({"step": self.step, **losses})
                bar.update(1)  # losses and images/s go to the log below
                if self.env.is_main and (
                    self.step % self.config.log_every == 0 or self.step == stop
                ):
                    self._log(losses)
                if self.step % self.config.checkpoint_every == 0 or self.step == stop:
                    self.save_checkpoint()
                if self.config.eval_every and (
                    self.step % self.config.eval_every == 0 or self.step == self.config.steps
                ):
                    self._check_learning(self.evaluate())
                if self.step >= stop:
                    break
        finally:
            bar.close()
            self.close()

    def _check_learning(self, figures: dict[str, float]) -> None:
        """Stop a run whose validation sits at the constant answer after its warm-up, so that
        no more (GPU) time goes into it; `allow_collapse` goes on."""
        from swinface.train.validation import collapsed_figures

        past_warmup = self.step > self.config.optim.warmup_steps
        collapsed = collapsed_figures(figures) if past_warmup else []
        flag = torch.tensor(float(bool(collapsed)), device=self.env.device)
        if self.env.world_size > 1:
            dist.broadcast(flag, src=0)  # rank 0 alone validates
        if not flag.item() or self.config.allow_collapse:
            if collapsed:
                log.warning("still at the constant answer: %s", "; ".join(collapsed))
            return
        if self.step % self.config.checkpoint_every:
            self.save_checkpoint()
        raise TrainingCollapsed(
            f"step {self.step}: validation is no better than a constant answer on "
            + "; ".join(collapsed or ["a task (rank 0 says)"])
            + ". The run stopped so no more time goes into it (checkpoint saved): fix the "
            "recipe, or go on anyway with --allow-collapse (allow_collapse: true)"
        )

    def _past(self, deadline: float) -> bool:
        """Whether the time is up, as rank 0 sees it (so that every rank stops at one step)."""
        late = torch.tensor(float(time.perf_counter() >= deadline), device=self.env.device)
        if self.env.world_size > 1:
            dist.broadcast(late, src=0)
        return bool(late.item())

    def _log(self, losses: dict[str, float]) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / "log.csv"
        row = {"step": self.step, **{k: round(v, 6) for k, v in losses.items()}}
        new = not path.exists()
        with path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row), extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)
        writer_tb = self._tensorboard()
        if writer_tb is not None:
            for k, v in losses.items():
                writer_tb.add_scalar(f"train/{k}", v, self.step)
        log.info("step %d %s", self.step, " ".join(f"{k}={v:.4g}" for k, v in losses.items()))

    def _tensorboard(self):
        if not self._tb_tried:
            self._tb_tried = True
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.out / "tensorboard"))
            except ImportError:  # tensorboard is optional: the CSV log always exists
                self._tb = None
        return self._tb

    def evaluate(self) -> dict[str, float]:
        """Validation figures on the configured stores, logged beside the training losses."""
        from swinface.train.validation import evaluate_stores, format_figures

        if not self.env.is_main or not self.config.eval_stores:
            return {}
        self.model.eval()
        try:
            figures = evaluate_stores(
                self.model,
                self.config.eval_stores,
                device=self.env.device,
                seed=self.config.seed,
                priors=self.priors,
            )
        finally:
            self.model.train()
        log.info("%s", format_figures(self.step, figures))
        self.out.mkdir(parents=True, exist_ok=True)
        with (self.out / "validation.jsonl").open("a") as f:
            f.write(json.dumps({"step": self.step, **figures}) + "\n")
        tb = self._tensorboard()
        if tb is not None:
            for k, v in figures.items():
                tb.add_scalar(f"val/{k}", v, self.step)
        return figures

    # ------------------------------------------------------------ checkpoints

    def checkpoint_dir(self, step: int | None = None) -> Path:
        return self.out / "checkpoints" / checkpoint_name(self.step if step is None else step)

    def _barrier(self) -> None:
        if self.env.world_size > 1:
            dist.barrier()

    def _checkpoint_files(self) -> list[str]:
        files = ["model.safetensors"]
        if self.distill is not None:
            files.append("distill.safetensors")
        for rank in range(self.env.world_size):
            files.append(f"state_rank{rank}.pt")
            if self.partial_fc is not None:
                files.append(f"partial_fc_rank{rank}.safetensors")
        return files

    def _training_state(self) -> dict:
        state = {
            "step": self.step,
            "world_size": self.env.world_size,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": torch.get_rng_state(),
        }
        if self.env.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.env.device)
        return state

    def save_checkpoint(self) -> Path:
        """Model (native format), each rank's Partial FC shard and optimizer, scheduler, scaler,
        random state and step; every file written atomically, the folder marked complete by
        its manifest once all are in place, then the `latest` pointer moved to it."""
        from swinface.weights.formats import save_native

        path = self.checkpoint_dir()
        if self.env.is_main:  # rewriting a step: not complete until rewritten
            path.mkdir(parents=True, exist_ok=True)
            (path / MANIFEST).unlink(missing_ok=True)
        self._barrier()
        rank = self.env.rank
        if self.partial_fc is not None:
            shard = {
                k: v.detach().cpu().contiguous() for k, v in self.partial_fc.state_dict().items()
            }
            with atomic_path(path / f"partial_fc_rank{rank}.safetensors") as tmp:
                save_file(shard, str(tmp))
        with atomic_path(path / f"state_rank{rank}.pt") as tmp:
            torch.save(self._training_state(), tmp)
        self._barrier()
        if self.env.is_main:
            with atomic_path(path / "model.safetensors") as tmp:
                save_native(
                    self.model,
                    tmp,
                    name=f"{Path(self.config.output_dir).name}-step{self.step}",
                    metadata={
                        "train_config": json.dumps(asdict(self.config)),
                        "step": str(self.step),
                    },
                )
            if self.distill is not None:
                heads = {
                    k: v.detach().cpu().contiguous() for k, v in self.distill.state_dict().items()
                }
                with atomic_path(path / "distill.safetensors") as tmp:
                    save_file(heads, str(tmp))
            write_manifest(path, self.step, self.env.world_size, self._checkpoint_files())
            atomic_write_text(path.parent / POINTER, path.name)
        self._barrier()
        return path

    def latest_checkpoint(self) -> Path | None:
        """The checkpoint this run continues from (see `checkpoints.resume_point`)."""
        return resume_point(self.out / "checkpoints")

    def load_checkpoint(self, path: Path) -> None:
        """Continue the run saved at `path` (all state loaded with weights_only=True)."""
        from swinface.weights.formats import load_native_state, read_native

        path = Path(path)
        manifest = read_manifest(path)
        if manifest["world_size"] != self.env.world_size:
            raise ResumeError(
                f"{path}: written by {manifest['world_size']} processes, resumed with "
                f"{self.env.world_size}; Partial FC's class centres are sharded by process: "
                "resume with the same number"
            )
        state_dict, _ = read_native(path / "model.safetensors")
        load_native_state(self.model, state_dict, str(path / "model.safetensors"))
        if self.partial_fc is not None:
            shard = load_file(
                str(path / f"partial_fc_rank{self.env.rank}.safetensors"),
                device=str(self.env.device),
            )
            self.partial_fc.load_state_dict(shard)
        if self.distill is not None:
            heads = path / "distill.safetensors"
            if not heads.is_file():
                raise ResumeError(
                    f"{heads}: missing; this checkpoint was written without distillation, "
                    "resume it with the config it was written with"
                )
            self.distill.load_state_dict(load_file(str(heads), device=str(self.env.device)))
        state = torch.load(
            path / f"state_rank{self.env.rank}.pt", map_location="cpu", weights_only=True
        )
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        if "cuda_rng" in state and self.env.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.env.device)
        self.step = int(state["step"])
        log.info("resumed from %s at step %d", path, self.step)


def train(
    config: TrainConfig,
    *,
    resume: bool = True,
    max_steps: int | None = None,
    max_minutes: float | None = None,
) -> Trainer:
    """Run (or continue) training as `config` says; the process group comes from the environment."""
    env = setup_distributed()
    with Trainer(config, env) as trainer:
        latest = trainer.latest_checkpoint() if resume else None
        if latest is not None:
            trainer.load_checkpoint(latest)
        trainer.fit(max_steps=max_steps, max_minutes=max_minutes)
    return trainer
