#!/usr/bin/python3
"""Writes a folder of "photos" the way a user's own data looks, from Fashion-MNIST (Debian's
dataset-fashion-mnist), for trying hpo on image folders:

  OUT/train/<class>/*.jpg|png   5 classes; "shirt" has only 80 training images (the others 400): imbalanced
  OUT/val/<class>/*.jpg          80 per class: collected separately, and balanced

Images are 40x40 colour JPEGs (some 28x28 grayscale PNGs), plus a README.txt and a .DS_Store, which hpo skips.

  /usr/bin/python3 examples/photos/make_photos.py /tmp/hpo-photos/photos
Needs python3-pil.
"""
import gzip
import os
import struct
import sys

from PIL import Image

FMNIST = "/usr/share/datasets/fashion-mnist"
CLASSES = {0: "t-shirt", 1: "trouser", 6: "shirt", 7: "sneaker", 8: "bag"}
TRAIN = {"t-shirt": 400, "trouser": 400, "shirt": 80, "sneaker": 400, "bag": 400}
VAL = 80


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/hpo-photos/photos"
    with gzip.open(os.path.join(FMNIST, "train-images-idx3-ubyte.gz")) as f:
        _, n, h, w = struct.unpack(">IIII", f.read(16))
        pixels = f.read(n * h * w)
    with gzip.open(os.path.join(FMNIST, "train-labels-idx1-ubyte.gz")) as f:
        f.read(8)
        labels = f.read(n)
    written = {"train": {}, "val": {}}
    for i in range(n):
        name = CLASSES.get(labels[i])
        if name is None:
            continue
        split = "train" if written["train"].get(name, 0) < TRAIN[name] else "val"
        if written[split].get(name, 0) >= (TRAIN[name] if split == "train" else VAL):
            continue
        written[split][name] = written[split].get(name, 0) + 1
        d = os.path.join(out, split, name)
        os.makedirs(d, exist_ok=True)
        im = Image.frombytes("L", (w, h), pixels[i * h * w:(i + 1) * h * w])
        if i % 4 == 3:
            im.save(os.path.join(d, f"{i}.png"))
        else:  # a colour photo: tinted, enlarged
            rgb = Image.merge("RGB", (im, im.point(lambda p: p * 9 // 10), im.point(lambda p: p * 7 // 10)))
            rgb.resize((40, 40), Image.BILINEAR).save(os.path.join(d, f"{i}.jpg"), quality=90)
        if all(written[s].get(c, 0) >= (TRAIN[c] if s == "train" else VAL) for s in written for c in TRAIN):
            break
    with open(os.path.join(out, "train", "README.txt"), "w") as f:
        f.write("shop photos, November\n")
    with open(os.path.join(out, "train", "bag", ".DS_Store"), "wb") as f:
        f.write(b"\0\0\0\1Bud1")
    print(f"wrote {out}: " + ", ".join(f"{s} {sum(v.values())}" for s, v in written.items()))


if __name__ == "__main__":
    main()
