#!/usr/bin/env python3
"""Export torchvision's AlexNet to TorchScript for `blindspot spectral` (paper §4.3, Table 5).

  /work/main/.venv/bin/python scripts/export_alexnet.py --out /tmp/alexnet.pt              # random weights
  /work/main/.venv/bin/python scripts/export_alexnet.py --out alexnet.pt --weights alexnet-owt-7be5be79.pth

`--weights` takes a state dict you already have (e.g. torchvision's pretrained file); nothing is downloaded.
The file is ~244 MB: never commit it. Then:
  blindspot spectral --model alexnet.pt --input-shape 3,224,224 --out runs/spectral-alexnet
"""
import argparse
import torch
import torchvision


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--weights", help="state dict (.pth) of torchvision AlexNet; random weights if omitted")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    m = torchvision.models.alexnet(weights=None)
    if a.weights:
        sd = torch.load(a.weights, map_location="cpu", weights_only=True)
        m.load_state_dict(sd)
    m.eval()
    torch.jit.script(m).save(a.out)
    print(f"wrote {a.out} ({'weights from ' + a.weights if a.weights else 'random weights, seed %d' % a.seed})")


if __name__ == "__main__":
    main()
