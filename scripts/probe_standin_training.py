#!/usr/bin/env python3
"""Feasibility probe / PyTorch reference for training the stand-in AlexNet on the stand-in data set.

Loads a TorchScript module written by scripts/export_standin.py with torch.jit.load and trains its parameters
(the scripted module itself, as a Rust trainer would through tch's CModule) on an image folder written by
scripts/make_standin.py, at 224x224:
  train  the 256x256 images, a random 224x224 crop per image and step (--crop random, default), or the
         centre crop (--crop center); no flips (a flipped digit is another symbol);
  val    the centre 224x224 crop (what blindspot's image-folder loader gives with resize 256 / crop 224).
Images are decoded once into memory as uint8 tensors (train [N, 3, 256, 256], val [N, 3, 224, 224]), so
decoding is not timed with training; the decode time and the memory are reported.

Optimiser: Adam or SGD with momentum (--opt), mean cross-entropy, optional weight decay, a linear warm-up
over --warmup epochs (fraction allowed) and then cosine decay to 0 at the last step (--schedule cosine) or a
constant lr. Every epoch prints one JSON line: epoch, train loss / accuracy (running, dropout on), val
accuracy, wall seconds of the epoch's training (evaluation apart) and cumulative, cumulative process CPU
seconds of training (train_cpu_s / threads estimates the time on idle dedicated cores when the machine is
shared), and the load average.

Findings (2 threads, machine shared with a compiler, so wall times are inflated 2-9x; widths 16,32,48,48,32,
FC 256,256, dropout 0, Adam lr 1e-3, batch 32, warm-up 0.3 epoch, cosine, random crops):
  500/class,  12 epochs: val 0.11 0.33 0.51 0.66 0.70 0.77 0.77 0.80 0.80 0.82 0.82 0.82 (overfits: train 0.91)
  1500/class,  6 epochs: val 0.43 0.75 0.83 0.88 0.89 0.895 (train 0.91, no gap yet: more epochs needed)
  with torchvision's dropout 0.5 (and batch 64) it stayed at chance level for 5 epochs of 500/class.
  In quieter stretches (load 3.3-4.2) one epoch of 15000 images took 17-28 s (550-900 images/s, fwd + bwd,
  ~2.2 ms of CPU per image); under load 5-9 it took 80-200 s.

Example:
  python scripts/probe_standin_training.py --data runs/standin --model runs/standin.pt \\
      --train-per-class 1500 --val-per-class 100 --epochs 12 --opt adam --lr 1e-3 --batch 32
"""
import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def load_split(folder, per_class, crop):
    """uint8 [N, 3, S, S] (S = 256, or 224 centre crop when crop == 224) and int64 labels."""
    classes = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    xs, ys = [], []
    for label, c in enumerate(classes):
        files = sorted(f for f in os.listdir(os.path.join(folder, c)) if f.lower().endswith((".png", ".jpg")))
        if per_class:
            files = files[:per_class]
        for f in files:
            a = np.asarray(Image.open(os.path.join(folder, c, f)).convert("RGB"))
            if crop:
                t = (a.shape[0] - crop) // 2
                l = (a.shape[1] - crop) // 2
                a = a[t:t + crop, l:l + crop]
            xs.append(torch.from_numpy(a.copy()).permute(2, 0, 1))
            ys.append(label)
    return torch.stack(xs), torch.tensor(ys, dtype=torch.int64), classes


def batch_crops(x, idx, size, gen, random):
    """float [B, 3, size, size] in [0, 1]: random (or centre) crops of the images x[idx]."""
    s = x.shape[-1]
    if s == size:
        return x[idx].float().div_(255)
    if not random:
        o = (s - size) // 2
        return x[idx, :, o:o + size, o:o + size].float().div_(255)
    off = torch.randint(0, s - size + 1, (len(idx), 2), generator=gen)
    out = torch.empty(len(idx), 3, size, size)
    for j, i in enumerate(idx.tolist()):
        oy, ox = off[j].tolist()
        out[j] = x[i, :, oy:oy + size, ox:ox + size]
    return out.div_(255)


def evaluate(model, x, y, batch=250):
    model.eval()
    correct = 0
    with torch.no_grad():
        for k in range(0, len(y), batch):
            xb = x[k:k + batch].float().div_(255)
            correct += (model(xb).argmax(1) == y[k:k + batch]).sum().item()
    model.train()
    return correct / len(y)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="folder with train/ and val/ (scripts/make_standin.py)")
    ap.add_argument("--model", required=True, help="TorchScript file (scripts/export_standin.py)")
    ap.add_argument("--train-per-class", type=int, default=0, help="use the first N train images per class (0: all)")
    ap.add_argument("--val-per-class", type=int, default=0, help="use the first N val images per class (0: all)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--crop", choices=["random", "center"], default="random", help="train crop (val: centre)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--opt", choices=["adam", "sgd"], default="adam")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    ap.add_argument("--wd", type=float, default=0.0, help="weight decay (L2 in the optimiser)")
    ap.add_argument("--schedule", choices=["cosine", "constant"], default="cosine")
    ap.add_argument("--warmup", type=float, default=0.3, help="linear warm-up length in epochs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", type=float, default=0.95, help="report when val accuracy first reaches this")
    ap.add_argument("--save", default="", help="write the trained TorchScript module here")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    t0 = time.time()
    xtr, ytr, classes = load_split(os.path.join(args.data, "train"), args.train_per_class,
                                   0 if args.crop == "random" else args.size)
    xva, yva, _ = load_split(os.path.join(args.data, "val"), args.val_per_class, args.size)
    dec = time.time() - t0
    mem = (xtr.numel() + xva.numel()) / 2 ** 20
    print(json.dumps({"decoded": {"train": list(xtr.shape), "val": list(xva.shape), "seconds": round(dec, 1),
                                  "images_per_s": round((len(ytr) + len(yva)) / dec, 1),
                                  "uint8_MiB": round(mem, 1), "classes": classes}}), flush=True)

    model = torch.jit.load(args.model)
    model.train()
    params = list(model.parameters())
    if args.opt == "adam":
        opt = torch.optim.Adam(params, lr=args.lr, weight_decay=args.wd)
    else:
        opt = torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, weight_decay=args.wd)
    steps_per_epoch = -(-len(ytr) // args.batch)
    total = steps_per_epoch * args.epochs
    warm = max(1, int(args.warmup * steps_per_epoch))

    def lr_at(step):
        if step < warm:
            return args.lr * (step + 1) / warm
        if args.schedule == "constant":
            return args.lr
        return args.lr * 0.5 * (1 + np.cos(np.pi * (step - warm) / max(1, total - warm)))

    print(json.dumps({"config": {k: v for k, v in vars(args).items()}, "train_images": len(ytr),
                      "val_images": len(yva), "steps_per_epoch": steps_per_epoch,
                      "parameters": sum(p.numel() for p in params), "load": os.getloadavg()}), flush=True)
    step, train_wall, train_cpu, reached = 0, 0.0, 0.0, None
    curve = []
    for epoch in range(1, args.epochs + 1):
        te, ce = time.time(), time.process_time()
        perm = torch.randperm(len(ytr), generator=gen)
        loss_sum, correct, seen = 0.0, 0, 0
        for k in range(0, len(ytr), args.batch):
            idx = perm[k:k + args.batch]
            xb = batch_crops(xtr, idx, args.size, gen, args.crop == "random")
            yb = ytr[idx]
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_sum += loss.item() * len(idx)
            correct += (out.argmax(1) == yb).sum().item()
            seen += len(idx)
        epoch_s = time.time() - te
        train_wall += epoch_s
        train_cpu += time.process_time() - ce
        tv = time.time()
        acc = evaluate(model, xva, yva)
        rec = {"epoch": epoch, "train_loss": round(loss_sum / seen, 4), "train_acc": round(correct / seen, 4),
               "val_acc": round(acc, 4), "epoch_train_s": round(epoch_s, 1),
               "eval_s": round(time.time() - tv, 1), "train_wall_s": round(train_wall, 1),
               "train_cpu_s": round(train_cpu, 1), "lr_end": float(f"{lr_at(step - 1):.3g}"),
               "load": [round(v, 2) for v in os.getloadavg()]}
        curve.append(acc)
        if reached is None and acc >= args.target:
            reached = {"epoch": epoch, "train_wall_s": rec["train_wall_s"], "train_cpu_s": rec["train_cpu_s"]}
        print(json.dumps(rec), flush=True)
    print(json.dumps({"final_val_acc": curve[-1], "best_val_acc": max(curve), "val_curve": curve,
                      "reached_target": reached, "train_wall_s": round(train_wall, 1),
                      "total_wall_s": round(time.time() - t0, 1)}), flush=True)
    if args.save:
        model.eval()
        model.save(args.save)


if __name__ == "__main__":
    main()
