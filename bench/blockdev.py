#!/usr/bin/env python3
"""Block device benchmark (issue #5): fio on xfs on /dev/ironhorn/<volume> (a 1-replica volume;
the backend --backend says, auto by default: fuse-loop, loop with direct I/O, where the kernel
has neither ublk nor nbd) against the same fio on xfs on a loop device over a
plain file on the same disk (direct I/O too), in the same run, jobs interleaved.

Reports 4k random read and write at QD1 and QD32 and 1M sequential read and write, as IOPS,
MiB/s and mean latency for each, and the ratio ironhorn / plain loop (targets: at least 0.5x
for 4k random, 0.8x for 1M sequential). Each job runs --rounds times on each side, the sides
alternating; the medians are compared (single runs vary by 2x on a shared VM's disk).

Usage: bench/blockdev.py [--seconds 10] [--rounds 3] [--size-gib 4] [--replicas 1] [--backend auto] [--dir /var/tmp] [--bin PATH] [--json]
Needs root, fio, xfsprogs, util-linux, and a release build (cargo build --release).
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

JOBS = [
    # name, rw, block size, queue depth, target ratio
    ("4k randread  QD1", "randread", "4k", 1, 0.5),
    ("4k randwrite QD1", "randwrite", "4k", 1, 0.5),
    ("4k randread  QD32", "randread", "4k", 32, 0.5),
    ("4k randwrite QD32", "randwrite", "4k", 32, 0.5),
    ("1M read      QD4", "read", "1M", 4, 0.8),
    ("1M write     QD4", "write", "1M", 4, 0.8),
]


def run(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fio(directory, rw, bs, qd, seconds):
    out = run(
        "fio", "--name=bench", f"--directory={directory}", "--filename=fio.dat",
        "--size=1G", f"--rw={rw}", f"--bs={bs}", f"--iodepth={qd}", "--ioengine=libaio",
        "--direct=1", "--time_based", f"--runtime={seconds}", "--ramp_time=2",
        "--randrepeat=0", "--output-format=json",
    )
    job = json.loads(out)["jobs"][0]
    side = job["read"] if "read" in rw else job["write"]
    return {
        "iops": side["iops"],
        "mib_s": side["bw_bytes"] / (1 << 20),
        "lat_us": side["lat_ns"]["mean"] / 1000,
    }


def median(runs):
    """The run with the median IOPS."""
    return sorted(runs, key=lambda r: r["iops"])[len(runs) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size-gib", type=int, default=4)
    ap.add_argument("--replicas", type=int, default=1,
                    help="replicas of the volume: one on the server's node, the others on node agents started on this machine")
    ap.add_argument("--backend", default="auto",
                    help="the server's --blockdev-backend: auto, ublk, nbd or fuse-loop")
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "ironhorn"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="ironhorn-bench-", dir=args.dir)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, IRONHORN_URL=url, IRONHORN_TOKEN_FILE=f"{work}/data/admin.token")
    cli = lambda *a: run(args.bin, *a, env=env)  # noqa: E731
    server = subprocess.Popen(
        [args.bin, "server", "--data-dir", f"{work}/data", "--listen", f"127.0.0.1:{port}",
         "--blockdev-backend", args.backend],
        stdout=subprocess.DEVNULL, stderr=open(f"{work}/server.log", "w"),
    )
    ih_mnt, loop_mnt, loop_dev = f"{work}/mnt-ironhorn", f"{work}/mnt-loop", None
    agents = []
    try:
        for _ in range(300):
            try:
                cli("node", "ls")
                break
            except subprocess.CalledProcessError:
                time.sleep(0.1)
        for n in range(2, args.replicas + 1):
            agents.append(subprocess.Popen(
                [args.bin, "node", "--cluster-secret-file", f"{work}/data/cluster.secret",
                 "--manager", url, "--name", f"bench-{n}", "--data-dir",
                 f"{work}/node-{n}", "--listen", "127.0.0.1:0"],
                stdout=subprocess.DEVNULL, stderr=open(f"{work}/node-{n}.log", "w"),
            ))
        while len(json.loads(cli("node", "ls", "-o", "json"))["data"]) < args.replicas:
            time.sleep(0.2)
        cli("setting", "set", "storage-minimal-available-percentage", "0")
        cli("volume", "create", "bench", "--size", f"{args.size_gib}Gi", "--replicas", str(args.replicas), "--wait")
        cli("volume", "attach", "bench", "--frontend", "blockdev", "--wait")
        os.makedirs(ih_mnt)
        run("mkfs.xfs", "-q", "-f", "/dev/ironhorn/bench")
        run("mount", "/dev/ironhorn/bench", ih_mnt)

        plain = f"{work}/plain.img"
        with open(plain, "wb") as f:
            f.truncate(args.size_gib << 30)
        loop_dev = run("losetup", "--find", "--show", "--direct-io=on", plain).strip()
        os.makedirs(loop_mnt)
        run("mkfs.xfs", "-q", "-f", loop_dev)
        run("mount", loop_dev, loop_mnt)

        results = []
        for name, rw, bs, qd, target in JOBS:
            runs = {"ours": [], "peer": []}
            for _ in range(args.rounds):
                runs["ours"].append(fio(ih_mnt, rw, bs, qd, args.seconds))
                runs["peer"].append(fio(loop_mnt, rw, bs, qd, args.seconds))
            ours, peer = median(runs["ours"]), median(runs["peer"])
            ratio = ours["iops"] / peer["iops"] if peer["iops"] else 0.0
            results.append({"job": name, "ironhorn": ours, "loop": peer, "ratio": ratio, "target": target,
                            "runs": runs})
            if not args.json:
                print(
                    f"{name:18} ironhorn {ours['iops']:9.0f} IOPS {ours['mib_s']:7.1f} MiB/s {ours['lat_us']:8.0f} us | "
                    f"loop {peer['iops']:9.0f} IOPS {peer['mib_s']:7.1f} MiB/s {peer['lat_us']:8.0f} us | "
                    f"{ratio:.2f}x (target {target}x) {'met' if ratio >= target else 'NOT met'}",
                    flush=True,
                )
        if args.json:
            json.dump(results, sys.stdout, indent=2)
            print()
    finally:
        for mnt in (ih_mnt, loop_mnt):
            subprocess.run(["umount", mnt], capture_output=True)
        if loop_dev:
            subprocess.run(["losetup", "-d", loop_dev], capture_output=True)
        subprocess.run([args.bin, "volume", "detach", "bench", "--wait"], env=env, capture_output=True)
        for agent in agents:
            agent.terminate()
            agent.wait(timeout=60)
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
