#!/usr/bin/env python3
"""Builds assets/fashion-mnist-lt: a small long-tailed subset of Fashion-MNIST as PNG + labels.csv.

Class i keeps n_i = 1000 * rho^(-i/9) images (rho = 100, Cui et al.'s long-tail profile),
drawn in file order from the Fashion-MNIST training set. Python standard library only.
Usage: scripts/make_assets.py ../shared/data/fashion-mnist assets/fashion-mnist-lt
"""
import csv, gzip, os, struct, sys, zlib

NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
# Multi-label tags for the same images, so the bundled set exercises the multi-label path too.
TAGS = {
    0: "upper;casual", 1: "lower;casual", 2: "upper;warm", 3: "full-body;dressy", 4: "upper;warm;outerwear",
    5: "footwear;summer", 6: "upper;dressy", 7: "footwear;casual", 8: "accessory", 9: "footwear;warm",
}


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    dims = [struct.unpack(">I", data[4 + 4 * i: 8 + 4 * i])[0] for i in range(magic & 0xFF)]
    return dims, data[4 + 4 * len(dims):]


def png_gray(w, h, pixels):
    raw = b"".join(b"\x00" + pixels[y * w:(y + 1) * w] for y in range(h))
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def main(src, out, base=1000, rho=100.0):
    (n, h, w), images = read_idx(os.path.join(src, "train-images-idx3-ubyte.gz"))
    _, labels = read_idx(os.path.join(src, "train-labels-idx1-ubyte.gz"))
    want = [round(base * rho ** (-i / 9)) for i in range(10)]
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    taken = [0] * 10
    rows = []
    for i in range(n):
        c = labels[i]
        if taken[c] >= want[c]:
            continue
        taken[c] += 1
        name = f"{i:05d}.png"
        with open(os.path.join(out, "images", name), "wb") as f:
            f.write(png_gray(w, h, images[i * h * w:(i + 1) * h * w]))
        rows.append((name, NAMES[c], TAGS[c]))
        if taken == want:
            break
    with open(os.path.join(out, "labels.csv"), "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["file", "label", "tags"])
        wr.writerows(rows)
    print("per class:", dict(zip(NAMES, taken)), "total", len(rows))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
