#!/usr/bin/env python3
"""Backup benchmark (issue #14), through a running `ironhorn server` (release build):

1. Full backup of a 4 GiB volume filled by fio with partly compressible data
   (--buffer_compress_percentage=50, every block different) to a directory target, against
   `gzip -1` and `lz4 -1` of the same raw image into the same directory, in the same run.
   Target: >= 1.0x gzip -1's speed with gzip blocks.
2. Incremental backup after 1% of the blocks changed: bytes uploaded (<= 1.05x the changed
   blocks) and time (<= 5% of the full backup's).
3. Restore of the full backup into a new volume (`--from-backup`, until restoreRequired is
   false), against decompressing the same block files into one file (`gzip -dc`).
   Target: >= 0.8x.
4. Listing 10,000 backups of one volume through the API (GET .../backups?limit=10000),
   after a first listing: p50 and p99 (target p99 < 100 ms).

Usage: bench/backup.py [--size-gib 4] [--compression gzip] [--dir /var/tmp] [--bin PATH] [--json]
Needs fio, qemu-io, nbdcopy, gzip, lz4; a release build (cargo build --release).
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

MIB = 1 << 20
BLOCK = 2 * MIB


def run(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary, root):
        self.binary = binary
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(os.path.join(root, "server.log"), "w")
        self.proc = subprocess.Popen(
            [binary, "server", "--data-dir", os.path.join(root, "data"), "--listen",
             f"127.0.0.1:{self.port}", "--node-name", "bench", "--poll-window", "0"],
            stdout=self.log, stderr=self.log)
        self.token_file = os.path.join(root, "data", "admin.token")
        deadline = time.time() + 30
        while True:
            try:
                self.get("/v1/volumes")
                break
            except OSError:
                if time.time() > deadline:
                    raise SystemExit("the server did not start; see server.log")
                time.sleep(0.1)

    def cli(self, *args):
        out = subprocess.run([self.binary, *args, "-o", "json"], capture_output=True, text=True,
                             env={**os.environ, "IRONHORN_URL": self.url,
                                  "IRONHORN_TOKEN_FILE": self.token_file})
        if out.returncode != 0:
            raise SystemExit(f"ironhorn {' '.join(args)}: {out.stderr}")
        return json.loads(out.stdout) if out.stdout.strip() else None

    def request(self, path):
        """A GET with the first admin's token (the server writes it at first start)."""
        with open(self.token_file) as f:
            token = f.read().strip()
        return urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {token}"})

    def get(self, path):
        with urllib.request.urlopen(self.request(path), timeout=60) as r:
            return json.loads(r.read())

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def wait_backup(server, volume, name):
    while True:
        b = server.get(f"/v1/backupvolumes/{volume}/backups/{name}")
        if b["state"] == "Completed":
            return b
        if b["state"] in ("Error", "Unknown"):
            raise SystemExit(f"backup failed: {b}")
        time.sleep(0.05)


def backup(server, volume):
    def go():
        started = server.cli("backup", "create", volume)
        return wait_backup(server, volume, started["name"])
    return timed(go)


def listing(server, target, count):
    """4. Listing `count` backups of one volume: cfgs written as Longhorn writes them."""
    lvol = "listing-vol"
    digest = hashlib.sha512(lvol.encode()).hexdigest()
    ldir = os.path.join(target, "backupstore", "volumes", digest[:2], digest[2:4], lvol)
    os.makedirs(os.path.join(ldir, "backups"))
    block = "0" * 64
    for i in range(count):
        name = f"backup-{i:016x}"
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_700_000_000 + i))
        with open(os.path.join(ldir, "backups", f"backup_{name}.cfg"), "w") as f:
            json.dump({"Name": name, "VolumeName": lvol, "SnapshotName": f"s{i}", "SnapshotCreatedAt": at,
                       "CreatedTime": at, "Size": str(BLOCK), "Labels": {}, "IsIncremental": i > 0,
                       "CompressionMethod": "lz4", "Blocks": [{"Offset": 0, "BlockChecksum": block}],
                       "SingleFile": {"FilePath": ""}}, f, separators=(",", ":"))
    with open(os.path.join(ldir, "volume.cfg"), "w") as f:
        json.dump({"Name": lvol, "Size": str(BLOCK), "Labels": None, "CreatedTime": "", "LastBackupName": "",
                   "LastBackupAt": "", "BlockCount": "1", "BackingImageName": "\"\"",
                   "BackingImageChecksum": "\"\"", "CompressionMethod": "\"lz4\"", "StorageClassName": "\"\""}, f)
    server.cli("backup", "target", "set", "default", f"file://{target}")  # reread the target
    path = f"/v1/backupvolumes/{lvol}/backups?limit=10000"
    first_s, first = timed(lambda: server.get(path))
    assert len(first["data"]) == count, len(first["data"])
    times = []
    for _ in range(200):
        # The API's time: request sent, whole answer received (not the client's parsing).
        t, body = timed(lambda: urllib.request.urlopen(server.request(path), timeout=60).read())
        times.append(t)
    assert len(json.loads(body)["data"]) == count
    times.sort()
    return {"listing": {"backups": count, "first_ms": first_s * 1000,
                          "p50_ms": times[len(times) // 2] * 1000,
                          "p99_ms": times[int(len(times) * 0.99) - 1] * 1000}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-gib", type=int, default=4)
    ap.add_argument("--compression", default="gzip", choices=["gzip", "lz4", "none"])
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "ironhorn"))
    ap.add_argument("--listing", type=int, default=10000)
    ap.add_argument("--listing-only", action="store_true", help="only the listing measurement")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    size = args.size_gib << 30
    root = tempfile.mkdtemp(prefix="ironhorn-bench-backup-", dir=args.dir)
    target = os.path.join(root, "target")
    os.makedirs(target)
    server = Server(os.path.abspath(args.bin), root)
    results = {}
    try:
        server.cli("setting", "set", "storage-minimal-available-percentage", "0")
        server.cli("setting", "set", "storage-over-provisioning-percentage", "1000")
        server.cli("setting", "set", "backup-compression-method", args.compression)
        server.cli("setting", "set", "backupstore-poll-interval", "3600")
        server.cli("backup", "target", "set", "default", f"file://{target}")
        if args.listing_only:
            results.update(listing(server, target, args.listing))
            return print(json.dumps(results, indent=2))
        server.cli("volume", "create", "bench", "--size", f"{args.size_gib}Gi", "--replicas", "1", "--wait")
        endpoint = server.cli("volume", "attach", "bench", "--wait")["status"]["endpoint"]
        run("fio", "--name=fill", "--ioengine=nbd", f"--uri={endpoint}", "--rw=write", "--bs=1M",
            f"--size={size}", "--iodepth=8", "--buffer_compress_percentage=50",
            "--buffer_compress_chunk=4k", "--refill_buffers", "--randrepeat=0")
        raw = os.path.join(root, "raw.img")
        run("nbdcopy", endpoint, raw)

        # 1. Full backup against gzip -1 / lz4 -1 of the raw image into the same directory.
        full_s, full = backup(server, "bench")
        peers = {}
        for tool, cmd in (("gzip -1", ["gzip", "-1", "-c"]), ("lz4 -1", ["lz4", "-1", "-c"])):
            out = os.path.join(target, "peer.out")
            with open(raw, "rb") as src, open(out, "wb") as dst:
                t, _ = timed(lambda: subprocess.run(cmd, stdin=src, stdout=dst, check=True))
            with open(out, "rb") as f:
                os.fsync(f.fileno())
            peers[tool] = {"seconds": t, "bytes": os.path.getsize(out)}
            os.remove(out)
        stored = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(target) for f in fs if f.endswith(".blk"))
        results["full"] = {
            "seconds": full_s, "mib_s": size / MIB / full_s, "stored_bytes": stored,
            "peers": peers,
            "ratio_vs_gzip": peers["gzip -1"]["seconds"] / full_s,
            "ratio_vs_lz4": peers["lz4 -1"]["seconds"] / full_s,
        }

        # 2. Incremental after 1% of the blocks changed (64 KiB inside each).
        blocks = size // BLOCK
        changed = sorted(random.Random(7).sample(range(blocks), max(1, blocks // 100)))
        cmds = []
        for b in changed:
            cmds += ["-c", f"write -P {0x10 + b % 200} {b * BLOCK + 4096} 65536"]
        run("qemu-io", "-f", "raw", *cmds, "-c", "flush", endpoint)
        inc_s, inc = backup(server, "bench")
        results["incremental"] = {
            "seconds": inc_s, "changed_blocks": len(changed),
            "bytes_uploaded": inc["bytesUploaded"],
            "changed_blocks_bytes": len(changed) * BLOCK,
            "upload_ratio": inc["bytesUploaded"] / (len(changed) * BLOCK),
            "time_vs_full": inc_s / full_s,
        }

        # 3. Restore the full backup into a new volume, against decompressing its blocks.
        def restore():
            server.cli("volume", "create", "restored", "--from-backup", full["url"], "--replicas", "1")
            while True:
                v = server.get("/v1/volumes/restored")
                if not v["status"].get("restoreRequired", True):
                    return v
                time.sleep(0.05)
        restore_s, _ = timed(restore)
        cfg_dir = [d for d, _, fs in os.walk(target) if any(f.startswith("backup_") for f in fs)][0]
        cfg = json.load(open(os.path.join(cfg_dir, f"backup_{full['name']}.cfg")))
        vol_dir = os.path.dirname(cfg_dir)
        files = [os.path.join(vol_dir, "blocks", b["BlockChecksum"][:2], b["BlockChecksum"][2:4], b["BlockChecksum"] + ".blk") for b in cfg["Blocks"]]
        out = os.path.join(root, "decompressed.img")
        decoder = {"gzip": ["gzip", "-dc"], "lz4": ["lz4", "-dc", "-m", "--no-frame-crc"], "none": ["cat"]}[args.compression]
        def decompress():
            with open(out, "wb") as dst:
                if args.compression == "lz4":
                    for f in files:
                        subprocess.run(["lz4", "-dc", f], stdout=dst, check=True)
                else:
                    cat = subprocess.Popen(["cat", *files], stdout=subprocess.PIPE)
                    subprocess.run(decoder, stdin=cat.stdout, stdout=dst, check=True)
                    cat.wait()
                dst.flush()
                os.fsync(dst.fileno())
        peer_s, _ = timed(decompress)
        results["restore"] = {"seconds": restore_s, "mib_s": size / MIB / restore_s,
                              "peer_seconds": peer_s, "ratio": peer_s / restore_s}

        results.update(listing(server, target, args.listing))
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)

    if args.json:
        print(json.dumps(results, indent=2))
        return
    f, i, r, l = results["full"], results["incremental"], results["restore"], results["listing"]
    print(f"full backup of {args.size_gib} GiB ({args.compression}): {f['seconds']:.1f} s, {f['mib_s']:.0f} MiB/s, stored {f['stored_bytes'] / MIB:.0f} MiB")
    for tool, p in f["peers"].items():
        print(f"  {tool} of the raw image: {p['seconds']:.1f} s ({p['bytes'] / MIB:.0f} MiB)")
    print(f"  ratio vs gzip -1: {f['ratio_vs_gzip']:.2f}x (target >= 1.0x), vs lz4 -1: {f['ratio_vs_lz4']:.2f}x")
    print(f"incremental after {i['changed_blocks']} changed blocks: {i['seconds']:.2f} s ({i['time_vs_full'] * 100:.1f}% of full, target <= 5%), "
          f"uploaded {i['bytes_uploaded'] / MIB:.1f} MiB of {i['changed_blocks_bytes'] / MIB:.0f} MiB changed ({i['upload_ratio']:.2f}x, target <= 1.05x)")
    print(f"restore: {r['seconds']:.1f} s ({r['mib_s']:.0f} MiB/s); decompressing the blocks: {r['peer_seconds']:.1f} s; ratio {r['ratio']:.2f}x (target >= 0.8x)")
    print(f"listing {l['backups']} backups: first {l['first_ms']:.0f} ms, then p50 {l['p50_ms']:.1f} ms, p99 {l['p99_ms']:.1f} ms (target < 100 ms)")


if __name__ == "__main__":
    sys.exit(main())
