#!/usr/bin/env python3
"""Live check of the shipped rules through the whole daemon, as ../shared/peer/check-alerts.sh
checks Prometheus + Alertmanager: the peer's target.py serves the seed systems' metrics with every
seed condition tripped (5xx 5%, slow latency, queues +200000, lock wait 2 s, readiness failing),
tocsin scrapes it as the seed services (one target per service label), evaluates rules/*.yml
every second and routes every alert to a webhook receiver (the peer's receiver.py) and to an
email receiver (a small SMTP sink in this script, on 127.0.0.1). After WINDOW seconds it prints
which alerts arrived by webhook and by email, and exits non-zero when an expected one is missing.
"""
import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

# the helpers compare-prometheus.sh uses: free ports, readiness polling, /proc CPU, stopping by PID
from compare_prometheus import free_port, stop_all, wait_http

EXPECTED = ["ScaiDNSHigh5xxRatio", "ScaiDNSLatencyP99High", "ScaiSendQueueTooDeep",
            "PdnsConnectorLockWaitHigh", "ScaiDNSNotReady"]


def smtp_sink(port, path):
    """Accepts every message; appends {"recv_ts", "rcpt", "data"} lines to path."""

    async def session(reader, writer):
        def say(line):
            writer.write((line + "\r\n").encode())

        say("220 sink ESMTP")
        rcpt = []
        while True:
            line = await reader.readline()
            if not line:
                break
            cmd = line.decode(errors="replace").strip()
            verb = cmd.split(" ")[0].upper()
            if verb in ("EHLO", "HELO"):
                say("250 sink")
            elif verb == "MAIL":
                rcpt = []
                say("250 ok")
            elif verb == "RCPT":
                rcpt.append(cmd[8:])
                say("250 ok")
            elif verb == "DATA":
                say("354 end with .")
                await writer.drain()
                data = []
                while True:
                    l = await reader.readline()
                    if not l or l in (b".\r\n", b".\n"):
                        break
                    if l.startswith(b".."):
                        l = l[1:]  # dot-stuffing (RFC 5321 4.5.2)
                    data.append(l.decode(errors="replace"))
                with open(path, "a") as f:
                    f.write(json.dumps({"recv_ts": time.time(), "rcpt": rcpt, "data": "".join(data)}) + "\n")
                say("250 queued")
            elif verb == "QUIT":
                say("221 bye")
                await writer.drain()
                break
            else:
                say("250 ok")
            await writer.drain()
        writer.close()

    async def serve():
        server = await asyncio.start_server(session, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    threading.Thread(target=lambda: asyncio.run(serve()), daemon=True).start()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tocsin", required=True)
    ap.add_argument("--peer", required=True)
    ap.add_argument("--rules", required=True)
    ap.add_argument("--window", type=float, default=160)
    ap.add_argument("--out", default="/tmp/tocsin-seed-alerts")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    run = tempfile.mkdtemp(prefix="run-", dir=a.out)
    p_target, p_recv, p_smtp, p_tocsin = free_port(), free_port(), free_port(), free_port()
    control = os.path.join(run, "control.json")
    hooks, mails = os.path.join(run, "webhooks.jsonl"), os.path.join(run, "mails.jsonl")
    base = "http://127.0.0.1:%d" % p_target
    targets = "".join(
        f"""  - name: {svc}
    metrics: {base}/metrics
    health: {base}/health/ready
    labels: {{ service: {svc} }}
""" for svc in ["scaidns", "scaisend", "pdns-connector"])
    with open(os.path.join(run, "tocsin.yml"), "w") as f:
        f.write(f"""storage: {{ path: {run}/tocsin.db }}
scrape: {{ interval: 1s, timeout: 1s }}
evaluation: {{ interval: 1s }}
targets:
{targets}rule_files: [ {a.rules}/*.yml ]
server: {{ listen: 127.0.0.1:{p_tocsin} }}
route: {{ receiver: ops, group_by: [alertname, service], group_wait: 0s, group_interval: 5s }}
receivers:
  - name: ops
    webhook: {{ url: http://127.0.0.1:{p_recv}/webhook }}
    email: {{ to: [ops@example.org], from: tocsin@example.org, smarthost: 127.0.0.1:{p_smtp}, tls: none }}
log: {{ level: warn }}
""")
    procs = []

    def start(cmd, log):
        p = subprocess.Popen(cmd, stdout=open(os.path.join(run, log), "w"), stderr=subprocess.STDOUT)
        procs.append(p)
        return p

    try:
        tripped = {"ready": False, "probe": None, "version": 1, "error_ratio": 0.05, "slow": True,
                   "queue_add": 200000, "lock_wait_avg": 2}
        json.dump(tripped, open(control, "w"))
        smtp_sink(p_smtp, mails)
        start([sys.executable, os.path.join(a.peer, "target.py"), "--port", str(p_target),
               "--series", "1000", "--control", control], "target.log")
        start([sys.executable, os.path.join(a.peer, "receiver.py"), "--port", str(p_recv),
               "--log", hooks], "receiver.log")
        wait_http(base + "/metrics")
        start([a.tocsin, "run", "-c", os.path.join(run, "tocsin.yml")], "tocsin.log")
        wait_http("http://127.0.0.1:%d/api/v1/openapi.json" % p_tocsin)
        time.sleep(a.window)
    finally:
        stop_all(procs, timeout=10)
    by_hook, by_mail = {}, {}
    if os.path.exists(hooks):
        for line in open(hooks):
            for al in json.loads(line).get("alerts", []):
                if al.get("status") == "firing":
                    by_hook.setdefault(al["labels"]["alertname"], set()).add(
                        json.dumps(al["labels"], sort_keys=True))
    if os.path.exists(mails):
        for line in open(mails):
            data = json.loads(line)["data"]
            for l in data.splitlines():
                if l.startswith("Subject: [FIRING"):
                    name = l.split("] ", 1)[1].split(" (")[0]
                    by_mail[name] = by_mail.get(name, 0) + 1
    bad = 0
    for name in EXPECTED:
        ok = name in by_hook and name in by_mail
        bad += not ok
        print("%-28s webhook alerts %d, emails %d  %s" % (
            name, len(by_hook.get(name, ())), by_mail.get(name, 0), "ok" if ok else "MISSING"))
    extra = sorted(set(by_hook) - set(EXPECTED))
    if extra:
        print("also fired:", ", ".join(extra))
    print("%d passed, %d failed (run dir %s)" % (len(EXPECTED) - bad, bad, run))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
