#!/usr/bin/env python3
"""Plain-PyTorch peer of `cargo bench --bench units` (image-folder part): the same work in a simple loop,
for a side-by-side throughput comparison (issue 5: within 1.5x of a plain PyTorch loop).

For each batch: decode with PIL, Resize(r) + CenterCrop(s) (torchvision.transforms.functional), stack,
forward the TorchScript model to the layer, project on K units + K random directions, running top-(T+1).
Decoding uses a DataLoader with --workers processes (0 = in the main process).

  python scripts/bench_units_torch.py --model /tmp/units_alexnet.pt --images /tmp/units_bench_images \
      --make-images 256 [--device cuda]
  BLINDSPOT_BENCH_IMAGES=/tmp/units_bench_images cargo bench --bench units     # the Rust side
"""
import argparse
import os
import time

import torch
from PIL import Image
import torchvision.transforms.functional as TF


class Folder(torch.utils.data.Dataset):
    def __init__(self, root, resize, crop):
        self.files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs
                            if f.lower().endswith((".jpg", ".jpeg", ".png")))
        self.resize, self.crop = resize, crop

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        img = Image.open(self.files[i]).convert("RGB")
        img = TF.center_crop(TF.resize(img, self.resize, antialias=True), self.crop)
        return TF.to_tensor(img), i


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--layers", default="features.12,classifier.5")
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--top", type=int, default=9)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--make-images", type=int, default=0,
                    help="first write this many synthetic 500x375 JPEGs into --images/c0 (if it has none)")
    args = ap.parse_args()
    if args.make_images and not os.path.isdir(os.path.join(args.images, "c0")):
        import numpy as np
        os.makedirs(os.path.join(args.images, "c0"))
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:375, 0:500]
        for k in range(args.make_images):
            f = rng.uniform(0.01, 0.05, 3)
            a = np.stack([127 + 120 * np.sin(f[c] * (xx + 2 * yy) + k) for c in range(3)], -1).astype(np.uint8)
            Image.fromarray(a).save(os.path.join(args.images, "c0", f"img_{k:04d}.jpg"), quality=90)
    dev = torch.device(args.device)
    m = torch.jit.load(args.model, map_location=dev).eval()
    size = m.input_shape()[1]
    ds = Folder(args.images, round(size * 256 / 224), size)
    print(f"plain PyTorch loop on {dev}, {torch.get_num_threads()} threads, {len(ds)} images")
    for layer in args.layers.split(","):
        with torch.no_grad():
            d = m.layer(torch.zeros(1, 3, size, size, device=dev), layer).numel()
            g = torch.Generator().manual_seed(0)
            units = torch.randperm(d, generator=g)[: args.k].sort().values.to(dev)
            v = torch.randn(d, args.k, generator=g)
            v = (v / v.norm(dim=0, keepdim=True)).to(dev)
            dl = torch.utils.data.DataLoader(ds, batch_size=args.batch, num_workers=args.workers,
                                             pin_memory=dev.type == "cuda")
            t0 = time.time()
            best_s = best_i = None
            n = 0
            for x, idx in dl:
                x = x.to(dev, non_blocking=True)
                phi = m.layer(x, layer).flatten(1)
                s = torch.cat([phi.index_select(1, units), phi @ v], 1)
                i = idx.to(dev).unsqueeze(1).expand_as(s)
                if best_s is not None:
                    s, i = torch.cat([best_s, s]), torch.cat([best_i, i])
                best_s, pos = s.topk(min(args.top + 1, s.shape[0]), 0)
                best_i = i.gather(0, pos)
                n += x.shape[0]
            if dev.type == "cuda":
                torch.cuda.synchronize()
            dt = time.time() - t0
        print(f"{layer:<14} {n:>6} images {2 * args.k:>6} directions  batch {args.batch:>4}: "
              f"{dt:7.2f} s  ({n / dt:8.1f} images/s)")


if __name__ == "__main__":
    main()
