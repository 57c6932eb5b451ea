#!/usr/bin/env python3
"""What authentication costs per API call (issue #17; target: under 0.2 ms at p50).

Two `ironhorn server` processes on this machine, the same build and the same (empty) state:
one with authentication (every call carries an API token, checked against the store), one
started with --no-auth (the gate lets everything through). The same keep-alive requests go
to both, interleaved in rounds so the machine's state affects both alike; the figure is the
difference of the medians, for a read (`GET /v1/settings/default-replica-count`) and for a
refused call (no token: 401).

Usage: bench/auth.py [--requests 4000] [--bin target/release/ironhorn]
"""

import argparse
import http.client
import os
import shutil
import socket
import subprocess
import statistics
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary, work, name, extra):
    port = free_port()
    data = os.path.join(work, name)
    log = open(os.path.join(work, f"{name}.log"), "w")
    proc = subprocess.Popen(
        [binary, "server", "--no-node", "--data-dir", data, "--listen", f"127.0.0.1:{port}", *extra],
        stdout=log, stderr=log)
    deadline = time.time() + 30
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            break
        except OSError:
            if time.time() > deadline:
                raise SystemExit(f"{name} did not start; see {work}/{name}.log")
            time.sleep(0.05)
    token = None
    token_file = os.path.join(data, "admin.token")
    if os.path.exists(token_file):
        with open(token_file) as f:
            token = f.read().strip()
    return proc, port, token


def timed(conn, path, headers):
    t = time.perf_counter()
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    r.read()
    return time.perf_counter() - t, r.status


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--bin", default="target/release/ironhorn")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="ironhorn-auth-bench.", dir="/var/tmp")
    procs = []
    try:
        open_proc, open_port, _ = start(args.bin, work, "open", ["--no-auth"])
        procs.append(open_proc)
        auth_proc, auth_port, token = start(args.bin, work, "auth", [])
        procs.append(auth_proc)
        path = "/v1/settings/default-replica-count"
        with_token = {"Authorization": f"Bearer {token}"}
        open_conn = http.client.HTTPConnection("127.0.0.1", open_port, timeout=10)
        auth_conn = http.client.HTTPConnection("127.0.0.1", auth_port, timeout=10)
        samples = {"open": [], "token": [], "refused": []}
        for _ in range(200):  # warm up
            timed(open_conn, path, {})
            timed(auth_conn, path, with_token)
        for _ in range(args.requests):
            t, s = timed(open_conn, path, {})
            assert s == 200, s
            samples["open"].append(t)
            t, s = timed(auth_conn, path, with_token)
            assert s == 200, s
            samples["token"].append(t)
            t, s = timed(auth_conn, path, {})
            assert s == 401, s
            samples["refused"].append(t)
        p50 = {k: statistics.median(v) * 1000 for k, v in samples.items()}
        print(f"GET {path}, {args.requests} keep-alive requests each, medians:")
        print(f"  no authentication (--no-auth): {p50['open']:.3f} ms")
        print(f"  with an API token:             {p50['token']:.3f} ms")
        print(f"  refused (no token, 401):       {p50['refused']:.3f} ms")
        print(f"authentication adds {p50['token'] - p50['open']:.3f} ms at p50 (target: under 0.2 ms)")
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
