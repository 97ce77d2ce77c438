"""Plug-in encoders for the CLI tests (py:conftest_plugins:NAME; tests/ is on sys.path under pytest)."""
import numpy as np
import torch


class Colour:
    """Mean colour and a 2x2 colour layout: reveals hue-coded labels."""

    name = "test-colour"
    fingerprint = "test-colour-v1"

    def preprocess(self, img):
        a = np.asarray(img.convert("RGB").resize((16, 16)), dtype=np.float32) / 255.0
        return torch.from_numpy(a).permute(2, 0, 1).contiguous()

    def encode_images(self, batch):
        x = torch.as_tensor(batch)
        return torch.cat([x.mean((2, 3)), torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)], 1)


class Blind(Colour):
    name = "test-blind"
    fingerprint = "test-blind-v1"

    def encode_images(self, batch):
        # Noise seeded by each image's own pixels: deterministic, and blind to the label.
        out = []
        for x in torch.as_tensor(batch):
            g = torch.Generator().manual_seed(int((x * 1e4).sum().item()) % (2**31))
            out.append(torch.randn(8, generator=g))
        return torch.stack(out)


def colour():
    enc = Colour()
    enc.floor = Blind()
    return enc


def blind():
    enc = Blind()
    enc.floor = Blind()
    return enc


class Lookup(Colour):
    """Rows of the .npy table named by $CS_TEST_FEATS; each image carries its row index in its
    first two pixels (tests/test_reparam.py: features multiplied by an invertible matrix)."""

    name = "test-lookup"

    def __init__(self):
        import hashlib
        import os

        self._feats = np.load(os.environ["CS_TEST_FEATS"])
        self.fingerprint = "test-lookup-" + hashlib.sha256(self._feats.tobytes()).hexdigest()[:16]

    def preprocess(self, img):
        a = np.asarray(img.convert("RGB"), dtype=np.int64)
        return torch.tensor([a[0, 0, 0] * 256 + a[0, 0, 1]], dtype=torch.int64)

    def encode_images(self, batch):
        return self._feats[torch.as_tensor(batch).reshape(-1).numpy()]


def lookup():
    enc = Lookup()
    enc.floor = Blind()
    return enc
