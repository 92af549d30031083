"""What a pixel self-check in the encoder would cost: one extra canonical synthesis, against a whole
verified encode (Kodak 23, default model, quality 3; median of 4). Run: python scripts/selfcheck_cost.py"""

import statistics
import time

import torch

from codec.coder import encode_resolved, load_input, pad_image, resolve_encode_model, to_tensor
from codec.datasets import datasets_root
from codec.determinism import canonical_compute
from codec.zoo import default_registry

reg = default_registry()
root = datasets_root()
assert root is not None, "no datasets folder (set UDIC_DATASETS)"
img = load_input(root / "kodak" / "kodim23.png")
base, level = resolve_encode_model(reg, img, "default", 3.0, None, None)
net = base.net
enc, syn = [], []
for _ in range(4):
    t = time.perf_counter()
    encode_resolved(base, img, level, reg)
    enc.append(time.perf_counter() - t)
    with canonical_compute():
        x = pad_image(to_tensor(img.rgb))
        q = torch.tensor([level])
        y, z = net.analysis(x)
        out = net.compress_latents(y, z, q)
        y_hat, p, _ = net.decompress_latents(out["strings"], out["shape"], q)
        t = time.perf_counter()
        net.synthesize(y_hat, p.inv_gain)
        syn.append(time.perf_counter() - t)
enc_s, syn_s = statistics.median(enc), statistics.median(syn)
print(
    f"kodim23 768x512 default q3: verified encode median {enc_s:.3f} s, "
    f"extra canonical synthesis median {syn_s:.3f} s ({100 * syn_s / enc_s:.0f} % of the encode)"
)
