#!/usr/bin/env python3
"""Measure tocsin beside Prometheus on one synthetic target (called by compare-prometheus.sh)."""
import argparse, json, os, shutil, signal, sqlite3, subprocess, sys, tempfile, threading, time, urllib.parse, urllib.request

CLK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK  # utime + stime


def rss_bytes(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def rss_anon_bytes(pid):
    """The anonymous part of the resident set (heap, stacks, modified pages): RSS less the
    file-backed pages (the executable's and libraries' code), which the kernel can drop."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def metric(text, name):
    """Sum of every sample of `name` in an exposition."""
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1] if "}" not in line else line.rsplit("}", 1)[1].split()[0])
            found = True
    return total if found else None


# the seed rule issue 16 times the API with: scaidns's 5xx ratio (../shared/peer/rules/seed.yml)
SEED_QUERY = ('sum by (job, instance) (rate(scaidns_http_requests_total{status=~"5.."}[5m])) / '
              'sum by (job, instance) (rate(scaidns_http_requests_total[5m])) > 0.005')


def timed_get(url, timeout=10):
    """Seconds a GET took to answer in full, or None when it failed."""
    start = time.perf_counter()
    try:
        get(url, timeout)
    except Exception:
        return None
    return time.perf_counter() - start


def quantile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else None


class ApiProbe(threading.Thread):
    """Times the seed rule's `/api/v1/query` and `/health/ready` on each daemon once a second
    while ingest runs (issue 16: p99 under 100 ms at a million series)."""

    def __init__(self, ports):
        super().__init__(daemon=True)
        self.ports, self.stop = ports, threading.Event()
        self.times = {n: {"query": [], "ready": [], "failed": 0} for n in ports}

    def run(self):
        q = urllib.parse.urlencode({"query": SEED_QUERY})
        ready = {"prometheus": "/-/ready", "tocsin": "/health/ready"}
        while not self.stop.wait(1.0):
            for n, port in self.ports.items():
                for kind, path in (("query", f"/api/v1/query?{q}"), ("ready", ready[n])):
                    took = timed_get(f"http://127.0.0.1:{port}{path}")
                    if took is None:
                        self.times[n]["failed"] += 1
                    else:
                        self.times[n][kind].append(took)

    def summary(self, n):
        t = self.times[n]
        ms = lambda v: round(v * 1000, 1) if v is not None else None
        return {"api_query_p50_ms": ms(quantile(t["query"], 0.5)), "api_query_p99_ms": ms(quantile(t["query"], 0.99)),
                "api_query_max_ms": ms(max(t["query"], default=None)), "ready_p99_ms": ms(quantile(t["ready"], 0.99)),
                "api_requests": len(t["query"]) + len(t["ready"]), "api_failed": t["failed"]}


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_http(url, deadline=60):
    end = time.time() + deadline
    while time.time() < end:
        try:
            get(url, 2)
            return
        except Exception:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def stop_all(procs, timeout=30):
    """SIGTERM every process still running, newest first; SIGKILL one not gone within `timeout`."""
    for p in reversed(list(procs)):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()


def remove_work(work):
    """Deletes a run's work directory, unless KEEP=1 asks to keep it (then says where it is)."""
    if os.environ.get("KEEP") != "1":
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept: {work}")


def stop_and_clean(procs, logs, work):
    """The end of a run: its processes stopped, its log files closed, its work directory gone."""
    stop_all(procs)
    for log in logs:
        log.close()
    remove_work(work)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, required=True)
    ap.add_argument("--window", type=int, default=120)
    ap.add_argument("--interval", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--tocsin", required=True)
    ap.add_argument("--peer", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="tocsin-compare-")
    p_target, p_prom, p_tocsin = free_port(), free_port(), free_port()
    procs = {}
    logs = []
    try:
        def start(name, cmd, **kw):
            log = open(os.path.join(work, f"{name}.log"), "w")
            logs.append(log)
            procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, **kw)

        control = os.path.join(work, "control.json")
        json.dump({"ready": True, "probe": None, "version": 0}, open(control, "w"))
        start("target", [sys.executable, os.path.join(a.peer, "target.py"), "--port", str(p_target),
                         "--series", str(a.series), "--control", control])
        wait_http(f"http://127.0.0.1:{p_target}/health/live")
        timeout = min(a.interval, 10)
        with open(os.path.join(work, "prometheus.yml"), "w") as f:
            f.write(f"""global:
  scrape_interval: {a.interval}s
  scrape_timeout: {timeout}s
scrape_configs:
  - job_name: seed
    static_configs:
      - targets: ['127.0.0.1:{p_target}']
""")
        prom_data = os.path.join(work, "prom-data")
        start("prometheus", ["prometheus", f"--config.file={work}/prometheus.yml", f"--storage.tsdb.path={prom_data}",
                             f"--web.listen-address=127.0.0.1:{p_prom}", "--web.enable-admin-api",
                             "--storage.tsdb.retention.time=1d", "--log.level=warn"])
        # Prometheus scrapes without a sample or body limit by default; tocsin's defaults (200,000
        # samples, 32 MiB) would refuse a million series, so both run unbounded here
        with open(os.path.join(work, "tocsin.yml"), "w") as f:
            f.write(f"""storage: {{ path: {work}/tocsin-data/tocsin.db }}
scrape: {{ interval: {a.interval}s, timeout: {timeout}s, sample_limit: {max(200_000, 2 * a.series)}, body_size_limit: 1GiB }}
server: {{ listen: 127.0.0.1:{p_tocsin} }}
log: {{ level: warn }}
targets:
  - name: seed
    metrics: http://127.0.0.1:{p_target}/metrics
""")
        start("tocsin", [a.tocsin, "run", "--config", f"{work}/tocsin.yml"])
        wait_http(f"http://127.0.0.1:{p_prom}/-/ready")
        wait_http(f"http://127.0.0.1:{p_tocsin}/api/v1/openapi.json")
        print(f"warm-up {a.warmup}s: N={a.series} interval={a.interval}s", flush=True)
        time.sleep(a.warmup)

        def snapshot():
            prom_m = get(f"http://127.0.0.1:{p_prom}/metrics")
            toc_m = get(f"http://127.0.0.1:{p_tocsin}/metrics")
            return {
                "t": time.time(),
                "cpu": {n: cpu_seconds(procs[n].pid) for n in ("prometheus", "tocsin")},
                "samples": {"prometheus": metric(prom_m, "prometheus_tsdb_head_samples_appended_total"),
                            "tocsin": metric(toc_m, "tocsin_samples_ingested_total")},
                "disk": {"prometheus": dir_bytes(prom_data), "tocsin": dir_bytes(f"{work}/tocsin-data")},
            }

        s0 = snapshot()
        probe = ApiProbe({"prometheus": p_prom, "tocsin": p_tocsin})
        probe.start()
        rss = {"prometheus": [], "tocsin": []}
        anon = {"prometheus": [], "tocsin": []}
        end = time.time() + a.window
        while time.time() < end:
            for n in rss:
                rss[n].append(rss_bytes(procs[n].pid))
                anon[n].append(rss_anon_bytes(procs[n].pid))
            time.sleep(1)
        probe.stop.set()
        probe.join()
        s1 = snapshot()
        # whether scrapes kept up: the slowest scrape of the window beside the interval, by each
        # daemon's own `scrape_duration_seconds`
        slowest = {}
        for n, port in (("prometheus", p_prom), ("tocsin", p_tocsin)):
            q = urllib.parse.urlencode({"query": f'max_over_time(scrape_duration_seconds{{job="seed"}}[{int(s1["t"] - s0["t"])}s])'})
            try:
                r = json.loads(get(f"http://127.0.0.1:{port}/api/v1/query?{q}", 60))["data"]["result"]
                slowest[n] = round(float(r[0]["value"][1]), 3) if r else None
            except Exception:
                slowest[n] = None
        dt = s1["t"] - s0["t"]
        res = {"series": a.series, "interval_s": a.interval, "window_s": round(dt, 1), "daemons": {}}
        for n in ("prometheus", "tocsin"):
            samples = s1["samples"][n] - s0["samples"][n]
            res["daemons"][n] = {
                "cpu_s_per_s": round((s1["cpu"][n] - s0["cpu"][n]) / dt, 4),
                "rss_mean_mb": round(sum(rss[n]) / len(rss[n]) / 2**20, 1),
                "rss_max_mb": round(max(rss[n]) / 2**20, 1),
                "rss_anon_mean_mb": round(sum(anon[n]) / len(anon[n]) / 2**20, 1),
                "samples_per_s": round(samples / dt),
                "disk_growth_bytes_per_sample": round((s1["disk"][n] - s0["disk"][n]) / samples, 3) if samples else None,
                # samples ingested against what the target's series at the interval would give
                "keep_up": round(samples / dt / (a.series / a.interval), 3),
                "slowest_scrape_s": slowest[n],
                **probe.summary(n),
            }
        # compacted figures: Prometheus's snapshot block and tocsin's chunks after a clean stop
        snap = json.loads(urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{p_prom}/api/v1/admin/tsdb/snapshot", method="POST"), timeout=120).read())
        sdir = os.path.join(prom_data, "snapshots", snap["data"]["name"])
        blocks = [os.path.join(sdir, b) for b in os.listdir(sdir) if os.path.isdir(os.path.join(sdir, b))]
        bsamples = sum(json.load(open(os.path.join(b, "meta.json")))["stats"]["numSamples"] for b in blocks)
        bbytes = sum(dir_bytes(b) for b in blocks)
        res["daemons"]["prometheus"]["block_bytes_per_sample"] = round(bbytes / bsamples, 3) if bsamples else None
        procs["tocsin"].send_signal(signal.SIGTERM)
        procs["tocsin"].wait(timeout=60)
        db = sqlite3.connect(f"{work}/tocsin-data/tocsin.db")
        cbytes, csamples, overhead = 0, 0, 0
        for (data,) in db.execute("SELECT data FROM chunks"):
            cbytes += len(data)
            csamples += int.from_bytes(data[:2], "big") & 0x7FFF  # top bit: a decimal chunk
        db.close()
        res["daemons"]["tocsin"]["chunk_bytes_per_sample"] = round(cbytes / csamples, 3) if csamples else None
        res["daemons"]["tocsin"]["file_bytes_per_sample"] = round(
            dir_bytes(f"{work}/tocsin-data") / csamples, 3) if csamples else None
        p, t = res["daemons"]["prometheus"], res["daemons"]["tocsin"]
        res["ratios_tocsin_over_prometheus"] = {
            "cpu": round(t["cpu_s_per_s"] / p["cpu_s_per_s"], 3) if p["cpu_s_per_s"] else None,
            "rss_mean": round(t["rss_mean_mb"] / p["rss_mean_mb"], 3),
            "rss_max": round(t["rss_max_mb"] / p["rss_max_mb"], 3),
            "rss_anon_mean": round(t["rss_anon_mean_mb"] / p["rss_anon_mean_mb"], 3),
            "samples_per_s": round(t["samples_per_s"] / p["samples_per_s"], 3) if p["samples_per_s"] else None,
            "compacted_bytes_per_sample": round(t["chunk_bytes_per_sample"] / p["block_bytes_per_sample"], 3)
            if t.get("chunk_bytes_per_sample") and p.get("block_bytes_per_sample") else None,
        }
        # printed first: a run is minutes long, and its figures must survive a bad --out
        print(json.dumps(res, indent=2))
        os.makedirs(a.out, exist_ok=True)
        out = os.path.join(a.out, f"compare-n{a.series}-i{a.interval}.json")
        with open(out, "w") as f:
            json.dump(res, f, indent=2)
        print(f"written: {out}")
    finally:
        stop_and_clean(procs.values(), logs, work)


if __name__ == "__main__":
    main()
