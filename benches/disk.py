#!/usr/bin/env python3
"""Bytes per sample of tocsin's whole data directory over a bounded run (called by disk.sh)."""
import argparse, json, os, signal, sqlite3, subprocess, sys, tempfile, time, urllib.request

from compare_prometheus import stop_and_clean, cpu_seconds, dir_bytes, free_port, get, metric, wait_http, rss_bytes


def files(path):
    """Size of each file in the data directory."""
    out = {}
    for name in sorted(os.listdir(path)):
        try:
            out[name] = os.path.getsize(os.path.join(path, name))
        except OSError:
            pass
    return out


def pages(db_path):
    """page_size, page_count and freelist_count of the store, read only (safe beside the daemon)."""
    try:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
        try:
            return {k: db.execute(f"PRAGMA {k}").fetchone()[0] for k in ("page_size", "page_count", "freelist_count")}
        finally:
            db.close()
    except sqlite3.Error as e:
        return {"error": str(e)}


def uvarint(b, pos):
    x, shift = 0, 0
    while True:
        c = b[pos]
        pos += 1
        x |= (c & 0x7F) << shift
        if c < 0x80:
            return x, pos
        shift += 7


def wal_row_samples(data):
    """Samples in one `wal` row: the raw layout (records of id, time delta, 8 bytes) or the
    grouped one (src/store/wal.rs: 0x80 0x00, version, base, groups, then per group id delta,
    length and a chunk whose first two bytes count its samples)."""
    n, pos = 0, 0
    if data[:2] == b"\x80\x00":
        pos = 3
        _, pos = uvarint(data, pos)
        groups, pos = uvarint(data, pos)
        for _ in range(groups):
            _, pos = uvarint(data, pos)
            length, pos = uvarint(data, pos)
            n += int.from_bytes(data[pos:pos + 2], "big")
            pos += length
        return n
    while pos < len(data):
        _, pos = uvarint(data, pos)
        _, pos = uvarint(data, pos)
        pos += 8
        n += 1
    return n


def wal_stats(db_path):
    """The `wal` rows beside the running daemon: bytes per sample as stored, and as zlib (level 6,
    a general compressor) would store the same rows."""
    import zlib
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    rows = samples = stored = zipped = 0
    for (data,) in db.execute("SELECT data FROM wal"):
        rows += 1
        samples += wal_row_samples(data)
        stored += len(data)
        zipped += len(zlib.compress(data, 6))
    db.close()
    return {"rows": rows, "samples": samples, "bytes": stored, "zlib6_bytes": zipped,
            "bytes_per_sample": round(stored / samples, 3) if samples else None,
            "zlib6_bytes_per_sample": round(zipped / samples, 3) if samples else None}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=100000)
    ap.add_argument("--minutes", type=float, default=120)
    ap.add_argument("--interval", type=int, default=1)
    ap.add_argument("--every", type=int, default=60, help="seconds between measurements")
    ap.add_argument("--tocsin", required=True)
    ap.add_argument("--peer", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="tocsin-disk-")
    data = os.path.join(work, "tocsin-data")
    db_path = os.path.join(data, "tocsin.db")
    p_target, p_tocsin = free_port(), free_port()
    procs, logs = {}, []
    try:
        def start(name, cmd):
            log = open(os.path.join(work, f"{name}.log"), "w")
            logs.append(log)
            procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)

        start("target", [sys.executable, os.path.join(a.peer, "target.py"), "--port", str(p_target),
                         "--series", str(a.series)])
        wait_http(f"http://127.0.0.1:{p_target}/health/live")
        timeout = min(a.interval, 10)
        with open(os.path.join(work, "tocsin.yml"), "w") as f:
            f.write(f"""storage: {{ path: {db_path} }}
scrape: {{ interval: {a.interval}s, timeout: {timeout}s }}
server: {{ listen: 127.0.0.1:{p_tocsin} }}
log: {{ level: warn }}
targets:
  - name: seed
    metrics: http://127.0.0.1:{p_target}/metrics
""")
        start("tocsin", [a.tocsin, "run", "--config", f"{work}/tocsin.yml"])
        wait_http(f"http://127.0.0.1:{p_tocsin}/api/v1/openapi.json")
        print(f"N={a.series} interval={a.interval}s for {a.minutes} min, one line every {a.every}s", flush=True)
        t0 = time.time()
        end = t0 + a.minutes * 60
        timeline = []
        prev = {"t": time.time(), "cpu": cpu_seconds(procs["tocsin"].pid), "fsum": 0.0, "fcount": 0.0}
        while True:
            now = time.time()
            if now >= end:
                break
            time.sleep(min(a.every, end - now))
            m = get(f"http://127.0.0.1:{p_tocsin}/metrics")
            samples = metric(m, "tocsin_samples_ingested_total") or 0
            size = dir_bytes(data)
            cur = {"t": time.time(), "cpu": cpu_seconds(procs["tocsin"].pid),
                   "fsum": metric(m, "tocsin_store_flush_seconds_sum") or 0.0,
                   "fcount": metric(m, "tocsin_store_flush_seconds_count") or 0.0}
            flushes = cur["fcount"] - prev["fcount"]
            row = {"minute": round((time.time() - t0) / 60, 2), "samples": int(samples), "dir_bytes": size,
                   "cpu_s_per_s": round((cur["cpu"] - prev["cpu"]) / (cur["t"] - prev["t"]), 3),
                   "flush_mean_s": round((cur["fsum"] - prev["fsum"]) / flushes, 4) if flushes else None,
                   "bytes_per_sample": round(size / samples, 3) if samples else None,
                   "files": files(data), "pages": pages(db_path),
                   "rss_mb": round(rss_bytes(procs["tocsin"].pid) / 2**20, 1)}
            prev = cur
            timeline.append(row)
            print(f"{row['minute']:7.2f} min  {row['samples']:>11} samples  {size / 2**20:9.1f} MiB  "
                  f"{row['bytes_per_sample']} B/sample  cpu {row['cpu_s_per_s']} s/s  flush {row['flush_mean_s']} s  "
                  f"files {row['files']}  free pages {row['pages'].get('freelist_count')}",
                  flush=True)
        ingested = timeline[-1]["samples"] if timeline else 0
        live_wal = wal_stats(db_path)
        print(f"wal rows before the stop: {live_wal}", flush=True)
        procs["tocsin"].send_signal(signal.SIGTERM)
        procs["tocsin"].wait(timeout=120)
        db = sqlite3.connect(db_path)
        cbytes, csamples, chunks, decimal = 0, 0, 0, 0
        for (d,) in db.execute("SELECT data FROM chunks"):
            cbytes += len(d)
            # the header's top bit marks a decimal chunk (src/store/chunk/dec.rs); 15 bits count
            csamples += int.from_bytes(d[:2], "big") & 0x7FFF
            decimal += d[0] >> 7
            chunks += 1
        wal_rows, wal_bytes = db.execute("SELECT count(*), coalesce(sum(length(data)), 0) FROM wal").fetchone()
        # where the file's pages go: per table and index, bytes in pages and bytes unused in them
        try:
            tables = {name: {"bytes": b, "unused": u} for name, b, u in db.execute(
                "SELECT name, sum(pgsize), sum(unused) FROM dbstat GROUP BY name ORDER BY 2 DESC LIMIT 8")}
        except sqlite3.Error as e:
            tables = {"error": str(e)}
        db.close()
        size = dir_bytes(data)
        res = {
            "series": a.series, "interval_s": a.interval, "minutes": a.minutes, "tocsin": a.tocsin,
            "timeline": timeline,
            "during_run_bytes_per_sample": timeline[-1]["bytes_per_sample"] if timeline else None,
            "wal_before_stop": live_wal,
            "after_stop": {
                "dir_bytes": size, "files": files(data), "pages": pages(db_path),
                "chunk_samples": csamples, "chunks": chunks, "decimal_chunks": decimal, "chunk_bytes": cbytes,
                "chunk_bytes_per_sample": round(cbytes / csamples, 3) if csamples else None,
                "dir_bytes_per_stored_sample": round(size / csamples, 3) if csamples else None,
                "wal_rows": wal_rows, "wal_bytes": wal_bytes, "tables": tables,
                "ingested_before_stop": ingested,
            },
        }
        name = f"disk-n{a.series}-m{a.minutes:g}.json"
        out = os.path.join(a.out, name)
        json.dump(res, open(out, "w"), indent=2)
        print(json.dumps({k: v for k, v in res.items() if k != "timeline"}, indent=2))
        print(f"written: {out}")
    finally:
        stop_and_clean(procs.values(), logs, work)


if __name__ == "__main__":
    main()
