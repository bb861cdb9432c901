#!/usr/bin/env python3
"""Remote write throughput, tocsin beside Prometheus (called by remote-write.sh)."""
import argparse, json, os, signal, sqlite3, subprocess, sys, tempfile, time

from compare_prometheus import stop_and_clean, cpu_seconds, rss_bytes, get, metric, free_port, wait_http


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, required=True)
    ap.add_argument("--window", type=int, default=60)
    ap.add_argument("--interval", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--tocsin", required=True)
    ap.add_argument("--peer", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="tocsin-rw-")
    p_target, p_prom, p_tocsin, p_vm_t, p_vm_p = (free_port() for _ in range(5))
    procs, logs = {}, []
    try:
        def start(name, cmd, **kw):
            log = open(os.path.join(work, f"{name}.log"), "w")
            logs.append(log)
            procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, **kw)

        control = os.path.join(work, "control.json")
        json.dump({"ready": True, "probe": None, "version": 0}, open(control, "w"))
        start("target", [sys.executable, os.path.join(a.peer, "target.py"), "--port", str(p_target),
                         "--series", str(a.series), "--control", control])
        for name, port in (("vm-tocsin", p_vm_t), ("vm-prometheus", p_vm_p)):
            os.makedirs(os.path.join(work, name))
            start(name, ["victoria-metrics", f"-httpListenAddr=127.0.0.1:{port}", "-storageDataPath=data",
                         "-loggerLevel=WARN", "-retentionPeriod=100y"], cwd=os.path.join(work, name))
        wait_http(f"http://127.0.0.1:{p_target}/health/live")
        wait_http(f"http://127.0.0.1:{p_vm_t}/health")
        wait_http(f"http://127.0.0.1:{p_vm_p}/health")
        timeout = min(a.interval, 10)
        with open(os.path.join(work, "prometheus.yml"), "w") as f:
            f.write(f"""global:
  scrape_interval: {a.interval}s
  scrape_timeout: {timeout}s
scrape_configs:
  - job_name: seed
    static_configs:
      - targets: ['127.0.0.1:{p_target}']
remote_write:
  - url: http://127.0.0.1:{p_vm_p}/api/v1/write
""")
        start("prometheus", ["prometheus", f"--config.file={work}/prometheus.yml",
                             f"--storage.tsdb.path={work}/prom-data",
                             f"--web.listen-address=127.0.0.1:{p_prom}",
                             "--storage.tsdb.retention.time=1d", "--log.level=warn"])
        with open(os.path.join(work, "tocsin.yml"), "w") as f:
            f.write(f"""storage: {{ path: {work}/tocsin-data/tocsin.db }}
scrape: {{ interval: {a.interval}s, timeout: {timeout}s }}
server: {{ listen: 127.0.0.1:{p_tocsin} }}
log: {{ level: warn }}
targets:
  - name: seed
    metrics: http://127.0.0.1:{p_target}/metrics
remote_write:
  - name: vm
    url: http://127.0.0.1:{p_vm_t}/api/v1/write
""")
        start("tocsin", [a.tocsin, "run", "--config", f"{work}/tocsin.yml"])
        wait_http(f"http://127.0.0.1:{p_prom}/-/ready")
        wait_http(f"http://127.0.0.1:{p_tocsin}/api/v1/openapi.json")
        print(f"warm-up {a.warmup}s: N={a.series} interval={a.interval}s", flush=True)
        time.sleep(a.warmup)

        def snapshot():
            prom_m = get(f"http://127.0.0.1:{p_prom}/metrics")
            toc_m = get(f"http://127.0.0.1:{p_tocsin}/metrics")
            vm_t = get(f"http://127.0.0.1:{p_vm_t}/metrics")
            vm_p = get(f"http://127.0.0.1:{p_vm_p}/metrics")
            prom_sent = metric(prom_m, "prometheus_remote_storage_samples_total")
            if prom_sent is None:
                prom_sent = metric(prom_m, "prometheus_remote_storage_succeeded_samples_total")
            return {
                "t": time.time(),
                "cpu": {n: cpu_seconds(procs[n].pid) for n in ("prometheus", "tocsin")},
                "sent": {"prometheus": prom_sent or 0.0,
                         "tocsin": metric(toc_m, "tocsin_remote_write_samples_sent_total") or 0.0},
                "received": {"prometheus": metric(vm_p, "vm_rows_inserted_total") or 0.0,
                             "tocsin": metric(vm_t, "vm_rows_inserted_total") or 0.0},
                "pending": {"prometheus": metric(prom_m, "prometheus_remote_storage_samples_pending"),
                            "tocsin": metric(toc_m, "tocsin_remote_write_samples_pending")},
            }

        s0 = snapshot()
        rss = {"prometheus": [], "tocsin": []}
        end = time.time() + a.window
        while time.time() < end:
            for n in rss:
                rss[n].append(rss_bytes(procs[n].pid))
            time.sleep(1)
        s1 = snapshot()
        dt = s1["t"] - s0["t"]
        res = {"series": a.series, "interval_s": a.interval, "window_s": round(dt, 1), "daemons": {}}
        for n in ("prometheus", "tocsin"):
            sent = s1["sent"][n] - s0["sent"][n]
            cpu = s1["cpu"][n] - s0["cpu"][n]
            res["daemons"][n] = {
                "samples_sent_per_s": round(sent / dt),
                "samples_received_per_s": round((s1["received"][n] - s0["received"][n]) / dt),
                "cpu_s_per_s": round(cpu / dt, 4),
                "cpu_s_per_million_sent": round(cpu / sent * 1e6, 3) if sent else None,
                "rss_mean_mb": round(sum(rss[n]) / len(rss[n]) / 2**20, 1),
                "rss_max_mb": round(max(rss[n]) / 2**20, 1),
                "pending_at_end": s1["pending"][n],
            }
        # tocsin's queue on disk (while it runs: what waits; read-only look at the file)
        db = sqlite3.connect(f"file:{work}/tocsin-data/tocsin.db?mode=ro", uri=True)
        qbytes, qrows, qsamples = db.execute(
            "SELECT coalesce(sum(length(data)),0), count(*), coalesce(sum(samples),0) FROM rw_queue").fetchone()
        db.close()
        res["daemons"]["tocsin"]["rw_queue"] = {"bytes": qbytes, "rows": qrows, "samples": qsamples,
                                                "bytes_per_sample": round(qbytes / qsamples, 2) if qsamples else None}
        p, t = res["daemons"]["prometheus"], res["daemons"]["tocsin"]
        res["ratios_tocsin_over_prometheus"] = {
            "samples_sent_per_s": round(t["samples_sent_per_s"] / p["samples_sent_per_s"], 3) if p["samples_sent_per_s"] else None,
            "cpu": round(t["cpu_s_per_s"] / p["cpu_s_per_s"], 3) if p["cpu_s_per_s"] else None,
            "cpu_per_sample_sent": round(t["cpu_s_per_million_sent"] / p["cpu_s_per_million_sent"], 3)
            if t["cpu_s_per_million_sent"] and p["cpu_s_per_million_sent"] else None,
            "rss_mean": round(t["rss_mean_mb"] / p["rss_mean_mb"], 3),
            "rss_max": round(t["rss_max_mb"] / p["rss_max_mb"], 3),
        }
        print(json.dumps(res, indent=2), flush=True)
        os.makedirs(a.out, exist_ok=True)
        out = os.path.join(a.out, f"remote-write-n{a.series}-i{a.interval}.json")
        json.dump(res, open(out, "w"), indent=2)
        print(f"written: {out}")
    finally:
        stop_and_clean(procs.values(), logs, work)


if __name__ == "__main__":
    main()
