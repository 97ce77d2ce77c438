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
