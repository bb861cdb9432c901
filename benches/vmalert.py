#!/usr/bin/env python3
"""tocsin beside vmalert evaluating the same rules against the same VictoriaMetrics (called by vmalert.sh).

One victoria-metrics single node (`-search.latencyOffset=1s`) scrapes ../shared/peer/target.py
(`-promscrape.config`); after a fill period, for each size, tocsin (`run`, every group
`datasource: vm`) and vmalert (`-datasource.url`, `-rule=`) are started side by side on the rules
bench_rules.py writes (the same file but for tocsin's `datasource:` line), both send their alerts to
one Alertmanager-API sink served here (tocsin through an `alertmanager` receiver, vmalert through
`-notifier.url`), and are measured over the same window: CPU seconds per evaluation cycle (process
CPU from /proc over the window / the cycles the window holds), RSS mean and max, each one's own
group-duration metric (tocsin_rule_group_duration_seconds, vmalert_iteration_duration_seconds:
mean per group evaluation, and summed over the groups per cycle: groups run concurrently, so this
sum can exceed the interval), missed iterations, failed rule evaluations, the most threads seen, and
the alerts firing at the end (the same in both when they agree). Both are stopped before the next size.
"""
import argparse, json, os, subprocess, sys, tempfile, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bench_rules import rules_yaml
from compare_prometheus import remove_work, cpu_seconds, free_port, get, metric, rss_bytes, stop_all, wait_http


def alert_sink(port):
    """An Alertmanager API v2 stand-in: answers every POST with 200 and counts them (and the
    alerts in them); anything else 200 `{}` too (tocsin and vmalert only POST /api/v2/alerts)."""
    counts = {"posts": 0, "alerts": 0}

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            counts["posts"] += 1
            try:
                counts["alerts"] += len(json.loads(body))
            except ValueError:
                pass
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        do_GET = do_POST

        def log_message(self, *a):
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address):
            pass  # a sender closing its idle keep-alive connection (a reset) is no error here

    srv = Server(("127.0.0.1", port), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, counts


def group_stats(text, prefix_sum, prefix_count):
    """(sum of durations, number of evaluations) over every group in an exposition."""
    return metric(text, prefix_sum) or 0.0, metric(text, prefix_count) or 0.0


class Launcher:
    """Starts processes with their output in `work`/NAME.log and remembers them for stop_all."""

    def __init__(self, work):
        self.work, self.procs, self.logs = work, {}, []

    def start(self, name, cmd, **kw):
        log = open(os.path.join(self.work, f"{name}.log"), "w")
        self.logs.append(log)
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, **kw)
        return self.procs[name]

    def stop(self, *names):
        stop_all([self.procs.pop(n) for n in names if n in self.procs])

    def close(self):
        stop_all(self.procs.values())
        for log in self.logs:
            log.close()


def thread_count(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def measure(procs, scrape, window, interval_s, groups):
    """Samples RSS once a second over `window` seconds; returns per-daemon figures. `scrape[name]`
    returns (duration sum, evaluations, missed, failures) from the daemon's own metrics."""
    t0 = time.time()
    s0 = {n: scrape[n]() for n in procs}
    c0 = {n: cpu_seconds(p.pid) for n, p in procs.items()}
    rss = {n: [] for n in procs}
    anon = {n: [] for n in procs}
    threads = {n: 0 for n in procs}
    end = t0 + window
    while time.time() < end:
        for n, p in procs.items():
            rss[n].append(rss_bytes(p.pid))
            anon[n].append(anon_bytes(p.pid))
            threads[n] = max(threads[n], thread_count(p.pid))
        time.sleep(1)
    c1 = {n: cpu_seconds(p.pid) for n, p in procs.items()}
    s1 = {n: scrape[n]() for n in procs}
    dt = time.time() - t0
    cycles = dt / interval_s
    res = {}
    for n in procs:
        dsum, dcount = s1[n][0] - s0[n][0], s1[n][1] - s0[n][1]
        cpu = c1[n] - c0[n]
        res[n] = {
            "cpu_s_per_cycle": round(cpu / cycles, 4),
            "cpu_s_per_s": round(cpu / dt, 4),
            "rss_mean_mb": round(sum(rss[n]) / len(rss[n]) / 2**20, 1),
            "rss_max_mb": round(max(rss[n]) / 2**20, 1),
            # RSS without the file pages (the binary's code and data, shared and evictable):
            # what each daemon allocated
            "anon_mean_mb": round(sum(anon[n]) / len(anon[n]) / 2**20, 1),
            "threads_max": threads[n],
            "group_evaluations": int(dcount),
            "group_eval_mean_ms": round(dsum / dcount * 1000, 2) if dcount else None,
            "eval_s_per_cycle": round(dsum / (dcount / groups), 3) if dcount else None,
            "missed": int(s1[n][2] - s0[n][2]),
            "missed_since_start": int(s1[n][2]),
            "failed_rule_evals": int(s1[n][3] - s0[n][3]),
        }
    return round(dt, 1), round(cycles, 2), res


def anon_bytes(pid):
    """RssAnon of /proc/PID/status: resident memory that is not a file's pages."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def print_table(title, rows, names):
    """rows: list of (label, {name: figures}); prints a table of the main figures with the ratios
    of names[0] over each of the others."""
    keys = [("cpu_s_per_cycle", "CPU s/cycle"), ("rss_mean_mb", "RSS mean MB"), ("rss_max_mb", "RSS max MB"),
            ("anon_mean_mb", "anon RSS MB"), ("threads_max", "threads max"), ("group_eval_mean_ms", "group eval ms"),
            ("eval_s_per_cycle", "group s/cycle"), ("missed", "missed"), ("failed_rule_evals", "failed"),
            ("alerts_firing", "alerts firing")]
    print(f"\n{title}")
    head = (f"{'':>8} | {'figure':<14} | " + " | ".join(f"{n:>12}" for n in names)
            + "".join(f" | {names[0][:6] + '/' + o[:6]:>13}" for o in names[1:]))
    print(head)
    print("-" * len(head))
    for label, figs in rows:
        for k, name in keys:
            vals = [figs[n].get(k) for n in names]
            counts = ("missed", "failed_rule_evals", "threads_max", "alerts_firing")
            rs = [ratio(vals[0], v) if k not in counts else ""
                  for v in vals[1:]]
            print(f"{label:>8} | {name:<14} | " + " | ".join(f"{str(v):>12}" for v in vals)
                  + "".join(f" | {str(r):>13}" for r in rs))


def tocsin_scraper(port):
    def f():
        m = get(f"http://127.0.0.1:{port}/metrics")
        s, c = group_stats(m, "tocsin_rule_group_duration_seconds_sum", "tocsin_rule_group_duration_seconds_count")
        return (s, c, metric(m, "tocsin_rule_group_iterations_missed_total") or 0.0,
                metric(m, "tocsin_rule_evaluation_failures_total") or 0.0)
    return f


def vmalert_scraper(port):
    def f():
        m = get(f"http://127.0.0.1:{port}/metrics")
        s, c = group_stats(m, "vmalert_iteration_duration_seconds_sum", "vmalert_iteration_duration_seconds_count")
        return (s, c, metric(m, "vmalert_iteration_missed_total") or 0.0,
                metric(m, "vmalert_execution_errors_total") or 0.0)
    return f


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100,1000,10000", help="rule counts, comma-separated")
    ap.add_argument("--series", type=int, default=100000)
    ap.add_argument("--scrape-interval", type=int, default=15, help="VictoriaMetrics' scrape interval, s")
    ap.add_argument("--interval", type=int, default=15, help="evaluation interval of every group, s")
    ap.add_argument("--fill", type=int, default=60, help="seconds VictoriaMetrics scrapes before the first size")
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--window", type=int, default=90)
    ap.add_argument("--per-group", type=int, default=100)
    ap.add_argument("--tocsin-extra", default="",
                    help="YAML appended to tocsin's configuration, for experiments (e.g. 'scrape: {self_metrics: false}')")
    ap.add_argument("--tocsin", required=True, type=os.path.abspath,
                    help="the binary; a relative path is taken from the current directory")
    ap.add_argument("--peer", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]

    work = tempfile.mkdtemp(prefix="tocsin-vmalert-")
    run = Launcher(work)
    sink = None
    results = {"series": a.series, "scrape_interval_s": a.scrape_interval, "interval_s": a.interval,
               "window_s": a.window, "per_group": a.per_group, "sizes": {}}
    try:
        p_target, p_vm, p_sink = free_port(), free_port(), free_port()
        sink, sunk = alert_sink(p_sink)
        control = os.path.join(work, "control.json")
        json.dump({"ready": True, "probe": None, "version": 0}, open(control, "w"))
        run.start("target", [sys.executable, os.path.join(a.peer, "target.py"), "--port", str(p_target),
                             "--series", str(a.series), "--control", control])
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
        wait_http(f"http://127.0.0.1:{p_target}/health/live")
        wait_http(f"http://127.0.0.1:{p_vm}/health")
        print(f"fill {a.fill}s: victoria-metrics scrapes {a.series} series every {a.scrape_interval}s", flush=True)
        time.sleep(a.fill)
        vm_rows = metric(get(f"http://127.0.0.1:{p_vm}/metrics"), "vm_rows_inserted_total")
        print(f"victoria-metrics rows inserted: {vm_rows}", flush=True)

        rows = []
        for n in sizes:
            d = os.path.join(work, f"r{n}")
            os.makedirs(d)
            with open(os.path.join(d, "rules.yml"), "w") as f:
                f.write(rules_yaml(n, a.series, f"{a.interval}s", a.per_group))
            with open(os.path.join(d, "rules-tocsin.yml"), "w") as f:
                f.write(rules_yaml(n, a.series, f"{a.interval}s", a.per_group, datasource="vm"))
            groups = (n + a.per_group - 1) // a.per_group
            p_tocsin, p_vmalert = free_port(), free_port()
            with open(os.path.join(d, "tocsin.yml"), "w") as f:
                f.write(f"""storage: {{ path: {d}/tocsin-data/tocsin.db }}
server: {{ listen: 127.0.0.1:{p_tocsin} }}
log: {{ level: warn }}
evaluation: {{ interval: {a.interval}s }}
rule_files: [rules-tocsin.yml]
datasources:
  - name: vm
    type: prometheus
    url: http://127.0.0.1:{p_vm}
route: {{ receiver: sink }}
receivers:
  - name: sink
    alertmanager: {{ urls: ['http://127.0.0.1:{p_sink}'] }}
{a.tocsin_extra}
""")
            run.start(f"tocsin-{n}", [a.tocsin, "run", "--config", f"{d}/tocsin.yml"], cwd=d)
            run.start(f"vmalert-{n}", ["vmalert", f"-httpListenAddr=127.0.0.1:{p_vmalert}",
                                       f"-datasource.url=http://127.0.0.1:{p_vm}", f"-rule={d}/rules.yml",
                                       f"-notifier.url=http://127.0.0.1:{p_sink}",
                                       f"-evaluationInterval={a.interval}s", "-loggerLevel=WARN"], cwd=d)
            wait_http(f"http://127.0.0.1:{p_tocsin}/api/v1/openapi.json")
            wait_http(f"http://127.0.0.1:{p_vmalert}/metrics")
            print(f"{n} rules in {groups} groups: warm-up {a.warmup}s, window {a.window}s", flush=True)
            time.sleep(a.warmup)


            procs = {"tocsin": run.procs[f"tocsin-{n}"], "vmalert": run.procs[f"vmalert-{n}"]}
            dt, cycles, figs = measure(procs, {"tocsin": tocsin_scraper(p_tocsin), "vmalert": vmalert_scraper(p_vmalert)},
                                       a.window, a.interval, groups)
            tm = get(f"http://127.0.0.1:{p_tocsin}/metrics")
            figs["tocsin"]["datasource_queries"] = metric(tm, "tocsin_datasource_queries_total")
            figs["tocsin"]["alerts_firing"] = len(json.loads(get(f"http://127.0.0.1:{p_tocsin}/api/v2/alerts")))
            vm_alerts = json.loads(get(f"http://127.0.0.1:{p_vmalert}/api/v1/alerts"))["data"]["alerts"]
            figs["vmalert"]["alerts_firing"] = sum(1 for x in vm_alerts if x.get("state") == "firing")
            figs["vmalert"]["alerts_pending_or_firing"] = len(vm_alerts)
            res = {"rules": n, "groups": groups, "window_s": dt, "cycles": cycles, "daemons": figs,
                   "ratios_tocsin_over_vmalert": {
                       k: ratio(figs["tocsin"][k], figs["vmalert"][k])
                       for k in ("cpu_s_per_cycle", "rss_mean_mb", "rss_max_mb", "anon_mean_mb", "group_eval_mean_ms",
                                 "eval_s_per_cycle")}}
            results["sizes"][str(n)] = res
            print(json.dumps(res, indent=2), flush=True)
            rows.append((str(n), figs))
            run.stop(f"tocsin-{n}", f"vmalert-{n}")
        results["sink"] = dict(sunk)
        print_table(f"tocsin / vmalert against one victoria-metrics ({a.series} series scraped every "
                    f"{a.scrape_interval}s, groups of {a.per_group} rules every {a.interval}s, "
                    f"window {a.window}s)", rows, ["tocsin", "vmalert"])
        os.makedirs(a.out, exist_ok=True)
        out = os.path.join(a.out, f"vmalert-{'-'.join(map(str, sizes))}.json")
        json.dump(results, open(out, "w"), indent=2)
        print(f"written: {out}")
    finally:
        run.close()
        if sink:
            sink.shutdown()
        remove_work(work)


if __name__ == "__main__":
    main()
