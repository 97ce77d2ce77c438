"""Make the README's `compare` example: a base checkpoint and an "adapted" one, fine-tuned for a few
steps toward telling synthetic people apart.

    python scripts/finetune_identity.py OUT_DIR [--arch creepscan-tiny-vit] [--steps 150] [--seed 0]

Writes OUT_DIR/base.safetensors (seeded random weights) and OUT_DIR/adapted.safetensors (the same
weights after fine-tuning the image tower with a classification head on synthetic identities). The
training people are drawn with another seed than the fixtures suite's, so the audit's test images
never were training images: what the comparison measures is how much easier identifying *new*
people became, which is what function creep means.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from creepscan.data import decode_image, load_image_set
from creepscan.data.synthetic import make_identities
from creepscan.encoders.openclip import random_init

TRAIN_SEED = 1001  # the fixtures suite draws its people with small seeds
PROGRESS_EVERY = 10  # steps between progress lines


def progress(msg: str) -> None:
    """A short timestamped line on stderr, flushed: a log file or CI shows that the script is alive
    (a terminal too)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--arch", default="creepscan-tiny-vit")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from safetensors.torch import save_file

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    progress(f"base: {args.arch} with seeded random weights")
    enc = random_init(args.arch, seed=args.seed + 1)
    save_file({k: v.contiguous() for k, v in enc.model.state_dict().items()}, str(out / "base.safetensors"))

    progress("drawing 24 synthetic people x 16 photos for training")
    with tempfile.TemporaryDirectory() as tmp:
        images = load_image_set(make_identities(Path(tmp) / "train", n_classes=24, per_class=16, seed=TRAIN_SEED))
        x = torch.stack([enc.preprocess(decode_image(p)) for p in images.paths])
    labels = sorted(set(images.labels))
    y = torch.tensor([labels.index(label) for label in images.labels])
    torch.manual_seed(args.seed)
    model = enc.model.train()
    visual = model.visual
    for p in visual.parameters():
        p.requires_grad_(True)
    head = torch.nn.Linear(visual.output_dim, len(labels))
    opt = torch.optim.AdamW(list(visual.parameters()) + list(head.parameters()), lr=2e-3, weight_decay=1e-4)
    rng = np.random.default_rng(args.seed)
    progress(f"fine-tuning the image tower: {args.steps} steps")
    for step in range(args.steps):
        idx = torch.as_tensor(rng.choice(len(y), size=64, replace=False))
        feats = torch.nn.functional.normalize(visual(x[idx]), dim=-1)
        loss = torch.nn.functional.cross_entropy(head(feats) * 10.0, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % PROGRESS_EVERY == 0 or step == args.steps - 1:
            progress(f"step {step + 1}/{args.steps}  loss {loss.item():.3f}  ({time.monotonic() - t0:.0f} s)")
    state = {k: v.detach().contiguous() for k, v in model.eval().state_dict().items()}
    save_file(state, str(out / "adapted.safetensors"))
    print(f"wrote {out / 'base.safetensors'} and {out / 'adapted.safetensors'} ({args.arch}, {args.steps} steps)")


if __name__ == "__main__":
    main()
