"""Save seeded random weights of an open_clip architecture as .safetensors (demos and tests).

    python scripts/save_random_weights.py ARCH OUT.safetensors [--seed N]
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("arch")
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    from safetensors.torch import save_file

    from creepscan.encoders.openclip import random_init

    enc = random_init(args.arch, seed=args.seed)
    save_file({k: v.contiguous() for k, v in enc.model.state_dict().items()}, args.out)
    print(f"{args.out}: {args.arch} random weights (seed {args.seed}), {enc.fingerprint}")


if __name__ == "__main__":
    main()
