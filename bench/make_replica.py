#!/usr/bin/env python3
"""Writes Longhorn v1 replica directories for the benchmarks.

layers DIR FLAT SIZE LAYERS STRIPE
    A volume of SIZE bytes, fully allocated, its data spread over LAYERS snapshot layers
    (stripe i lives in layer i % LAYERS) under an empty head; FLAT gets the same logical
    content as one plain raw file (the peer's input).
many DIR SIZE LAYERS DATA
    A volume with LAYERS snapshot layers holding DATA bytes in total, scattered.
"""
import json
import os
import sys


def meta(name, parent, user=True, created="2026-11-27T00:00:00Z"):
    return json.dumps({"Name": name, "Parent": parent, "Removed": False, "UserCreated": user,
                       "Created": created, "Labels": None}, separators=(",", ":")) + "\n"


def write_dir(d, size, layer_names):
    os.makedirs(d, exist_ok=True)
    parent = ""
    for name in layer_names:
        with open(os.path.join(d, name + ".meta"), "w") as f:
            f.write(meta(name, parent))
        parent = name
    head = "volume-head-%03d.img" % len(layer_names)
    with open(os.path.join(d, head), "wb") as f:
        f.truncate(size)
    with open(os.path.join(d, head + ".meta"), "w") as f:
        f.write(meta(head, parent, user=False))
    with open(os.path.join(d, "volume.meta"), "w") as f:
        f.write(json.dumps({"Size": size, "Head": head, "Dirty": False, "Rebuilding": False,
                            "Error": "", "Parent": parent, "SectorSize": 512,
                            "BackingFilePath": ""}, separators=(",", ":")) + "\n")
    with open(os.path.join(d, "revision.counter"), "wb") as f:
        f.write(b"0".ljust(4096, b"\0"))


def layers(d, flat, size, n, stripe):
    names = ["volume-snap-layer%d.img" % i for i in range(n)]
    files = []
    for name in names:
        f = open(os.path.join(d, name), "wb")
        f.truncate(size)
        files.append(f)
    with open(flat, "wb") as out:
        out.truncate(size)
        off = 0
        i = 0
        while off < size:
            chunk = os.urandom(min(stripe, size - off))
            os.pwrite(files[i % n].fileno(), chunk, off)
            os.pwrite(out.fileno(), chunk, off)
            off += len(chunk)
            i += 1
    for f in files:
        f.close()
    write_dir(d, size, names)


def many(d, size, n, data):
    names = ["volume-snap-l%03d.img" % i for i in range(n)]
    os.makedirs(d, exist_ok=True)
    per_layer = data // n
    block = 64 * 1024
    import random
    rnd = random.Random(42)
    payload = os.urandom(block)
    for name in names:
        with open(os.path.join(d, name), "wb") as f:
            f.truncate(size)
            written = 0
            while written < per_layer:
                off = rnd.randrange(0, size // block) * block
                os.pwrite(f.fileno(), payload, off)
                written += block
    write_dir(d, size, names)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "layers":
        os.makedirs(sys.argv[2], exist_ok=True)
        layers(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    elif cmd == "many":
        many(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(__doc__)
