#!/usr/bin/env python3
"""Condition -> webhook latency of tocsin, measured the way ../shared/peer/measure.py measures
Prometheus + Alertmanager, so the two figures compare.

Starts the peer's synthetic target (target.py, steered by a control file) and webhook receiver
(receiver.py), and tocsin scraping the target and evaluating the peer's harness rule
(PeerLatencyProbe, no `for`) every INTERVAL, routing to the receiver with group_by
[alertname, cycle], group_wait 0s, group_interval 5s (the peer's AM_GROUP_WAIT / AM_GROUP_INTERVAL).
Each cycle, at a random phase: the control file sets a new `cycle` (t0), the script waits for the
receiver's firing webhook of that cycle (t1), latency = t1 - t0; then the trigger is removed.
Everything listens on 127.0.0.1 and is stopped by PID at the end.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

# the helpers compare-prometheus.sh uses: free ports, readiness polling, /proc CPU, stopping by PID
from compare_prometheus import cpu_seconds, free_port, stop_all, wait_http


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tocsin", required=True)
    ap.add_argument("--peer", required=True)
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--cycles", type=int, default=40)
    ap.add_argument("--out", default="/tmp/tocsin-latency")
    # the scrape's place in its interval is hashed from the target's URL, port included, and the
    # latency depends on where it falls against the rule group's slot (up to one interval): two
    # binaries compare only on the same port (a free port each run otherwise)
    ap.add_argument("--target-port", type=int, default=0)
    a = ap.parse_args()
    sys.path.insert(0, a.peer)
    import measure  # the peer's Control and WebhookLog: same control file and log handling

    os.makedirs(a.out, exist_ok=True)
    run = tempfile.mkdtemp(prefix="run-", dir=a.out)
    p_target, p_recv, p_tocsin = a.target_port or free_port(), free_port(), free_port()
    control = os.path.join(run, "control.json")
    hooks = os.path.join(run, "webhooks.jsonl")
    iv = "%dms" % int(a.interval * 1000)
    with open(os.path.join(run, "tocsin.yml"), "w") as f:
        f.write(f"""storage: {{ path: {run}/tocsin.db }}
scrape: {{ interval: {iv}, timeout: {iv} }}
evaluation: {{ interval: {iv} }}
targets:
  - name: seed
    metrics: http://127.0.0.1:{p_target}/metrics
rule_files: [ {a.peer}/rules/harness.yml ]
server: {{ listen: 127.0.0.1:{p_tocsin} }}
route: {{ receiver: peer, group_by: [alertname, cycle], group_wait: 0s, group_interval: 5s }}
receivers:
  - name: peer
    webhook: {{ url: http://127.0.0.1:{p_recv}/webhook }}
log: {{ level: warn }}
""")
    procs = []

    def start(cmd, log):
        p = subprocess.Popen(cmd, stdout=open(os.path.join(run, log), "w"), stderr=subprocess.STDOUT)
        procs.append(p)
        return p

    try:
        json.dump({"ready": True, "probe": None, "version": 0}, open(control, "w"))
        start([sys.executable, os.path.join(a.peer, "target.py"), "--port", str(p_target),
               "--series", str(a.series), "--control", control], "target.log")
        start([sys.executable, os.path.join(a.peer, "receiver.py"), "--port", str(p_recv),
               "--log", hooks], "receiver.log")
        wait_http("http://127.0.0.1:%d/metrics" % p_target)
        tocsin = start([a.tocsin, "run", "-c", os.path.join(run, "tocsin.yml")], "tocsin.log")
        wait_http("http://127.0.0.1:%d/api/v1/openapi.json" % p_tocsin)
        time.sleep(5 * a.interval)  # warm-up: a few scrapes and evaluations
        ctl = measure.Control(control)
        wlog = measure.WebhookLog(hooks)
        rng = random.Random(42)
        lat, missing = [], 0
        cpu0, t_start = cpu_seconds(tocsin.pid), time.time()
        for n in range(a.cycles):
            time.sleep(rng.uniform(0, a.interval))
            cycle = "lat-%d" % n
            _, t0 = ctl.write(probe=cycle)
            hook = wlog.wait_for(("PeerLatencyProbe", cycle, "firing"), t0, t0 + 4 * a.interval + 15)
            if hook:
                lat.append(hook[0] - t0)
            else:
                missing += 1
            ctl.write(probe=None)
            time.sleep(a.interval * 1.5)
        cpu = (cpu_seconds(tocsin.pid) - cpu0) / (time.time() - t_start)
        result = {
            "series": a.series, "interval_s": a.interval, "cycles": a.cycles,
            "without_webhook": missing,
            "latency_s": {"median": measure.med(lat), "p90": measure.pct(lat, 0.9),
                          "min": min(lat) if lat else None, "max": max(lat) if lat else None},
            "tocsin_cpu_per_s": cpu, "run": run,
        }
        json.dump(result, open(os.path.join(run, "result.json"), "w"), indent=1)
        print(json.dumps(result, indent=1))
    finally:
        stop_all(procs, timeout=10)



if __name__ == "__main__":
    main()
