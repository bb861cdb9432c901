#!/usr/bin/env python3
"""Series churn benchmark (called by churn.sh): RSS over time under 1,000 new series a second."""
import argparse, json, os, signal, subprocess, sys, tempfile, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from compare_prometheus import remove_work, free_port, get, metric, rss_bytes, wait_http


def churn_target(rate, port):
    """A /metrics endpoint whose `rate` series are all replaced every second: the `id` label is
    the second's number times `rate` plus the series' index, so ids never repeat."""

    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/metrics":
                self.send_response(404)
                self.end_headers()
                return
            sec = int(time.time())
            base = sec * rate
            body = "".join(
                f'churn_requests_total{{pod="pod-{(base + i) // 10}",id="{base + i}"}} {i}\n' for i in range(rate)
            )
            body += f"churn_stable_gauge {sec}\n"
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", port), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def timed(cmd):
    """Runs `cmd` under a small wrapper process (so its peak RSS is its own, not the daemon's, which
    is also a child of this script); returns (seconds, peak RSS in MB, stdout)."""
    wrap = ("import resource, subprocess, sys\n"
            "p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)\n"
            "sys.stdout.write(p.stdout)\n"
            "sys.stderr.write(p.stderr)\n"
            "sys.stderr.write('\\npeak_kb=%d\\n' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
            "sys.exit(p.returncode)\n")
    t0 = time.time()
    p = subprocess.run([sys.executable, "-c", wrap] + cmd, capture_output=True, text=True)
    dt = time.time() - t0
    peak = None
    for line in p.stderr.splitlines():
        if line.startswith("peak_kb="):
            peak = int(line.split("=")[1]) / 1024
    if p.returncode != 0:
        print(f"{cmd}: exit {p.returncode}: {p.stderr.strip()}", file=sys.stderr)
    return dt, peak, p.stdout.strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--tocsin", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--sample-every", type=float, default=10, help="seconds between RSS samples")
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="tocsin-churn-")
    p_target, p_tocsin = free_port(), free_port()
    srv = churn_target(a.rate, p_target)
    db = f"{work}/data/tocsin.db"
    with open(f"{work}/tocsin.yml", "w") as f:
        f.write(f"""storage: {{ path: {db} }}
scrape: {{ interval: 1s, timeout: 1s }}
server: {{ listen: 127.0.0.1:{p_tocsin} }}
log: {{ level: warn }}
targets:
  - name: churn
    metrics: http://127.0.0.1:{p_target}/metrics
""")
    log = open(f"{work}/tocsin.log", "w")
    proc = subprocess.Popen([a.tocsin, "run", "--config", f"{work}/tocsin.yml"], stdout=log, stderr=subprocess.STDOUT)
    rows = []
    res = {"minutes": a.minutes, "rate_per_s": a.rate, "binary": a.tocsin}
    try:
        wait_http(f"http://127.0.0.1:{p_tocsin}/api/v1/openapi.json")
        start = time.time()
        end = start + a.minutes * 60
        print(f"{'min':>6} {'rss_mb':>8} {'head_series':>12}", flush=True)
        while True:
            now = time.time()
            try:
                head = metric(get(f"http://127.0.0.1:{p_tocsin}/metrics"), "tocsin_store_series")
            except Exception:
                head = None
            row = {"t_min": round((now - start) / 60, 2), "rss_mb": round(rss_bytes(proc.pid) / 2**20, 1),
                   "head_series": head}
            rows.append(row)
            print(f"{row['t_min']:>6} {row['rss_mb']:>8} {str(int(head)) if head is not None else '-':>12}", flush=True)
            if now >= end:
                break
            time.sleep(min(a.sample_every, max(0.0, end - now)))
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        srv.shutdown()
        res["rss_mb"] = rows
        tail = [r["rss_mb"] for r in rows if r["t_min"] >= min(10, a.minutes / 2)]
        res["rss_max_mb"] = max(r["rss_mb"] for r in rows)
        res["rss_last_mb"] = rows[-1]["rss_mb"]
        if tail:
            res["rss_second_half_min_max_mb"] = [min(tail), max(tail)]
        import sqlite3
        c = sqlite3.connect(db)
        res["series_rows"] = c.execute("SELECT count(*) FROM series").fetchone()[0]
        c.close()
        res["db_bytes"] = sum(os.path.getsize(os.path.join(f"{work}/data", n)) for n in os.listdir(f"{work}/data"))
        # read-only CLI on the store left behind: a query over the live tail and one over everything
        q = {}
        for name, expr in (("stable_now", "churn_stable_gauge"),
                           ("count_last_5m", "count(count_over_time(churn_requests_total[5m]))")):
            secs, peak, out = timed([a.tocsin, "query", "--db", db, expr])
            q[name] = {"seconds": round(secs, 3), "peak_rss_mb": round(peak, 1) if peak else None,
                       "output": out[:200]}
        res["tocsin_query"] = q
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
        remove_work(work)
    out = os.path.join(a.out, f"churn-{a.minutes:g}m.json")
    json.dump(res, open(out, "w"), indent=2)
    summary = {k: v for k, v in res.items() if k != "rss_mb"}
    print(json.dumps(summary, indent=2))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
