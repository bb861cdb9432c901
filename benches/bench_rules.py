#!/usr/bin/env python3
"""Alerting rules at scale over ../shared/peer/target.py's metrics (used by vmalert.py and
rules_at_scale.py; runnable alone: `python3 benches/bench_rules.py --rules 1000 --out rules.yml`).

The rules take the shapes of the seed rules (../shared/peer/rules/seed.yml, rules/*.yml): a
threshold on a gauge, a rate of a counter, a ratio of two rates, a 5xx ratio of sums, a
histogram_quantile p99, absent(), a per-tenant bounce ratio, deriv() of a queue, the pdns lock wait
(summary sum/count) and an aggregation over one padding group (~1/256 of the padding series).
Selectors name one padding series by its `idx` label (or one route, tenant, queue, group), so the
rules together read a spread of the target's series as a real rule set does, not the same few.
Thresholds are set so that about 3% of the rules fire (absent() of series that do not exist, low
latency and lock-wait thresholds); the rest evaluate and stay inactive.

Rules are split into groups of `--per-group` (default 100) with the same `interval`; with
`--datasource NAME` every group gets `datasource: NAME` (tocsin's field; vmalert and Prometheus get
the same file without it). Deterministic: the same arguments write the same file.
"""
import argparse

ROUTES = [
    ("GET", "/api/v1/zones"),
    ("GET", "/api/v1/zones/{zone}/records"),
    ("POST", "/api/v1/zones/{zone}/records"),
    ("PATCH", "/api/v1/zones/{zone}/records"),
    ("DELETE", "/api/v1/zones/{zone}/records"),
    ("GET", "/dns-query"),
    ("POST", "/dns-query"),
    ("GET", "/healthz"),
]
QUEUES = ["email:process", "smtp:deliver", "webhook:deliver"]
TENANTS = ["tenant-%02d" % i for i in range(40)]
SEED_SERIES = 262  # target.py's seed series: padding idx runs from 0 to series - 262 - 1
PAD_GROUPS = 256


def pad_idx(r, series, gauge):
    """A padding series index that exists (gauges are idx % 5 == 4, counters the rest)."""
    pad = max(1, series - SEED_SERIES)
    i = (r * 7919) % pad
    if gauge:
        i = i - i % 5 + 4
        if i >= pad:
            i -= 5
    elif i % 5 == 4:
        i -= 1
    return max(i, 0)


def rule(r, series):
    """(alertname, expr, for) of rule number r."""
    k = r % 12
    if k == 0:
        return f"PadLevelHigh{r}", f'scaipad_level{{idx="{pad_idx(r, series, True):06d}"}} > 1e9', "1m"
    if k == 1:
        return (f"PadRateHigh{r}", f'rate(scaipad_ops_total{{idx="{pad_idx(r, series, False):06d}"}}[5m]) > 1e6',
                "2m")
    if k == 2:
        a = pad_idx(r, series, False)
        b = a + 5 * PAD_GROUPS  # same group, same shard: the labels match once idx is ignored
        if b >= series - SEED_SERIES:
            b = a
        return (f"PadRateRatio{r}",
                f'rate(scaipad_ops_total{{idx="{a:06d}"}}[5m]) / ignoring (idx) '
                f'rate(scaipad_ops_total{{idx="{b:06d}"}}[5m]) > 1000', "5m")
    if k == 3:
        method, path = ROUTES[r % len(ROUTES)]
        return (f"DnsErrorRatio{r}",
                f'sum by (job, instance) (rate(scaidns_http_requests_total{{path="{path}",status=~"5.."}}[5m]))'
                f' / sum by (job, instance) (rate(scaidns_http_requests_total{{path="{path}"}}[5m]))'
                f' > {0.05 + (r % 7) / 100}', "1m")
    if k == 4:
        method, path = ROUTES[r % len(ROUTES)]
        # a few fire: p99 above 0.1 s is true for most routes
        t = 0.1 if r % 96 == 4 else 2.5 + r % 5
        return (f"DnsLatencyP99{r}",
                f'histogram_quantile(0.99, sum by (job, instance, le) (rate(scaidns_http_request_duration_seconds_bucket'
                f'{{method="{method}",path="{path}"}}[5m]))) > {t}', "1m")
    if k == 5:
        # one in eight names a series that does not exist: fires
        i = pad_idx(r, series, False) + (10**7 if r % 96 == 5 else 0)
        return f"PadAbsent{r}", f'absent(scaipad_ops_total{{idx="{i:06d}"}})', "1m"
    if k == 6:
        t = TENANTS[r % len(TENANTS)]
        return (f"BounceRatio{r}",
                f'sum by (job, tenant) (rate(scaisend_emails_bounces_total{{tenant="{t}"}}[10m]))'
                f' / sum by (job, tenant) (rate(scaisend_emails_requests_total{{tenant="{t}"}}[10m]))'
                f' > {0.2 + (r % 5) / 10}', "5m")
    if k == 7:
        q = QUEUES[r % len(QUEUES)]
        return f"QueueGrowing{r}", f'deriv(scaisend_queue_depth{{queue="{q}"}}[5m]) > {1000 + r % 100}', "15m"
    if k == 8:
        t = 0.001 if r % 96 == 8 else 10 + r % 10
        return (f"PdnsLockWait{r}",
                f"rate(pdns_lock_wait_seconds_sum[1m]) / rate(pdns_lock_wait_seconds_count[1m]) > {t}", "1m")
    if k == 9:
        g = (r * 31) % PAD_GROUPS
        return f"PadGroupLevel{r}", f'max by (shard) (scaipad_level{{group="g{g:03d}"}}) > 1e12', "1m"
    if k == 10:
        q = QUEUES[r % len(QUEUES)]
        return f"QueueTooDeep{r}", f'scaisend_queue_depth{{queue="{q}"}} > {10**6 + r}', ""
    return (f"PadStalled{r}",
            f'increase(scaipad_ops_total{{idx="{pad_idx(r, series, False):06d}"}}[2m]) < 0', "1m")


def rules_yaml(n, series, interval, per_group=100, datasource=None):
    out = ["# generated by benches/bench_rules.py", "groups:"]
    for g in range((n + per_group - 1) // per_group):
        out += [f"  - name: bench-{g:04d}", f"    interval: {interval}"]
        if datasource:
            out.append(f"    datasource: {datasource}")
        out.append("    rules:")
        for r in range(g * per_group, min(n, (g + 1) * per_group)):
            name, expr, hold = rule(r, series)
            out += [f"      - alert: {name}", f"        expr: '{expr}'"]
            if hold:
                out.append(f"        for: {hold}")
            out += ["        labels:", "          severity: warning", f"          bench_pattern: p{r % 12}",
                    "        annotations:", f'          summary: "rule {r} value {{{{ $value }}}}"']
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", type=int, required=True)
    ap.add_argument("--series", type=int, default=100000, help="series of the target (default 100000)")
    ap.add_argument("--interval", default="30s")
    ap.add_argument("--per-group", type=int, default=100)
    ap.add_argument("--datasource")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    with open(a.out, "w") as f:
        f.write(rules_yaml(a.rules, a.series, a.interval, a.per_group, a.datasource))


if __name__ == "__main__":
    main()
