#!/usr/bin/env python3
"""Start-up with a large store (issue 16; called by startup.sh).

Builds a store holding --hours of one target's series (`startup_fixture`, through tocsin's own
store, the last write-ahead rows left as a crash leaves them), then starts `tocsin run` on it
scraping the same target and times, from the process's start:
  live      the first 200 of /health/live
  started   the first 200 of /api/v1/targets (the store is open, the scheduler runs)
  scraped   the first completed scrape of the target (its slot in the interval included:
            `slot_wait` is how long the scheduler waited for it)
and reads the store's own figures from its log (head load, write-ahead replay). Then it stops
tocsin with SIGTERM (timing the stop) and starts it again on the cleanly closed store.
Everything runs on 127.0.0.1 and is stopped by PID.
"""
import argparse, json, os, re, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request

PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(url, timeout=2):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except Exception:
        return None, ""


def rss_bytes(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def dir_bytes(path):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def start_and_time(a, work, port, target_port, label):
    """Starts tocsin on the store and times it; returns (process, figures)."""
    log_path = os.path.join(work, f"tocsin-{label}.log")
    log = open(log_path, "w")
    t0 = time.monotonic()
    wall0 = time.time()
    proc = subprocess.Popen([a.tocsin, "run", "--config", os.path.join(work, "tocsin.yml")],
                            stdout=log, stderr=subprocess.STDOUT)
    fig = {"live": None, "started": None, "scraped": None, "rss_max_mb": 0.0}
    deadline = t0 + a.timeout
    while time.monotonic() < deadline and fig["scraped"] is None:
        if proc.poll() is not None:
            sys.exit(f"tocsin exited with {proc.returncode}: see {log_path}")
        now = time.monotonic() - t0
        fig["rss_max_mb"] = max(fig["rss_max_mb"], rss_bytes(proc.pid) / 1e6)
        if fig["live"] is None and status(f"http://127.0.0.1:{port}/health/live")[0] == 200:
            fig["live"] = now
        if fig["live"] is not None:
            code, body = status(f"http://127.0.0.1:{port}/api/v1/targets")
            if code == 200:
                if fig["started"] is None:
                    fig["started"] = now
                for t in json.loads(body)["data"]["activeTargets"]:
                    last = t.get("lastScrape", "")
                    if t.get("health") == "up" and not last.startswith("0001"):
                        fig["scraped"] = time.monotonic() - t0
                        fig["scrape_seconds"] = t.get("lastScrapeDuration")
        time.sleep(0.01)
    if fig["scraped"] is None:
        print(f"{label}: no scrape within {a.timeout}s (see {log_path})", flush=True)
    if fig["started"] is not None and fig["scraped"] is not None:
        # the scrape's slot: a target keeps its offset inside the interval across restarts
        fig["slot_wait"] = max(0.0, fig["scraped"] - fig["started"] - (fig.get("scrape_seconds") or 0))
    log.flush()
    fig["log"] = parse_log(log_path)
    fig["wall_start"] = wall0
    return proc, fig


def parse_log(path):
    """The store's own start-up figures from its log lines."""
    out = {}
    for line in open(path, errors="replace"):
        if "loaded the head" in line or "replayed write-ahead batches" in line:
            key = "head" if "loaded the head" in line else "replay"
            out[key] = dict(re.findall(r"(\w+)=([\w.:-]+)", line))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, required=True)
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--interval", type=int, default=15)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--most-rows", action="store_true",
                    help="end the history where a crash leaves the most write-ahead rows (a chunk's "
                         "119 samples since its cut, the last flush before a checkpoint), up to 120 "
                         "intervals before tocsin starts")
    ap.add_argument("--tocsin", required=True)
    ap.add_argument("--fixture", required=True, help="the startup_fixture binary")
    ap.add_argument("--peer", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="tocsin-startup-")
    procs = []
    try:
        target_port, port = free_port(), free_port()
        control = os.path.join(work, "control.json")
        json.dump({"ready": True, "probe": None, "version": 0}, open(control, "w"))
        target = subprocess.Popen([sys.executable, os.path.join(a.peer, "target.py"), "--port", str(target_port),
                                   "--series", str(a.series), "--control", control],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(target)
        for _ in range(600):
            if status(f"http://127.0.0.1:{target_port}/health/live")[0] == 200:
                break
            time.sleep(0.1)
        expo = os.path.join(work, "metrics.txt")
        with urllib.request.urlopen(f"http://127.0.0.1:{target_port}/metrics", timeout=120) as r, open(expo, "wb") as f:
            f.write(r.read())
        data = os.path.join(work, "data")
        os.makedirs(data)
        store = os.path.join(data, "tocsin.db")
        # the history ends when tocsin starts, as after a quick restart: the fixture writes
        # ~1.7M samples a second here, so it ends that far ahead and tocsin starts at its end
        # (data older than the staleness period would leave memory at the first flush)
        samples = a.series * a.hours * 3600 / a.interval
        end_ms = int((time.time() + 10 + samples / 1.7e6) * 1000)
        if a.most_rows:
            # chunks are cut at 120 samples and at the hour: the rows a crash leaves are the
            # samples since the last cut, so without this their count depends on the clock
            # (19 to 120 at 15 s); the history then ends up to 120 intervals before the start
            span = 120 * a.interval * 1000
            end_ms -= (end_ms - (span - a.interval * 1000)) % span
            # and a flush writes a checkpoint (every open chunk, replacing the rows before it)
            # once the rows since the last hold 32 samples a series, at least 16 Mi: the crash
            # comes at the last flush before one (the fixture flushes once a scrape)
            per = max(32, -(-(16 << 20) // a.series))
            full = int(a.hours * 3600 / a.interval)
            steps = full - (full + 1) % per
        t = time.monotonic()
        subprocess.run([a.fixture, "--exposition", expo, "--job", "seed", "--instance", f"127.0.0.1:{target_port}",
                        "--store", store, "--end-ms", str(end_ms), "--hours", str(a.hours),
                        *(["--steps", str(steps)] if a.most_rows else []),
                        "--interval", str(a.interval), "--crash"], check=True)
        build_s = time.monotonic() - t
        store_mb = dir_bytes(data) / 1e6
        wait = end_ms / 1000 - time.time()
        if wait > 0:
            time.sleep(wait)
        age = time.time() - end_ms / 1000
        print(f"the newest sample is {age:.0f} s old when tocsin starts", flush=True)
        print(f"store: {a.series} series, {a.hours} h at {a.interval}s, {store_mb:.0f} MB, built in {build_s:.0f} s", flush=True)
        with open(os.path.join(work, "tocsin.yml"), "w") as f:
            f.write(f"""storage: {{ path: {store} }}
scrape: {{ interval: {a.interval}s, timeout: {min(a.interval, 10)}s, sample_limit: {max(200_000, 2 * a.series)}, body_size_limit: 1GiB }}
server: {{ listen: 127.0.0.1:{port} }}
log: {{ level: info }}
targets:
  - name: seed
    metrics: http://127.0.0.1:{target_port}/metrics
""")
        results = {"series": a.series, "hours": a.hours, "interval": a.interval, "store_mb": store_mb,
                   "fixture_seconds": build_s, "newest_sample_age_seconds": age}
        for label in ("after-crash", "after-clean-stop"):
            proc, fig = start_and_time(a, work, port, target_port, label)
            procs.append(proc)
            t = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=300)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            fig["stop_seconds"] = time.monotonic() - t
            fig.pop("wall_start", None)
            results[label] = fig
            print(f"{label}: " + json.dumps(fig), flush=True)
        os.makedirs(a.out, exist_ok=True)
        path = os.path.join(a.out, f"startup-n{a.series}.json")
        with open(path, "w") as f:
            json.dump(results, f, indent=1)
        print(f"written {path}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
