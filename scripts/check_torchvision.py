#!/usr/bin/env python3
"""Checks that tailor and torchvision exchange DenseNet weights both ways.

1. A seeded torchvision DenseNet (random weights; no download) is saved with
   `safetensors.torch.save_file`; `tailor predict --weights` runs it on random 32x32 RGB PNGs and
   its logits are compared with torchvision's.
2. With `--run DIR` (a folder written by `tailor train --arch densenet121 ...`), its
   `model.safetensors` is loaded into torchvision with `model.load_state_dict(load_file(p))`
   (strict) and `tailor predict --model DIR` is compared with it the same way.

Needs torch, torchvision, safetensors and pillow. Usage:
    python scripts/check_torchvision.py [--tailor target/release/tailor] [--arch densenet121] [--run DIR]
Exits 1 when a logit differs by more than --tol (default 1e-4).
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from safetensors.torch import load_file, save_file

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def images(folder: Path, count: int, width: int, height: int) -> list[str]:
    """Random RGB PNGs of exactly the model's input size, so that tailor resizes nothing."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        p = folder / f"img{i}_{width}x{height}.png"
        Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


def tailor_logits(tailor: str, args: list[str], paths: list[str]) -> dict[str, list[float]]:
    out = subprocess.run([tailor, "predict", "--logits", "--format", "json", *args, *paths],
                         check=True, capture_output=True, text=True).stdout
    return {p["image"]: p["logits"] for p in json.loads(out)}


def worst_difference(model: torch.nn.Module, logits: dict[str, list[float]], mean=MEAN, std=STD) -> float:
    model.eval()
    worst = 0.0
    for path, theirs in logits.items():
        a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
        x = ((torch.from_numpy(a).permute(2, 0, 1) - mean) / std).unsqueeze(0)
        with torch.no_grad():
            ours = model(x)[0].double()
        worst = max(worst, (ours - torch.tensor(theirs, dtype=torch.float64)).abs().max().item())
    return worst


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tailor", default="target/release/tailor")
    ap.add_argument("--arch", default="densenet121")
    ap.add_argument("--run", help="a tailor run folder to load into torchvision")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = images(tmp, 4, a.size, a.size)

        torch.manual_seed(0)
        tv = getattr(torchvision.models, a.arch)(weights=None, num_classes=1000)
        weights = tmp / "torchvision.safetensors"
        save_file({k: v.contiguous() for k, v in tv.state_dict().items()}, str(weights))
        got = tailor_logits(a.tailor, ["--weights", str(weights), "--arch", a.arch, "--image-size", str(a.size)], paths)
        d = worst_difference(tv, got)
        print(f"torchvision {a.arch} -> tailor: worst |logit difference| {d:.2e} over {len(paths)} images")
        ok &= d <= a.tol

        if a.run:
            config = json.loads((Path(a.run) / "config.json").read_text())
            # From the numbers, not the name: "densenet121-custom" (--growth-rate, --blocks, --bn-size) is
            # no torchvision preset, but it is a torchvision DenseNet.
            m = config["model"]
            if m["stem"] != "imagenet" or m["in_channels"] != 3 or m["compression"] != 0.5:
                print(f"{a.run}: {config['arch']} is no torchvision DenseNet (that needs the ImageNet stem, "
                      "RGB input and compression 0.5)")
                return 1
            model = torchvision.models.DenseNet(growth_rate=m["growth_rate"], block_config=tuple(m["block_config"]),
                                                num_init_features=m["num_init_features"], bn_size=m["bn_size"],
                                                num_classes=m["num_classes"])
            model.load_state_dict(load_file(str(Path(a.run) / "model.safetensors")))  # strict
            # The run's own input size and normalisation (its config.json), as `tailor predict` uses them.
            pre = config["preprocess"]
            run_paths = images(tmp, 4, pre["width"], pre["height"])
            got = tailor_logits(a.tailor, ["--model", a.run], run_paths)
            d = worst_difference(model, got, torch.tensor(pre["mean"]).view(3, 1, 1), torch.tensor(pre["std"]).view(3, 1, 1))
            print(f"tailor run {a.run} -> torchvision {config['arch']}: strict load ok, worst |logit difference| {d:.2e}")
            ok &= d <= a.tol
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
