#!/usr/bin/env python3
"""Control-plane benchmarks (issue #4), with real processes: `ironhorn server` and two
`ironhorn node` agents on this machine (three nodes).

1. `GET /v1/volumes` with 1,000 volumes: latency percentiles over keep-alive requests
   (target: p99 under 50 ms). `GET /v1/openapi.json` (a static document from the same
   server) is measured alongside, as the floor of what one request costs here.
2. 100 volumes of 3 replicas attached and idle: CPU of the manager and both node agents
   together over a minute (target: under 2% of one core), and their memory per attached
   volume (RSS with the volumes attached minus RSS with them detached, over 100).

Usage: bench/control.py [--volumes 1000] [--attached 100] [--seconds 60] [--bin PATH]
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    def __init__(self, port, token):
        self.port = port
        self.token = token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        headers["Authorization"] = f"Bearer {self.token}"
        self.conn.request(method, path, body=data, headers=headers)
        r = self.conn.getresponse()
        text = r.read()
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {text[:300]!r}")
        return json.loads(text) if text else None


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait(what, check, timeout=600):
    deadline = time.time() + timeout
    while not check():
        if time.time() > deadline:
            sys.exit(f"timed out waiting until {what}")
        time.sleep(0.5)


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def latencies(api, path, n):
    """Milliseconds from sending each request to having the whole answer (not parsed)."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        api.conn.request("GET", path, headers={"Authorization": f"Bearer {api.token}"})
        r = api.conn.getresponse()
        r.read()
        out.append((time.perf_counter() - t0) * 1000)
        if r.status != 200:
            raise RuntimeError(f"GET {path}: {r.status}")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--volumes", type=int, default=1000)
    ap.add_argument("--attached", type=int, default=100)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--bin", default="target/release/ironhorn")
    ap.add_argument("--perf", help="also record a perf profile of the idle window to this file")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="ironhorn-control-bench.", dir="/var/tmp")
    port = free_port()
    procs = []
    try:
        env = dict(os.environ, RUST_LOG="warn")
        log = open(os.path.join(work, "server.log"), "w")
        procs.append(subprocess.Popen(
            [args.bin, "server", "--data-dir", f"{work}/n1", "--listen", f"127.0.0.1:{port}",
             "--node-name", "node-1"], stderr=log, env=env))
        wait("the server wrote its credentials",
             lambda: os.path.exists(f"{work}/n1/admin.token"))
        for n in (2, 3):
            nlog = open(os.path.join(work, f"node-{n}.log"), "w")
            procs.append(subprocess.Popen(
                [args.bin, "node", "--cluster-secret-file", f"{work}/n1/cluster.secret",
                 "--manager", f"http://127.0.0.1:{port}", "--name", f"node-{n}",
                 "--data-dir", f"{work}/n{n}", "--listen", "127.0.0.1:0"], stderr=nlog, env=env))
        time.sleep(0.5)
        wait("the server answers", lambda: subprocess.run(
            ["curl", "-sf", f"http://127.0.0.1:{port}/healthz"], capture_output=True).returncode == 0)
        with open(f"{work}/n1/admin.token") as f:
            api = Api(port, f.read().strip())
        wait("three nodes are ready", lambda: sum(
            n["status"]["ready"] for n in api.call("GET", "/v1/nodes")["data"]) == 3)
        # This machine's disk may be fuller than the default 25% free allows for.
        api.call("PUT", "/v1/settings/storage-minimal-available-percentage", {"value": "0"})
        api.call("PUT", "/v1/settings/storage-over-provisioning-percentage", {"value": "100000"})

        # 1. Listing 1,000 volumes.
        t0 = time.time()
        for i in range(args.volumes):
            api.call("POST", "/v1/volumes", {"name": f"vol-{i:04d}", "size": "64Mi",
                                             "numberOfReplicas": 3})
        created = time.time() - t0
        wait("every volume is placed", lambda: all(
            v["status"]["state"] == "detached" for v in api.call("GET", "/v1/volumes")["data"]))
        placed = time.time() - t0
        listing = latencies(api, "/v1/volumes", args.requests)
        floor = latencies(api, "/v1/openapi.json", args.requests)
        body = len(json.dumps(api.call("GET", "/v1/volumes")))
        print(f"== GET /v1/volumes with {args.volumes} volumes ({body / 1024:.0f} KiB), "
              f"{args.requests} keep-alive requests")
        print(f"   p50 {percentile(listing, 50):.1f} ms  p99 {percentile(listing, 99):.1f} ms  "
              f"max {max(listing):.1f} ms   (target: p99 < 50 ms)")
        print(f"   GET /v1/openapi.json (static, same server): p50 {percentile(floor, 50):.2f} ms "
              f"p99 {percentile(floor, 99):.2f} ms")
        print(f"   creating {args.volumes} volumes took {created:.1f} s; placing their "
              f"{3 * args.volumes} replicas {placed:.1f} s in all")

        # 2. 100 attached idle volumes.
        pids = [p.pid for p in procs]
        base_rss = [rss_kib(p) for p in pids]
        names = [f"vol-{i:04d}" for i in range(args.attached)]
        t0 = time.time()
        for i, name in enumerate(names):
            api.call("POST", f"/v1/volumes/{name}/attach", {"node": f"node-{i % 3 + 1}"})

        def all_attached():
            vols = {v["name"]: v for v in api.call("GET", "/v1/volumes")["data"]}
            return all(vols[n]["status"]["state"] == "attached" and
                       vols[n]["status"]["robustness"] == "healthy" for n in names)
        wait(f"{args.attached} volumes are attached and healthy", all_attached)
        attach_s = time.time() - t0
        time.sleep(5)  # let the attach work settle before measuring idle
        before = [cpu_ticks(p) for p in pids]
        t0 = time.time()
        if args.perf:
            subprocess.run(["perf", "record", "-q", "-F", "499", "-g", "-o", args.perf, "-p",
                            ",".join(map(str, pids)), "--", "sleep", str(args.seconds)],
                           check=False)
        else:
            time.sleep(args.seconds)
        elapsed = time.time() - t0
        after = [cpu_ticks(p) for p in pids]
        used = [(a - b) / CLK_TCK / elapsed * 100 for a, b in zip(after, before)]
        rss = [rss_kib(p) for p in pids]
        print(f"== {args.attached} volumes x 3 replicas attached and idle for {args.seconds} s "
              f"(attached in {attach_s:.1f} s)")
        print(f"   CPU, % of one core: manager+node-1 {used[0]:.2f}, node-2 {used[1]:.2f}, "
              f"node-3 {used[2]:.2f}; total {sum(used):.2f}   (target: < 2)")
        per_volume = (sum(rss) - sum(base_rss)) / args.attached
        print(f"   RSS: {sum(base_rss) / 1024:.0f} MiB detached, {sum(rss) / 1024:.0f} MiB attached: "
              f"{per_volume:.0f} KiB per attached volume (engine + 3 replica servers)")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
