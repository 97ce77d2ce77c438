"""Budgeted fine-tuning attack (opt-in): the model's image tower adapted, not frozen.

What it measures: the accuracy an adversary reaches when allowed to *change* the model, with a fixed
budget of k labelled images per class and S optimiser steps, and what that cost in compute (seconds
on the device used and FLOPs counted from the architecture). Run on the floor (the random-init twin)
with the same budget, it says how much of that the model's training gave.

Method: the last N blocks of the image tower (``blocks``, default 2) and everything after them
(the final norm, pooling and projection) are trained, together with a cosine-classifier head
initialised at the class means of the frozen features of the fitting images (so step 0 is a
prototype classifier, the weakest frozen adversary, and fine-tuning starts from it: "linear probe
then fine-tune", Kumar et al. 2022). Why last-N-blocks rather than LoRA on attention:

* it needs no surgery: open_clip's attention is ``nn.MultiheadAttention`` with a fused input
  projection that a LoRA adapter would have to patch, and ResNet towers (``clip-rn50``) have no
  attention projections to adapt at all; the last blocks exist in every tower;
* the frozen prefix is computed once per image and cached (its output does not change), so a step
  costs only the trained blocks' forward and backward: the budget buys many more steps per second,
  and the FLOPs per step are those of the part that trains;
* there is no extra hyper-parameter (a rank) to choose, so nothing but the stopping step is chosen
  on validation.

Protocol, for each budget point (k, steps): the fitting images are k per class drawn from
``split.train`` with ``few_shot.draw_supports`` (episode 0 of the few-shot curve's draw for that k);
a fresh deep copy of the tower is trained with Adam on minibatches of them only; validation accuracy
is measured at step 0 and ``CHECKPOINTS`` evenly spaced steps, and the best checkpoint (ties to the
earlier) is kept; the test images are predicted once, with that checkpoint, and only scored. The
caller's model is never modified. The tower runs in float32, in eval mode (no dropout, frozen
batch-norm statistics), so the result is deterministic given the seed on one device.

Memory: the cached prefix holds, on the device, the activations entering the trained blocks for the
fitting and validation images (ViT-B/32: 50 tokens x 768 floats, 150 KiB per image).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from .. import result as R
from ..seeds import Stream, stream
from .few_shot import draw_supports
from .heads import Adam, head_seed, seeded_generator
from .splits import Split
from .stats import balanced_accuracy, bootstrap_ci, clustered_ci
from .stats import round6 as _r
from .stats import skill as _skill

__all__ = ["FinetuneResult", "FinetunePoint", "finetune_attack", "DEFAULT_BUDGETS", "tower_parts"]

DEFAULT_BUDGETS = ((1, 100), (4, 100), (16, 100))   # (images per class, optimiser steps)
BLOCKS = 2
LR_TOWER = 1e-4
LR_HEAD = 1e-2
BATCH = 32
CHECKPOINTS = 10
COSINE_SCALE = 16.0      # logits = scale * cos(feature, class weight): a softmax temperature of 1/16
EVAL_BATCH = 256


@dataclass
class FinetunePoint:
    """One budget point. Accuracies are balanced test accuracies in [0, 1]; ``seconds`` is wall time
    on ``device`` for the training steps and the validation checks (GPU work synchronised);
    ``flops`` = ``flops_per_step`` x ``steps`` (forward and backward of the trained part on one
    minibatch, counted by ``torch.utils.flop_counter.FlopCounterMode``). ``initial_val_accuracy``
    is step 0's (the frozen tower with the prototype-initialised head), ``val_accuracy`` the chosen
    checkpoint's (step ``stopped_at``). ``fit_rows`` are the
    indices into ``y`` of the fitting images; ``test_*`` arrays are [n_test] in ``split.test`` order."""

    k: int
    steps: int
    accuracy: float
    ci95: tuple[float, float]
    skill: float
    val_accuracy: float
    initial_val_accuracy: float
    stopped_at: int
    seconds: float
    flops: int
    flops_per_step: int
    batch: int
    fit_rows: np.ndarray = field(repr=False)
    test_correct: np.ndarray = field(repr=False)
    test_pred: np.ndarray = field(repr=False)
    test_labels: np.ndarray = field(repr=False)
    test_clusters: np.ndarray | None = field(default=None, repr=False)  # the test images' groups, or None

    def to_result(self) -> R.FinetunePoint:
        """One entry of the ``finetune`` block's ``points`` (``result.FinetunePoint``)."""
        return R.FinetunePoint(
            k=int(self.k), steps=int(self.steps), accuracy=_r(self.accuracy),
            ci95=[_r(self.ci95[0]), _r(self.ci95[1])], skill=_r(self.skill), val_accuracy=_r(self.val_accuracy),
            initial_val_accuracy=_r(self.initial_val_accuracy),
            stopped_at=int(self.stopped_at), seconds=_r(self.seconds, 3), flops=int(self.flops),
            flops_per_step=int(self.flops_per_step), batch=int(self.batch))

    def to_json(self) -> dict:
        """``to_result()`` as report.json writes it."""
        return R.to_json_dict(self.to_result())


@dataclass
class FinetuneResult:
    """All budget points (``points``), the ones the data could not give (``unavailable``: k larger
    than some class's training images), what was trained (``method``), the device, and the one-off
    seconds of computing the frozen prefix of the fitting and validation images (shared by all
    points; ``prefix_flops`` likewise)."""

    points: list[FinetunePoint]
    unavailable: list[dict]
    method: str
    blocks: int
    trainable_params: int
    device: str
    chance: float
    prefix_seconds: float
    prefix_flops: int

    def __getitem__(self, key) -> FinetunePoint:
        for p in self.points:
            if (p.k, p.steps) == tuple(key):
                return p
        raise KeyError(f"no budget point {key}; available: {[(p.k, p.steps) for p in self.points]}")

    def to_result(self) -> R.Finetune:
        """The report's ``finetune`` block (``result.Finetune``)."""
        return R.Finetune(
            method=self.method, blocks=int(self.blocks), trainable_params=int(self.trainable_params),
            device=self.device, chance=_r(self.chance), prefix_seconds=_r(self.prefix_seconds, 3),
            prefix_flops=int(self.prefix_flops), points=[p.to_result() for p in self.points],
            unavailable=[R.FinetuneUnavailable(k=int(u["k"]), steps=int(u["steps"]), reason=str(u["reason"]))
                         for u in self.unavailable])

    def to_json(self) -> dict:
        """``to_result()`` as report.json writes it."""
        return R.to_json_dict(self.to_result())


# ---------------------------------------------------------------------------------------------
# The tower, split into a frozen prefix and a trained tail
# ---------------------------------------------------------------------------------------------

def tower_parts(visual: torch.nn.Module, blocks: int):
    """(prefix, tail, tail_modules, description) for an open_clip image tower: ``tail(prefix(x))``
    equals ``visual(x)``; ``tail_modules`` hold every parameter the tail uses (the trained ones).

    Supported: open_clip's ``VisionTransformer`` (the last ``blocks`` residual attention blocks, then
    pooling, final norm and projection) and ``ModifiedResNet`` (the last ``blocks`` bottlenecks of
    layer4, then the attention pool)."""
    from open_clip.modified_resnet import ModifiedResNet
    from open_clip.transformer import VisionTransformer

    if isinstance(visual, VisionTransformer):
        res = visual.transformer.resblocks
        n = len(res)
        if not 1 <= blocks <= n:
            raise ValueError(f"blocks must be in 1..{n} for this tower ({n} residual blocks), got {blocks}")
        batch_first = getattr(visual.transformer, "batch_first", True)

        def run(x, mods):
            if not batch_first:
                x = x.transpose(0, 1)
            for r in mods:
                x = r(x)
            return x.transpose(0, 1) if not batch_first else x

        # open_clip has no public way to enter or leave the block stack: its own _embeds and _pool (the
        # minimum open_clip in setup.cfg has them; tests/test_dependencies.py checks the installed one).
        def prefix(x):
            return run(visual._embeds(x), res[: n - blocks])

        def tail(h):
            pooled, _ = visual._pool(run(h, res[n - blocks:]))
            return pooled @ visual.proj if visual.proj is not None else pooled

        mods = [res[i] for i in range(n - blocks, n)] + [m for m in (visual.ln_post, getattr(visual, "attn_pool", None),
                                                                      getattr(visual, "attn_pool_contrastive", None))
                                                          if m is not None]
        extra = [visual.proj] if visual.proj is not None else []
        return prefix, tail, (mods, extra), f"last {blocks} of {n} transformer blocks + final norm and projection"
    if isinstance(visual, ModifiedResNet):
        l4 = visual.layer4
        n = len(l4)
        if not 1 <= blocks <= n:
            raise ValueError(f"blocks must be in 1..{n} for this tower ({n} bottlenecks in layer4), got {blocks}")

        def prefix(x):
            x = visual.layer3(visual.layer2(visual.layer1(visual.stem(x))))
            for b in list(l4)[: n - blocks]:
                x = b(x)
            return x

        def tail(h):
            for b in list(l4)[n - blocks:]:
                h = b(h)
            return visual.attnpool(h)

        return prefix, tail, ([l4[i] for i in range(n - blocks, n)] + [visual.attnpool], []), \
            f"last {blocks} of {n} layer4 bottlenecks + attention pool"
    raise ValueError(f"fine-tuning supports open_clip VisionTransformer and ModifiedResNet image towers, "
                     f"got {type(visual).__name__}; audit this model with the frozen heads instead")


def _check_images(images, n: int):
    if callable(images) and not isinstance(images, torch.Tensor):
        return lambda rows: torch.as_tensor(images(np.asarray(rows, dtype=np.int64)))
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[0] != n:
        shape = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
        raise ValueError(f"images must be a float tensor [n={n}, C, H, W] of preprocessed images (encoder.preprocess) "
                         f"or a callable rows -> such a batch; got {shape}")
    return lambda rows: images[torch.from_numpy(np.asarray(rows, dtype=np.int64))]


def _check_budgets(budgets) -> list[tuple[int, int]]:
    out = []
    for b in budgets:
        try:
            k, s = (int(v) for v in b)
        except (TypeError, ValueError):
            raise ValueError(f"each budget is (images per class, steps), got {b!r}") from None
        if k < 1 or s < 1:
            raise ValueError(f"budget {b!r}: images per class and steps must be >= 1")
        out.append((k, s))
    if not out:
        raise ValueError("budgets is empty: give (images per class, steps) pairs, e.g. ((1, 100), (16, 100))")
    return out


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def finetune_attack(encoder, images, y, split: Split, *, budgets: Sequence[Sequence[int]] = DEFAULT_BUDGETS,
                    seed: int, device="cpu", n_classes: int | None = None, blocks: int = BLOCKS,
                    lr: float = LR_TOWER, head_lr: float = LR_HEAD, batch: int = BATCH,
                    n_boot: int = 2000, on_step: Callable[[np.ndarray], None] | None = None,
                    test_clusters=None) -> FinetuneResult:
    """Fine-tune the last ``blocks`` blocks of ``encoder``'s image tower at each budget point.

    encoder : a ``creepscan.encoders.openclip.OpenClipEncoder`` (its ``model.visual`` is deep-copied,
    never modified; pass ``encoder.floor`` for the floor with the same budgets). images : float
    tensor [n, C, H, W] of images already passed through ``encoder.preprocess``, or a callable that
    takes int64 row indices and returns that batch. y : int [n] labels (0..n_classes-1). split :
    train rows are the only ones fitted, val rows choose the stopping step, test rows are scored.
    budgets : (images per class, steps) pairs. on_step : called before every optimiser step with
    the int64 indices into ``y`` of that step's minibatch (for audits: they are all fitting rows).
    test_clusters : the test rows' groups ([len(split.test)], e.g. a person), for a cluster-robust
    CI (``stats.clustered_ci``); None: images are independent. Returns a ``FinetuneResult``.
    """
    from torch.utils.flop_counter import FlopCounterMode  # imported here: it costs ~0.5 s, and this attack is opt-in

    from .linear_probe import check_inputs

    y = np.asarray(y)
    n_classes = int(n_classes) if n_classes is not None else (int(y.max()) + 1 if y.size else 0)
    dummy = np.zeros((y.shape[0], 1), np.float32) if y.ndim == 1 else np.zeros((0, 1), np.float32)
    _, y = check_inputs(dummy, y, n_classes, split)
    model = getattr(encoder, "model", None)
    if model is None or not hasattr(model, "visual"):
        raise ValueError("finetune_attack needs an open_clip encoder (with .model.visual), "
                         f"got {type(encoder).__name__}")
    points_wanted = _check_budgets(budgets)
    if not (isinstance(batch, int) and batch >= 1):
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    if not (lr > 0 and head_lr > 0):
        raise ValueError(f"learning rates must be positive, got lr={lr}, head_lr={head_lr}")
    get_images = _check_images(images, y.shape[0])
    dev = torch.device(device)

    y_tr = y[split.train]
    classes = np.unique(y_tr)
    K = classes.size
    counts = np.array([np.count_nonzero(y_tr == c) for c in classes])
    chance = 1.0 / K
    pos = {int(c): i for i, c in enumerate(classes)}

    visual = copy.deepcopy(model.visual).float().to(dev).eval().requires_grad_(False)
    prefix, tail, (tail_mods, tail_extra), method = tower_parts(visual, int(blocks))
    with torch.no_grad():  # the split must reproduce the tower exactly, or the attack would be another model's
        probe = get_images(np.asarray(split.train[:2])).to(dev, torch.float32)
        if not torch.allclose(tail(prefix(probe)), visual(probe), rtol=1e-4, atol=1e-5):
            raise ValueError(f"{type(visual).__name__}: prefix + tail does not reproduce the tower's output "
                             "(an open_clip version this code does not know?); fine-tuning is not available for it")

    def embed(rows, fn) -> torch.Tensor:
        """fn over the rows' images in batches, without gradients -> stacked on the device."""
        out = []
        with torch.no_grad():
            for r0 in range(0, len(rows), EVAL_BATCH):
                out.append(fn(get_images(rows[r0:r0 + EVAL_BATCH]).to(dev, torch.float32)))
        return torch.cat(out) if out else torch.empty(0, device=dev)

    # Which fitting rows each point uses: k per class from split.train (few-shot episode 0 for k).
    plan, unavailable = [], []
    for k, steps in points_wanted:
        short = int(np.count_nonzero(counts < k))
        if short:
            unavailable.append({"k": k, "steps": steps,
                                "reason": f"{short} of {K} classes have fewer than {k} training images"})
            continue
        plan.append((k, steps, split.train[draw_supports(y_tr, classes, k, seed, [0])[0]]))

    # The frozen prefix of every fitting and validation image, once (its output never changes).
    _sync(dev)
    t0 = time.perf_counter()
    fit_union = np.unique(np.concatenate([rows for _, _, rows in plan])) if plan else np.zeros(0, np.int64)
    cached_rows = np.concatenate([fit_union, split.val])
    cache = embed(cached_rows, prefix)
    where = {int(r): i for i, r in enumerate(cached_rows)}
    _sync(dev)
    prefix_seconds = time.perf_counter() - t0
    prefix_flops = 0
    if len(cached_rows):
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            prefix(get_images(cached_rows[:1]).to(dev, torch.float32))
        prefix_flops = int(fc.get_total_flops()) * len(cached_rows)
    val_cache = cache[[where[int(r)] for r in split.val]]
    y_val_pos = torch.from_numpy(np.array([pos[int(c)] for c in y[split.val]])).to(dev)
    val_w = 1.0 / (torch.bincount(y_val_pos, minlength=K)[y_val_pos].double()
                   * int((torch.bincount(y_val_pos) > 0).sum()))
    initial = {n: p.detach().clone() for n, p in visual.named_parameters()}

    points = []
    for k, steps, fit_rows in plan:
        visual.load_state_dict(initial, strict=False)  # every point starts from the caller's weights
        params = [p for m in tail_mods for p in m.parameters()] + list(tail_extra)
        for p in params:
            p.requires_grad_(True)
        fit_h = cache[[where[int(r)] for r in fit_rows]]
        fit_y = torch.from_numpy(np.array([pos[int(c)] for c in y[fit_rows]])).to(dev)
        with torch.no_grad():  # cosine head at the class means of the frozen features
            f0 = torch.nn.functional.normalize(tail(fit_h), dim=-1)
            W = torch.zeros(K, f0.shape[1], device=dev).index_add_(0, fit_y, f0)
            W = torch.nn.functional.normalize(W, dim=-1)
        W.requires_grad_(True)

        def logits(h, W=W):
            unit = torch.nn.functional.normalize
            return COSINE_SCALE * unit(tail(h), dim=-1) @ unit(W, dim=-1).T

        def val_accuracy() -> float:
            with torch.no_grad():
                pred = torch.cat([logits(val_cache[i:i + EVAL_BATCH]).argmax(-1)
                                  for i in range(0, val_cache.shape[0], EVAL_BATCH)])
            return float(((pred == y_val_pos).double() * val_w).sum())

        B = min(int(batch), len(fit_rows))
        g = seeded_generator(head_seed(seed, "finetune", k, steps))
        n_perms = math.ceil(steps * B / len(fit_rows)) + 1
        order = torch.cat([torch.randperm(len(fit_rows), generator=g) for _ in range(n_perms)])
        checks = {int(round(steps * i / CHECKPOINTS)) for i in range(1, CHECKPOINTS + 1)}
        opt_tower, opt_head = Adam(params, lr), Adam([W], head_lr)

        def step_loss(idx):
            return torch.nn.functional.cross_entropy(logits(fit_h[idx]), fit_y[idx])

        snap = {n: p.detach().clone() for n, p in visual.named_parameters() if p.requires_grad}
        with FlopCounterMode(display=False) as fc:  # one step's forward and backward, not applied
            torch.autograd.grad(step_loss(order[:B].to(dev)), params + [W])
        flops_per_step = int(fc.get_total_flops())

        _sync(dev)
        t0 = time.perf_counter()
        best_val, best_step = val_accuracy(), 0
        initial_val = best_val
        best_state = (snap, W.detach().clone())
        for s in range(1, steps + 1):
            idx = order[(s - 1) * B: s * B]
            if on_step is not None:
                on_step(np.asarray(fit_rows)[idx.numpy()])
            idx = idx.to(dev)
            grads = torch.autograd.grad(step_loss(idx), params + [W])
            opt_tower.step(grads[:-1])
            opt_head.step(grads[-1:])
            if s in checks:
                v = val_accuracy()
                if v > best_val + 1e-12:  # ties keep the earlier, less adapted checkpoint
                    best_val, best_step = v, s
                    best_state = ({n: p.detach().clone() for n, p in visual.named_parameters() if p.requires_grad},
                                  W.detach().clone())
        _sync(dev)
        seconds = time.perf_counter() - t0
        for p in params:
            p.requires_grad_(False)
        visual.load_state_dict(best_state[0], strict=False)
        W_best = best_state[1]
        test_pred = classes[embed(split.test, lambda x: logits(prefix(x), W_best).argmax(-1)).cpu().numpy()]
        y_te = y[split.test]
        correct = test_pred == y_te
        acc = balanced_accuracy(y_te, test_pred, n_classes)
        ci_seed = stream(seed, Stream.FINETUNE_CI, k, steps)
        points.append(FinetunePoint(
            k=k, steps=steps, accuracy=acc,
            ci95=(bootstrap_ci(y_te, correct, n_classes, seed=ci_seed, n_boot=n_boot) if test_clusters is None
                  else clustered_ci(y_te, correct, test_clusters, n_classes, seed=ci_seed)),
            skill=_skill(acc, chance), val_accuracy=best_val, initial_val_accuracy=initial_val, stopped_at=best_step,
            seconds=seconds,
            flops=flops_per_step * steps, flops_per_step=flops_per_step, batch=B, fit_rows=np.asarray(fit_rows),
            test_correct=correct, test_pred=test_pred, test_labels=y_te,
            test_clusters=None if test_clusters is None else np.asarray(test_clusters)))
    trainable = sum(p.numel() for m in tail_mods for p in m.parameters()) + sum(p.numel() for p in tail_extra)
    return FinetuneResult(points=points, unavailable=unavailable, method=method, blocks=int(blocks),
                          trainable_params=int(trainable), device=str(dev), chance=chance,
                          prefix_seconds=prefix_seconds, prefix_flops=prefix_flops)
