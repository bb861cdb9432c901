#!/usr/bin/env python3
"""10,000 alerting rules over 100k series, tocsin beside Prometheus (and vmalert) (called by rules-at-scale.sh).

../shared/peer/target.py serves SERIES series; tocsin scrapes it into its own store and Prometheus
2.42 into its TSDB, both every SCRAPE seconds, and both evaluate the same rule file
(bench_rules.py: RULES alerting rules in groups of PER_GROUP, every INTERVAL seconds). With
--vmalert, a single-node VictoriaMetrics scrapes the target too and vmalert evaluates the same file
against it. tocsin runs pinned to one core (taskset -c CORE, issue 16's "on one core"); the peers
are not pinned. Alerts of all go to one Alertmanager-API sink served here. After a warm-up, one
window measures per daemon: CPU seconds per evaluation cycle and per second (the whole daemon:
scrape, store and rules), RSS mean and max, its own group-duration metric (mean per group
evaluation; summed over the groups per cycle), missed iterations, failed rule evaluations, and the
longest single group evaluation seen (each one's last-duration gauge, sampled every second).
"""
import argparse, json, os, sys, tempfile, threading, time

from bench_rules import rules_yaml
from compare_prometheus import remove_work, free_port, get, metric, wait_http
from vmalert import Launcher, alert_sink, group_stats, measure, print_table, ratio, tocsin_scraper, vmalert_scraper


def prometheus_scraper(port):
    def f():
        m = get(f"http://127.0.0.1:{port}/metrics")
        s, c = group_stats(m, "prometheus_rule_group_duration_seconds_sum",
                           "prometheus_rule_group_duration_seconds_count")
        return (s, c, metric(m, "prometheus_rule_group_iterations_missed_total") or 0.0,
                metric(m, "prometheus_rule_evaluation_failures_total") or 0.0)
    return f


def max_gauge(text, name):
    """Largest sample of `name` in an exposition (None when absent)."""
    best = None
    for line in text.splitlines():
        if line.startswith(name) and line[len(name)] in " {":
            v = float(line.rsplit(" ", 1)[1])
            best = v if best is None else max(best, v)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", type=int, default=10000)
    ap.add_argument("--series", type=int, default=100000)
    ap.add_argument("--scrape-interval", type=int, default=15)
    ap.add_argument("--interval", type=int, default=30, help="evaluation interval of every group, s")
    ap.add_argument("--per-group", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=120)
    ap.add_argument("--window", type=int, default=300)
    ap.add_argument("--core", type=int, default=0, help="the core tocsin is pinned to (-1: not pinned)")
    ap.add_argument("--vmalert", action="store_true", help="also vmalert against a VictoriaMetrics")
    ap.add_argument("--tocsin", required=True)
    ap.add_argument("--peer", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="tocsin-rules-at-scale-")
    run = Launcher(work)
    sink = None
    groups = (a.rules + a.per_group - 1) // a.per_group
    try:
        p_target, p_prom, p_tocsin, p_sink = (free_port() for _ in range(4))
        sink, sunk = alert_sink(p_sink)
        with open(os.path.join(work, "rules.yml"), "w") as f:
            f.write(rules_yaml(a.rules, a.series, f"{a.interval}s", a.per_group))
        control = os.path.join(work, "control.json")
        json.dump({"ready": True, "probe": None, "version": 0}, open(control, "w"))
        run.start("target", [sys.executable, os.path.join(a.peer, "target.py"), "--port", str(p_target),
                             "--series", str(a.series), "--control", control])
        wait_http(f"http://127.0.0.1:{p_target}/health/live")
        timeout = min(a.scrape_interval, 10)
        with open(os.path.join(work, "prometheus.yml"), "w") as f:
            f.write(f"""global:
  scrape_interval: {a.scrape_interval}s
  scrape_timeout: {timeout}s
  evaluation_interval: {a.interval}s
rule_files: [rules.yml]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ['127.0.0.1:{p_sink}']
scrape_configs:
  - job_name: seed
    static_configs:
      - targets: ['127.0.0.1:{p_target}']
""")
        run.start("prometheus", ["prometheus", f"--config.file={work}/prometheus.yml",
                                 f"--storage.tsdb.path={work}/prom-data", f"--web.listen-address=127.0.0.1:{p_prom}",
                                 "--storage.tsdb.retention.time=1d", "--log.level=warn"], cwd=work)
        with open(os.path.join(work, "tocsin.yml"), "w") as f:
            f.write(f"""storage: {{ path: {work}/tocsin-data/tocsin.db }}
scrape: {{ interval: {a.scrape_interval}s, timeout: {timeout}s }}
server: {{ listen: 127.0.0.1:{p_tocsin} }}
log: {{ level: warn }}
evaluation: {{ interval: {a.interval}s }}
rule_files: [rules.yml]
targets:
  - name: seed
    metrics: http://127.0.0.1:{p_target}/metrics
route: {{ receiver: sink }}
receivers:
  - name: sink
    alertmanager: {{ urls: ['http://127.0.0.1:{p_sink}'] }}
""")
        pin = ["taskset", "-c", str(a.core)] if a.core >= 0 else []
        run.start("tocsin", pin + [a.tocsin, "run", "--config", f"{work}/tocsin.yml"], cwd=work)
        scrapers = {"tocsin": tocsin_scraper(p_tocsin), "prometheus": prometheus_scraper(p_prom)}
        gauges = {"tocsin": (p_tocsin, "tocsin_rule_group_last_duration_seconds"),
                  "prometheus": (p_prom, "prometheus_rule_group_last_duration_seconds")}
        if a.vmalert:
            p_vm, p_vmalert = free_port(), free_port()
            with open(os.path.join(work, "scrape.yml"), "w") as f:
                f.write(f"""global:
  scrape_interval: {a.scrape_interval}s
scrape_configs:
  - job_name: seed
    static_configs:
      - targets: ['127.0.0.1:{p_target}']
""")
            os.makedirs(os.path.join(work, "vm"))
            run.start("victoria-metrics", ["victoria-metrics", f"-httpListenAddr=127.0.0.1:{p_vm}",
                                           "-storageDataPath=data", "-search.latencyOffset=1s", "-loggerLevel=WARN",
                                           "-retentionPeriod=100y", f"-promscrape.config={work}/scrape.yml"],
                      cwd=os.path.join(work, "vm"))
            wait_http(f"http://127.0.0.1:{p_vm}/health")
            run.start("vmalert", ["vmalert", f"-httpListenAddr=127.0.0.1:{p_vmalert}",
                                  f"-datasource.url=http://127.0.0.1:{p_vm}", f"-rule={work}/rules.yml",
                                  f"-notifier.url=http://127.0.0.1:{p_sink}", f"-evaluationInterval={a.interval}s",
                                  "-loggerLevel=WARN"], cwd=work)
            wait_http(f"http://127.0.0.1:{p_vmalert}/metrics")
            scrapers["vmalert"] = vmalert_scraper(p_vmalert)
        wait_http(f"http://127.0.0.1:{p_prom}/-/ready", 120)
        wait_http(f"http://127.0.0.1:{p_tocsin}/api/v1/openapi.json", 120)
        print(f"{a.rules} rules in {groups} groups every {a.interval}s over {a.series} series scraped every "
              f"{a.scrape_interval}s; tocsin on core {a.core}; warm-up {a.warmup}s, window {a.window}s", flush=True)
        time.sleep(a.warmup)

        names = list(scrapers)
        procs = {n: run.procs[n] for n in names}
        longest = {n: 0.0 for n in gauges}
        stop = threading.Event()

        def watch_gauges():
            while not stop.wait(1):
                for n, (port, name) in gauges.items():
                    try:
                        v = max_gauge(get(f"http://127.0.0.1:{port}/metrics"), name)
                    except Exception:
                        continue
                    if v is not None:
                        longest[n] = max(longest[n], v)

        watcher = threading.Thread(target=watch_gauges, daemon=True)
        watcher.start()
        dt, cycles, figs = measure(procs, scrapers, a.window, a.interval, groups)
        stop.set()
        watcher.join()
        for n in gauges:
            figs[n]["longest_group_eval_s"] = round(longest[n], 3)
        tm = get(f"http://127.0.0.1:{p_tocsin}/metrics")
        pm = get(f"http://127.0.0.1:{p_prom}/metrics")
        figs["tocsin"]["samples_ingested_total"] = metric(tm, "tocsin_samples_ingested_total")
        figs["prometheus"]["samples_appended_total"] = metric(pm, "prometheus_tsdb_head_samples_appended_total")
        figs["tocsin"]["alerts_firing"] = len(json.loads(get(f"http://127.0.0.1:{p_tocsin}/api/v2/alerts")))
        figs["prometheus"]["alerts_firing"] = sum(
            1 for x in json.loads(get(f"http://127.0.0.1:{p_prom}/api/v1/alerts"))["data"]["alerts"]
            if x.get("state") == "firing")
        if a.vmalert:
            figs["vmalert"]["alerts_firing"] = sum(
                1 for x in json.loads(get(f"http://127.0.0.1:{p_vmalert}/api/v1/alerts"))["data"]["alerts"]
                if x.get("state") == "firing")
        res = {"rules": a.rules, "groups": groups, "series": a.series, "scrape_interval_s": a.scrape_interval,
               "interval_s": a.interval, "tocsin_core": a.core, "window_s": dt, "cycles": cycles,
               "daemons": figs, "sink": dict(sunk),
               "ratios_tocsin_over": {o: {k: ratio(figs["tocsin"][k], figs[o][k])
                                          for k in ("cpu_s_per_cycle", "rss_mean_mb", "rss_max_mb",
                                                    "group_eval_mean_ms", "eval_s_per_cycle")}
                                      for o in names[1:]}}
        print(json.dumps(res, indent=2), flush=True)
        print_table(f"{a.rules} rules / {a.series} series, groups of {a.per_group} every {a.interval}s, scrape "
                    f"{a.scrape_interval}s, window {dt}s; whole-daemon CPU and RSS (vmalert's exclude "
                    f"VictoriaMetrics)", [(str(a.rules), figs)], names)
        for n in gauges:
            print(f"{n}: longest group evaluation in the window {figs[n]['longest_group_eval_s']} s "
                  f"(interval {a.interval} s)")
        os.makedirs(a.out, exist_ok=True)
        out = os.path.join(a.out, f"rules-at-scale-r{a.rules}-n{a.series}.json")
        json.dump(res, open(out, "w"), indent=2)
        print(f"written: {out}")
    finally:
        run.close()
        if sink:
            sink.shutdown()
        remove_work(work)


if __name__ == "__main__":
    main()
