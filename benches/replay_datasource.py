#!/usr/bin/env python3
"""Replay against a remote datasource: rule evaluations per second over a day of history.

Starts victoria-metrics (and prometheus, with blocks made by promtool) on loopback ports with
their data in a temporary directory, writes a day of SERIES series every 15 s into each, and
times `tocsin replay --datasource URL --step 15s` over that day with RULES alerting rules
(one group at 15 s: 5,760 group evaluations, RULES x 5,760 rule evaluations), once per
`--datasource-mode` (range: one query_range per rule, then answered from memory; instant: one
HTTP query per rule and evaluation). Both modes must print the same transitions (checked).
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
import urllib.request

DAY = 86_400_000
STEP = 15_000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ok(url, within=60):
    deadline = time.time() + within
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.2)
    sys.exit(f"{url} did not answer within {within}s")


def values(h0, series):
    """(i, t, v) for each series i: 0, and 5 for 10 minutes in the middle of the day on every
    third series."""
    for k in range(DAY // STEP + 1):
        t = h0 + k * STEP
        for i in range(series):
            incident = i % 3 == 0 and h0 + DAY // 2 <= t < h0 + DAY // 2 + 600_000
            yield i, t, 5.0 if incident else float(i % 2)


def rules_file(path, n):
    lines = ["groups:", "  - name: bench", "    interval: 15s", "    rules:"]
    for r in range(n):
        if r % 2 == 0:
            lines += [f"      - alert: High{r}", f"        expr: bench_value > {1 + r % 4}", "        for: 1m"]
        else:
            lines += [f"      - alert: Rate{r}", f"        expr: max_over_time(bench_value[5m]) > {2 + r % 3}"]
    open(path, "w").write("\n".join(lines) + "\n")


def replay(tocsin, cwd, url, mode, frm, to):
    started = time.time()
    out = subprocess.run(
        [tocsin, "replay", "--rules", "rules.yml", "--datasource", url, "--datasource-mode", mode,
         "--step", "15s", "--format", "json", "--from", str(frm // 1000), "--to", str(to // 1000)],
        cwd=cwd, capture_output=True, text=True)
    secs = time.time() - started
    if out.returncode != 0:
        sys.exit(f"replay {mode} failed: {out.stderr}")
    doc = json.loads(out.stdout)
    return doc, secs, out.stderr


def bench(name, tocsin, cwd, url, frm, to):
    results = {}
    for mode in ("range", "instant"):
        doc, secs, stderr = replay(tocsin, cwd, url, mode, frm, to)
        n = doc["totals"]["rule_evaluations"]
        failed = doc["totals"]["failed"]
        results[mode] = [(t["kind"], t["at_ms"], t["alertname"]) for t in doc["transitions"]]
        print(f"{name:17} {mode:8} {n:>8} rule evaluations in {secs:7.2f}s: {n / secs:>10,.0f}/s "
              f"({failed} failed, {len(results[mode])} transitions)")
        if "range queries failed" in stderr:
            print("   " + stderr.strip().splitlines()[0])
    same = results["range"] == results["instant"]
    print(f"{name:17} range and instant transitions identical: {same}")
    return same


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tocsin", required=True)
    ap.add_argument("--rules", type=int, default=20)
    ap.add_argument("--series", type=int, default=10)
    a = ap.parse_args()
    a.tocsin = os.path.abspath(a.tocsin)
    tmp = tempfile.mkdtemp(prefix="replay-ds-")
    procs = []
    ok = True
    try:
        rules_file(os.path.join(tmp, "rules.yml"), a.rules)
        hour = 3_600_000
        h0 = (int(time.time() * 1000) - DAY - 3 * hour) // hour * hour
        frm, to = h0, h0 + DAY - STEP
        print(f"{a.rules} rules, {a.series} series, a day at 15 s from {h0 // 1000}")
        vm = shutil.which("victoria-metrics")
        if vm:
            port = free_port()
            procs.append(subprocess.Popen(
                [vm, f"-httpListenAddr=127.0.0.1:{port}", "-storageDataPath=vm-data",
                 "-search.latencyOffset=1s", "-search.disableCache", "-loggerLevel=ERROR"],
                cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            url = f"http://127.0.0.1:{port}"
            wait_ok(url + "/health")
            body = "".join(f'bench_value{{series="s{i}"}} {v} {t}\n' for i, t, v in values(h0, a.series))
            req = urllib.request.Request(url + "/api/v1/import/prometheus", data=body.encode(), method="POST")
            urllib.request.urlopen(req).read()
            urllib.request.urlopen(url + "/internal/force_flush").read()
            ok &= bench("victoria-metrics", a.tocsin, tmp, url, frm, to)
        else:
            print("skipping victoria-metrics: not installed (apt install victoria-metrics)")
        prom, promtool = shutil.which("prometheus"), shutil.which("promtool")
        if prom and promtool:
            with open(os.path.join(tmp, "h.om"), "w") as f:
                f.write("# TYPE bench_value gauge\n")
                for i, t, v in values(h0, a.series):
                    f.write(f'bench_value{{series="s{i}"}} {v} {t / 1000:.3f}\n')
                f.write("# EOF\n")
            subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "h.om", "prom-data"],
                           cwd=tmp, check=True, stdout=subprocess.DEVNULL)
            open(os.path.join(tmp, "prometheus.yml"), "w").write("global: {}\n")
            port = free_port()
            procs.append(subprocess.Popen(
                [prom, "--config.file=prometheus.yml", "--storage.tsdb.path=prom-data",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=error"],
                cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            url = f"http://127.0.0.1:{port}"
            wait_ok(url + "/-/ready")
            ok &= bench("prometheus", a.tocsin, tmp, url, frm, to)
        else:
            print("skipping prometheus: prometheus or promtool not installed")
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
