#!/usr/bin/env python3
"""Chaos run of the tocsin daemon: crashes, a dead receiver, broken reloads, a full disk, a slow
rule group and API abuse, while alerts flap on a fake target; then the figures that must be 0.

    cargo build --release && python3 benches/chaos.py            # ~10 min
    python3 benches/chaos.py --quick                             # ~2 min
    python3 benches/chaos.py --bin path/to/tocsin --seed 7 --keep

Without --bin it uses target/release/tocsin, building it (`cargo build --release`) when absent.
Python 3 standard library only. Everything listens on 127.0.0.1; every process the script starts
(the daemon, restarted after each kill) is stopped by its PID; the tmpfs it mounts for the
disk-full phase (root only; otherwise that phase is skipped with the reason) is unmounted at
the end. The run directory (configs, receiver log, daemon logs) is printed and kept with --keep.

Phases (in this order, the daemon and the target running throughout):
  kill      kill -9 of the daemon at 20 random moments (6 with --quick) while alerts flap, restarted each time
  receiver  the webhook receiver down (connection refused) for 3 min (20 s with --quick)
  reload    broken rule files (YAML, PromQL, templates, duplicate groups...), each written then
            applied by POST /-/reload or by the file watcher, between valid ones
  disk      the data directory's tmpfs filled to ENOSPC for 40 s (8 s), then freed
  slow      a heavy rule group beside the fast 1 s group
  api       deeply nested queries, huge (sub)query ranges, oversized bodies, many concurrent
            queries
Then every condition is turned off and the script waits for the outbox to drain.

Figures (each expected 0):
  lost notifications    a firing/resolved transition the target caused that never reached the
                        receiver (per group, longest common subsequence of expected and received)
  duplicates beyond     a notification repeated with a new idempotency key (a second firing
                        without a resolve between), or a key received more than twice, or more
                        same-key re-sends than kills
  wrong-state restores  after a restart, an alert that was firing (state stable before the
                        kill) is not firing with the same activeAt, or an alert shows up that
                        was not there
  missed iterations     tocsin_rule_group_iterations_missed_total of the fast group (summed
                        over the daemon's lifetimes)
  crashes               daemon exits the script did not cause
Exit status 0 when all are 0, 1 otherwise.
"""

import argparse
import http.server
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "chaos-token"
CONDS = ["c%d" % i for i in range(6)]
HOLD = 4.0  # seconds every target state lasts while the daemon is up (>= 3 scrapes)


def log(*args):
    print("[%s]" % time.strftime("%H:%M:%S"), *args, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --------------------------------------------------------------------------------------------
# the fake target: demo conditions, one held condition, padding series for the slow group


class Target:
    def __init__(self, pad):
        self.lock = threading.Lock()
        self.state = {c: False for c in CONDS}
        self.held = False
        self.pad = pad
        self.history = {c: [] for c in CONDS + ["held"]}  # (time, on)
        self.start = time.time()
        target = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                body = target.render().encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain; version=0.0.4")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # a scrape that timed out and hung up

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def render(self):
        with self.lock:
            lines = ["# TYPE chaos_condition gauge"]
            for c, on in self.state.items():
                lines.append('chaos_condition{cond="%s"} %d' % (c, on))
            lines.append("# TYPE chaos_held gauge")
            lines.append("chaos_held %d" % self.held)
        t = time.time() - self.start
        lines.append("# TYPE chaos_pad gauge")
        for i in range(self.pad):
            lines.append('chaos_pad{i="%d"} %.3f' % (i, (i * 7 + t * (1 + i % 5)) % 1000))
        return "\n".join(lines) + "\n"

    def set(self, cond, on):
        with self.lock:
            if cond == "held":
                changed, self.held = self.held != on, on
            else:
                changed, self.state[cond] = self.state[cond] != on, on
            if changed:
                self.history[cond].append((time.time(), on))

    def get(self, cond):
        with self.lock:
            return self.held if cond == "held" else self.state[cond]

    def flip(self, rng, n=2):
        conds = rng.sample(CONDS, n)
        for c in conds:
            self.set(c, not self.get(c))
        return conds

    def last_change(self, cond):
        h = self.history[cond]
        return h[-1][0] if h else 0.0

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------------------------
# the webhook receiver: records every POST; can be taken down (connection refused) and back


class Receiver:
    def __init__(self):
        self.port = free_port()
        self.lock = threading.Lock()
        self.hits = []  # dicts: t, key, body
        self.server = None
        self.is_down = False
        # while down, the port stays bound but not listening (connection refused), so no other
        # process can take it meanwhile: a test suite run beside this once did, and its daemons'
        # notifications were counted as this daemon's
        self.placeholder = None
        self.up()

    def up(self):
        recv = self
        if self.placeholder is not None:
            self.placeholder.close()
            self.placeholder = None
        self.is_down = False

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                if recv.is_down:
                    # a kept-alive connection outlives the listener: drop it unanswered, as a
                    # receiver that went away would (before, deliveries went on through it)
                    self.close_connection = True
                    return
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                with recv.lock:
                    recv.hits.append(
                        {"t": time.time(), "key": self.headers.get("Idempotency-Key", ""), "body": body}
                    )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        deadline = time.time() + 30
        while True:
            try:
                self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self):
        self.is_down = True
        self.server.shutdown()
        self.server.server_close()
        self.server = None
        p = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        p.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        p.bind(("127.0.0.1", self.port))
        self.placeholder = p

    def snapshot(self):
        with self.lock:
            return list(self.hits)


# --------------------------------------------------------------------------------------------
# the daemon


RULES_FAST = """groups:
  - name: fast
    interval: 1s
    rules:
      - alert: ChaosFlap
        expr: chaos_condition == 1
        for: 0s
        labels: { severity: page }
        annotations: { summary: "condition {{ $labels.cond }} is on" }
      - alert: ChaosHeld
        expr: chaos_held == 1
        for: 10s
        annotations: { summary: "held for {{ $value }}" }
"""

RULES_SLOW = """groups:
  - name: slow
    interval: 1s
    rules:
      - record: chaos:pad_quantile
        expr: sum(quantile_over_time(0.9, chaos_pad[10m]))
      - record: chaos:pad_subquery
        expr: sum(max_over_time(deriv(chaos_pad[30s])[2m:1s]))
      - record: chaos:pad_topk
        expr: count(topk(100, stddev_over_time(chaos_pad[10m])))
"""

# invalid rule files: each must be refused while the running rules stay
BROKEN = [
    "groups: [",
    "groups:\n  - name: fast\n    rules:\n      - alert: X\n        expr: sum(rate(x[5m])\n",
    "groups:\n  - name: fast\n    rules:\n      - alert: X\n        expr: up\n        for: -1s\n",
    "groups:\n  - name: fast\n    rules:\n      - alert: X\n        expr: up\n        annotations: { s: \"{{ nosuchfunc $value }}\" }\n",
    "groups:\n  - name: a\n    rules: []\n  - name: a\n    rules: []\n",
    "groups:\n  - name: fast\n    rules:\n      - record: \"bad name\"\n        expr: up\n",
    "groups:\n  - name: fast\n    interval: 0s\n    rules:\n      - alert: X\n        expr: up\n",
    "\x00\x01\x02 not yaml at all \xff",
    "groups:\n  - name: fast\n    rules:\n      - alert: X\n        expr: " + "(" * 2000 + "up" + ")" * 2000 + "\n",
    "groups:\n  - name: fast\n    rules:\n      - alert: X\n        expr: 'up{a=~\"(\"}'\n",
    "groups:\n  - name: fast\n    rules:\n      - alert: X\n        script: \"let x = ;\"\n",
    "groups:\n" + "  - name: g\n    rules: []\n" * 3,
]


class Daemon:
    def __init__(self, binary, run_dir, data_dir, receiver, target):
        self.binary = binary
        self.run_dir = run_dir
        self.data_dir = data_dir
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.proc = None
        self.lives = 0
        self.crashes = []
        self.missed_fast = 0  # summed over finished lifetimes
        self.missed_slow = 0
        self.killing = False
        self.stop_s = None  # how long the last SIGTERM took; "hung" when it needed SIGKILL
        with open(os.path.join(run_dir, "rules.yml"), "w") as f:
            f.write(RULES_FAST)
        with open(os.path.join(run_dir, "tocsin.yml"), "w") as f:
            f.write(
                "storage: { flush_interval: 1s }\n"
                "scrape: { interval: 1s, timeout: 1s }\n"
                "evaluation: { interval: 1s }\n"
                "rule_files: [rules.yml, 'slow/*.yml']\n"
                "targets:\n  - name: chaos\n    metrics: http://127.0.0.1:%d/metrics\n"
                "server: { api_token_env: TOCSIN_CHAOS_TOKEN }\n"
                "route: { receiver: hook, group_by: [alertname, cond], group_wait: 0s,"
                " group_interval: 1s, repeat_interval: 1h }\n"
                "receivers:\n  - name: hook\n    webhook: { url: \"http://127.0.0.1:%d/hook\","
                " timeout: 5s }\n" % (target.port, receiver.port)
            )
        # the slow group's file: empty until the slow phase (a pattern that matches no file
        # is a config error)
        os.makedirs(os.path.join(run_dir, "slow"), exist_ok=True)
        with open(os.path.join(run_dir, "slow", "slow.yml"), "w") as f:
            f.write("groups: []\n")

    def start(self, attempts=3):
        """Starts the daemon and waits for its API; an exit before that is a crash (the
        start is retried, at most `attempts` times in all)."""
        for _ in range(attempts):
            self.lives += 1
            path = os.path.join(self.run_dir, "daemon-%02d.log" % self.lives)
            env = dict(os.environ)
            env.update(
                TOCSIN_LISTEN="127.0.0.1:%d" % self.port,
                TOCSIN_DATA_DIR=self.data_dir,
                TOCSIN_LOG_LEVEL="info",
                TOCSIN_CHAOS_TOKEN=TOKEN,
                NO_COLOR="1",
            )
            with open(path, "w") as out:
                self.proc = subprocess.Popen(
                    [self.binary, "run", "--config", "tocsin.yml"], cwd=self.run_dir, env=env,
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                )
            deadline = time.time() + 60
            while time.time() < deadline and self.proc.poll() is None:
                # /health/live answers from the first moment; the API once the store is open
                v = get_json(self.base + "/api/v1/openapi.json", timeout=2)
                if v and "openapi" in v:
                    return
                time.sleep(0.1)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
                raise SystemExit("the daemon did not become ready within 60 s (log: %s)" % path)
            self.crashes.append((time.time(), self.proc.returncode, self.lives))
            log("CRASH: the daemon exited with %s while starting (log: %s)" % (self.proc.returncode, path))
        raise SystemExit("the daemon does not start")

    def wait_first_evaluation(self, within=30):
        end = time.time() + within
        while time.time() < end:
            v = get_json(self.base + "/api/v1/status", timeout=5)
            if v and v["data"]["startup"].get("firstEvaluationDone"):
                return True
            time.sleep(0.05)
        return False

    def check_alive(self):
        """Notes (and restarts after) an exit the script did not cause."""
        if self.proc is not None and self.proc.poll() is not None and not self.killing:
            self.crashes.append((time.time(), self.proc.returncode, self.lives))
            log("CRASH: the daemon exited with %s (life %d); restarting" % (self.proc.returncode, self.lives))
            self.start()

    def missed(self):
        text = get_text(self.base + "/metrics", timeout=5) or ""
        fast = slow = 0.0
        for line in text.splitlines():
            m = re.match(r'tocsin_rule_group_iterations_missed_total\{group="([^"]*)"\} (\S+)', line)
            if m:
                if m.group(1).endswith("fast"):
                    fast = float(m.group(2))
                elif m.group(1).endswith("slow"):
                    slow = float(m.group(2))
        return fast, slow

    def note_missed(self):
        fast, slow = self.missed()
        self.missed_fast += fast
        self.missed_slow += slow

    def kill9(self):
        self.check_alive()
        self.killing = True
        try:
            self.note_missed()
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        finally:
            self.killing = False

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.killing = True
        self.note_missed()
        t0 = time.time()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
            self.stop_s = round(time.time() - t0, 1)
        except subprocess.TimeoutExpired:
            log("the daemon did not stop within 30 s of SIGTERM; sending SIGKILL to pid %d" % self.proc.pid)
            self.stop_s = "hung (killed after 30 s)"
            self.proc.kill()
            self.proc.wait()

    def alerts(self):
        v = get_json(self.base + "/api/v1/alerts", timeout=5)
        if not v:
            return None
        out = {}
        for a in v["data"]["alerts"]:
            key = (a["labels"].get("alertname"), a["labels"].get("cond", "held"))
            out[key] = (a["state"], a["activeAt"])
        return out

    def metric(self, name):
        text = get_text(self.base + "/metrics", timeout=5) or ""
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total


def request(url, data=None, method=None, timeout=10, headers=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        return None, str(e).encode()


def get_text(url, timeout=10):
    status, body = request(url, timeout=timeout)
    return body.decode("utf-8", "replace") if status == 200 else None


def get_json(url, timeout=10):
    text = get_text(url, timeout)
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def reload(daemon):
    return request(
        daemon.base + "/-/reload", data=b"", method="POST",
        headers={"Authorization": "Bearer " + TOKEN}, timeout=30,
    )


def hold(seconds, daemon):
    """Waits, noting a crash every 0.5 s."""
    end = time.time() + seconds
    while time.time() < end:
        daemon.check_alive()
        time.sleep(min(0.5, max(0.0, end - time.time())))


# --------------------------------------------------------------------------------------------
# phases


def phase_kill(d, target, rng, kills, report):
    log("phase kill: %d kill -9 while alerts flap" % kills)
    wrong = []
    for i in range(kills):
        target.flip(rng, rng.choice([1, 2]))
        hold(rng.uniform(0, 3.0), d)
        before = d.alerts() or {}
        killed_at = time.time()
        d.kill9()
        d.start()
        d.wait_first_evaluation()
        after = d.alerts()
        if after is None:
            wrong.append((i, "no answer from /api/v1/alerts"))
        else:
            for key, (state, active) in before.items():
                cond = key[1]
                # only states that stood for 3 s before the kill, unchanged since
                if killed_at - target.last_change(cond) < 3.0 or target.last_change(cond) > killed_at:
                    continue
                if state == "firing" and after.get(key) != (state, active):
                    wrong.append((i, "%s was firing since %s, after restart %s" % (key, active, after.get(key))))
            for key, (state, active) in after.items():
                cond = key[1]
                if key not in before and target.last_change(cond) < killed_at - 3.0 and state == "firing":
                    wrong.append((i, "%s firing after restart, absent before" % (key,)))
        hold(HOLD, d)
    report["wrong_restores"] = wrong
    report["kills"] = kills


def flap_for(seconds, d, target, rng):
    end = time.time() + seconds
    while time.time() < end:
        target.flip(rng, rng.choice([1, 2]))
        hold(min(rng.uniform(HOLD, 2 * HOLD), max(0.0, end - time.time()) + HOLD), d)


def phase_receiver(d, target, receiver, rng, seconds, report):
    log("phase receiver: webhook receiver down for %d s while alerts flap" % seconds)
    receiver.down()
    flap_for(seconds, d, target, rng)
    receiver.up()
    log("receiver back; waiting for the outbox to drain")
    report["receiver_drain_s"] = wait_drained(d, 150)


def wait_drained(d, within):
    start = time.time()
    while time.time() - start < within:
        d.check_alive()
        if d.metric("tocsin_notification_outbox_depth") == 0:
            return round(time.time() - start, 1)
        time.sleep(1)
    log("the outbox did not drain within %d s" % within)
    return None


def newest_reload(d):
    v = get_json(d.base + "/api/v1/status", timeout=5)
    reloads = (v or {}).get("data", {}).get("reloads") or []
    if not reloads:
        return None
    newest = max(reloads, key=lambda r: r["time"])
    return (newest["time"], newest["cause"], newest["success"], len(reloads))


def wait_reload(d, after, within):
    """The newest reload once it differs from `after` (None when none came within `within`)."""
    end = time.time() + within
    while time.time() < end:
        r = newest_reload(d)
        if r is not None and r != after:
            return r
        time.sleep(0.2)
        d.check_alive()
    return None


def phase_reload(d, target, rng, n, report):
    log("phase reload: %d broken reloads between valid ones" % n)
    rules = os.path.join(d.run_dir, "rules.yml")
    bad_accepted = good_refused = watcher_silent = 0
    for i in range(n):
        # broken: every other one through the API, the rest through the file watcher alone
        by_api = i % 2 == 0
        before = newest_reload(d)
        with open(rules, "w", errors="surrogateescape") as f:
            f.write(BROKEN[i % len(BROKEN)])
        if by_api:
            status, _ = reload(d)
            if status is not None and 200 <= status < 300:
                bad_accepted += 1
        else:
            r = wait_reload(d, before, 10)
            if r is None:
                watcher_silent += 1
            elif r[2]:
                bad_accepted += 1
        if i % 5 == 4:
            target.flip(rng, 1)
        # valid again, through the other path
        before = newest_reload(d)
        with open(rules, "w") as f:
            f.write(RULES_FAST + "# reload %d\n" % i)
        if by_api:
            r = wait_reload(d, before, 10)
            if r is None:
                watcher_silent += 1
                status, _ = reload(d)  # the rules must be valid again before the next round
            elif not r[2]:
                good_refused += 1
        else:
            # the watcher may see the write too; the API's answer is the verdict here
            status, _ = reload(d)
            if status is None or not 200 <= status < 300:
                good_refused += 1
        d.check_alive()
    report["reloads"] = {"broken": n, "broken_accepted": bad_accepted, "valid_refused": good_refused,
                         "watcher_missed_a_write": watcher_silent,
                         "reload_success_after": d.metric("tocsin_rule_reload_success")}
    hold(HOLD, d)


def phase_disk(d, target, rng, seconds, mount, report):
    if mount is None:
        report["disk"] = "skipped: " + report.get("disk_skip", "no tmpfs")
        log("phase disk: " + report["disk"])
        return
    log("phase disk: the data directory's tmpfs full for %d s" % seconds)
    filler = os.path.join(mount, "filler")
    failures_before = d.metric("tocsin_store_flush_failures_total")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 4096, 1):  # until nothing fits, down to the last byte
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    flap_for(seconds, d, target, rng)
    failures_during = d.metric("tocsin_store_flush_failures_total") - failures_before
    os.unlink(filler)
    log("disk freed")
    hold(3, d)
    f1 = d.metric("tocsin_store_flush_failures_total")
    hold(3, d)
    f2 = d.metric("tocsin_store_flush_failures_total")
    report["disk"] = {
        "seconds_full": seconds,
        "flush_failures_while_full": failures_during,
        "flush_failures_after_free_in_3s": f2 - f1,
        "drain_s": wait_drained(d, 120),
    }


def phase_slow(d, target, rng, seconds, report):
    log("phase slow: a heavy rule group beside the fast one for %d s" % seconds)
    fast0, slow0 = d.missed()
    lives0 = d.lives
    slow = os.path.join(d.run_dir, "slow", "slow.yml")
    with open(slow, "w") as f:
        f.write(RULES_SLOW)
    reload(d)
    durations = []
    end = time.time() + seconds
    while time.time() < end:
        target.flip(rng, 1)
        t_end = time.time() + HOLD
        while time.time() < t_end:
            v = get_json(d.base + "/api/v1/rules", timeout=5)
            if v:
                for g in v["data"]["groups"]:
                    if g["name"] == "slow":
                        durations.append(g.get("evaluationTime", 0))
            hold(1, d)
    fast1, slow1 = d.missed()
    with open(slow, "w") as f:
        f.write("groups: []\n")
    t0 = time.time()
    status, _ = reload(d)
    unload = "%s in %.1fs" % (status if status is not None else "no answer", time.time() - t0)
    hold(2, d)
    same_life = d.lives == lives0
    report["slow"] = {
        "seconds": seconds,
        "slow_eval_s_max": round(max(durations), 3) if durations else None,
        "slow_eval_s_median": round(sorted(durations)[len(durations) // 2], 3) if durations else None,
        "fast_missed": (fast1 - fast0) if same_life else "restarted",
        "slow_missed": (slow1 - slow0) if same_life else "restarted",
        "reload_removing_it": unload,
    }


def phase_api(d, seconds, report):
    log("phase api: abuse for about %d s" % seconds)
    q = d.base + "/api/v1/query?timeout=10s&query="
    qr = d.base + "/api/v1/query_range?timeout=10s&"
    now = time.time()
    cases = {
        "nested parens 10k": q + urllib.parse.quote("(" * 10000 + "up" + ")" * 10000),
        "nested unary 100k": q + urllib.parse.quote("-" * 100000 + "1"),
        "nested calls 5k": q + urllib.parse.quote("abs(" * 5000 + "up" + ")" * 5000),
        "huge range": q + urllib.parse.quote("rate(chaos_pad[100y])"),
        "huge subquery": q + urllib.parse.quote("max_over_time(chaos_pad[10000d:1ms])"),
        "nested subqueries": q + urllib.parse.quote(
            "max_over_time(max_over_time(max_over_time(chaos_pad[1d:1ms])[1d:1ms])[1d:1ms])"),
        "range 1ms steps over a year": qr + urllib.parse.urlencode(
            {"query": "chaos_pad", "start": now - 365 * 86400, "end": now, "step": "0.001"}),
        "regex bomb": q + urllib.parse.quote('chaos_pad{i=~"(((a*)*)*)*b{1000}{1000}"}'),
        "cartesian": q + urllib.parse.quote("chaos_pad * on() group_left chaos_pad"),
    }
    codes = {}
    for name, url in cases.items():
        t0 = time.time()
        status, _ = request(url, timeout=30)
        codes[name] = "%s in %.2fs" % (status, time.time() - t0)
        d.check_alive()
    # oversized bodies
    big = b"query=" + b"a" * (64 << 20)
    t0 = time.time()
    status, _ = request(d.base + "/api/v1/query", data=big, method="POST", timeout=60,
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    codes["64 MiB query body"] = "%s in %.2fs" % (status, time.time() - t0)
    status, _ = request(d.base + "/api/v1/silences", data=b"[" * (8 << 20), method="POST", timeout=60,
                        headers={"Content-Type": "application/json", "Authorization": "Bearer " + TOKEN})
    codes["8 MiB nested json silence"] = str(status)
    # many concurrent queries
    heavy = q + urllib.parse.quote("sum(quantile_over_time(0.5, chaos_pad[10m]))")
    t0 = time.time()
    with ThreadPoolExecutor(max_workers=64) as pool:
        results = list(pool.map(lambda _: request(heavy, timeout=30)[0], range(256)))
    tally = {}
    for r in results:
        tally[str(r)] = tally.get(str(r), 0) + 1
    codes["256 heavy queries, 64 at a time"] = "%s in %.1fs" % (tally, time.time() - t0)
    hold(1, d)
    live = get_json(d.base + "/health/live", timeout=10)
    report["api"] = {"answers": codes, "live_after": bool(live and live.get("status") == "ok"),
                     "vm_hwm_kib": vm_hwm(d.proc.pid)}


def vm_hwm(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None


# --------------------------------------------------------------------------------------------
# the verdict


def lcs(a, b):
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def verdict(target, receiver, kills):
    hits = receiver.snapshot()
    groups = {}
    for h in hits:
        b = h["body"] or {}
        gl = b.get("groupLabels", {})
        cond = gl.get("cond", "held") if gl.get("alertname") == "ChaosFlap" else "held"
        if gl.get("alertname") not in ("ChaosFlap", "ChaosHeld"):
            continue
        groups.setdefault(cond, []).append((b.get("status"), h["key"]))
    lost = dup_beyond = resends = 0
    detail = {}
    for cond, changes in target.history.items():
        expected = ["firing" if on else "resolved" for _, on in changes]
        got = groups.get(cond, [])
        seen = {}
        compressed = []
        for status, key in got:
            seen[key] = seen.get(key, 0) + 1
            if seen[key] == 2:
                resends += 1
                continue
            if seen[key] > 2:
                dup_beyond += 1
                continue
            if compressed and compressed[-1] == status:
                dup_beyond += 1  # the same state again under a new key
                continue
            compressed.append(status)
        common = lcs(expected, compressed)
        lost += len(expected) - common
        extra = len(compressed) - common
        dup_beyond += extra
        detail[cond] = {"expected": len(expected), "received": len(got), "lost": len(expected) - common,
                        "unexpected": extra}
    if resends > kills:
        dup_beyond += resends - kills
    return {"lost": lost, "dup_beyond": dup_beyond, "same_key_resends": resends, "per_group": detail,
            "notifications": len(hits)}


# --------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="about 2 minutes instead of 10")
    ap.add_argument("--bin", help="the tocsin binary (default target/release/tocsin, built when absent)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--pad", type=int, default=2000, help="padding series the slow group reads")
    ap.add_argument("--keep", action="store_true", help="keep the run directory")
    args = ap.parse_args()

    def on_term(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    q = args.quick
    kills = 6 if q else 20
    down_s = 20 if q else 180
    n_reloads = 10 if q else 50
    disk_s = 8 if q else 40
    slow_s = 10 if q else 60
    api_s = 10 if q else 30

    binary = os.path.abspath(args.bin or os.path.join(ROOT, "target", "release", "tocsin"))
    if not args.bin and not os.path.exists(binary):
        log("building %s" % binary)
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    if not os.access(binary, os.X_OK):
        raise SystemExit("no executable at %s" % binary)

    run_dir = tempfile.mkdtemp(prefix="tocsin-chaos-")
    mount = None
    report = {"seed": seed, "quick": q}
    data_dir = os.path.join(run_dir, "data")
    os.makedirs(data_dir)
    if os.geteuid() != 0:
        report["disk_skip"] = "not root (a tmpfs cannot be mounted)"
    else:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m,mode=0700", "tmpfs", data_dir],
                           capture_output=True, text=True)
        if r.returncode == 0:
            mount = data_dir
        else:
            report["disk_skip"] = "mount of a tmpfs failed: " + r.stderr.strip()
    log("run directory %s, seed %d, data on %s" % (run_dir, seed, "tmpfs" if mount else "disk"))

    target = Target(args.pad)
    receiver = Receiver()
    d = Daemon(binary, run_dir, data_dir, receiver, target)
    started = time.time()
    phases = {}
    try:
        target.set("held", True)
        d.start()
        hold(15, d)  # the held alert fires (for: 10s)
        t = time.time()
        phase_kill(d, target, rng, kills, report)
        phases["kill"] = time.time() - t
        t = time.time()
        phase_receiver(d, target, receiver, rng, down_s, report)
        phases["receiver"] = time.time() - t
        t = time.time()
        phase_reload(d, target, rng, n_reloads, report)
        phases["reload"] = time.time() - t
        t = time.time()
        phase_disk(d, target, rng, disk_s, mount, report)
        phases["disk"] = time.time() - t
        t = time.time()
        phase_slow(d, target, rng, slow_s, report)
        phases["slow"] = time.time() - t
        t = time.time()
        phase_api(d, api_s, report)
        phases["api"] = time.time() - t
        log("settling: every condition off")
        for c in CONDS + ["held"]:
            target.set(c, False)
        hold(HOLD, d)
        report["final_drain_s"] = wait_drained(d, 150)
        hold(2, d)
        d.check_alive()
    except KeyboardInterrupt:
        log("interrupted: the figures below cover the run so far")
        report["interrupted"] = True
    finally:
        d.stop()
        target.stop()
        if receiver.server is not None:
            receiver.down()
        if mount:
            subprocess.run(["umount", mount])
    v = verdict(target, receiver, report.get("kills", 0))
    fast_missed = d.missed_fast
    figures = {
        "lost notifications": v["lost"],
        "duplicates beyond one same-key re-send per kill": v["dup_beyond"],
        "wrong-state restores": len(report.get("wrong_restores", [])),
        "missed iterations of the fast group": fast_missed,
        "crashes": len(d.crashes),
    }
    print()
    print("chaos run: seed %d, %s, %.0f s, %d daemon starts, %d notifications received"
          % (seed, "quick" if q else "full", time.time() - started, d.lives, v["notifications"]))
    print("phases (s): " + ", ".join("%s %.0f" % kv for kv in phases.items()))
    print("shutdown at the end (SIGTERM): %s s" % d.stop_s)
    print("same-key re-sends (allowed, at most one per kill): %d over %d kills" % (v["same_key_resends"], report.get("kills", 0)))
    print("receiver down: outbox drained %s s after it came back" % report.get("receiver_drain_s"))
    print("reloads: %s" % json.dumps(report.get("reloads")))
    print("disk: %s" % json.dumps(report.get("disk")))
    print("slow group: %s (its own misses are expected; missed slow total %s)" % (json.dumps(report.get("slow")), d.missed_slow))
    print("api: %s" % json.dumps(report.get("api"), indent=1))
    print("per group: %s" % json.dumps(v["per_group"]))
    for w in report.get("wrong_restores", []):
        print("wrong restore: kill %d: %s" % w)
    for c in d.crashes:
        print("crash at %.0f: exit %s (life %d)" % c)
    print()
    for k, val in figures.items():
        print("%-50s %s" % (k, val))
    if args.keep:
        print("run directory kept: %s" % run_dir)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0 if all(val == 0 for val in figures.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
