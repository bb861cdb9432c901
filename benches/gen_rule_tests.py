#!/usr/bin/env python3
"""Generates a suite of rule unit tests in promtool's format (called by rule-tests.sh).

Each file index f gets a rule file `rules_f.yml` (the seed patterns: a 5xx ratio of rates, a
histogram p99, a queue ceiling with `for`, a down target, a recording rule and an alert on it;
metric names carry f so files do not share series) and a test file `rules_f_test.yml` with
`--per-file` test groups. Groups cycle through the patterns, half firing and half not, with
alert_rule_test and promql_expr_test entries whose expectations are exact in both tools (integer
values where `$value` is printed, labels otherwise). Deterministic: the same arguments write the
same files.
"""
import argparse, os

RULES = """groups:
  - name: http_{f}
    rules:
      - alert: HighErrorRatio{f}
        expr: |
          sum by (job, instance) (rate(http_requests_total_{f}{{status=~"5.."}}[5m]))
            /
          sum by (job, instance) (rate(http_requests_total_{f}[5m]))
            > 0.005
        for: 1m
        labels: {{ severity: page, system: svc{f} }}
        annotations:
          summary: "5xx ratio above 0.5% on {{{{ $labels.instance }}}}"
      - alert: LatencyP99High{f}
        expr: |
          histogram_quantile(0.99,
            sum by (job, instance, le) (rate(http_request_duration_seconds_{f}_bucket[5m]))
          ) > 1
        for: 1m
        labels: {{ severity: page, system: svc{f} }}
        annotations:
          summary: "p99 latency above 1s on {{{{ $labels.instance }}}}"
  - name: queue_{f}
    rules:
      - alert: QueueTooDeep{f}
        expr: queue_depth_{f} > 1000
        for: 2m
        labels: {{ severity: warning, system: svc{f} }}
        annotations:
          summary: "queue {{{{ $labels.queue }}}} holds {{{{ $value }}}} jobs"
      - alert: QueueGrowing{f}
        expr: deriv(queue_depth_{f}[5m]) > 0
        for: 5m
        labels: {{ severity: warning, system: svc{f} }}
        annotations:
          summary: "queue {{{{ $labels.queue }}}} growing"
  - name: up_{f}
    rules:
      - alert: TargetDown{f}
        expr: up{{job="svc{f}"}} == 0
        for: 1m
        labels: {{ severity: page, system: svc{f} }}
        annotations:
          summary: "{{{{ $labels.instance }}}} down"
      - record: job:errors:rate5m_{f}
        expr: sum by (job) (rate(errors_total_{f}[5m]))
      - alert: ErrorsHigh{f}
        expr: job:errors:rate5m_{f} > 1
        for: 1m
        labels: {{ severity: warning, system: svc{f} }}
        annotations:
          summary: "errors high on {{{{ $labels.job }}}}"
"""


def group(f, g):
    """One test group: pattern g % 5, firing when (g // 5) is even."""
    fires = (g // 5) % 2 == 0
    inst = f"10.0.{f % 250}.{g % 250}:9100"
    job = f"svc{f}"
    kind = g % 5
    lines = [f"  - name: 'file {f} group {g}'", "    interval: 15s", "    input_series:"]
    alerts = []  # (eval_time, alertname, [(labels, annotations)])
    exprs = []  # (eval_time, expr, [(labels, value)])
    if kind == 0:
        err = 6 if fires else 1
        lines += [f"      - series: 'http_requests_total_{f}{{job=\"{job}\",instance=\"{inst}\",status=\"500\"}}'",
                  f"        values: '0+{err}x40'",
                  f"      - series: 'http_requests_total_{f}{{job=\"{job}\",instance=\"{inst}\",status=\"200\"}}'",
                  f"        values: '0+{600 - err}x40'"]
        exp = [({"job": job, "instance": inst, "severity": "page", "system": f"svc{f}"},
                {"summary": f"5xx ratio above 0.5% on {inst}"})] if fires else []
        alerts += [("30s", f"HighErrorRatio{f}", []), ("5m", f"HighErrorRatio{f}", exp)]
        exprs.append(("5m", f"count(http_requests_total_{f})", [("{}", 2)]))
    elif kind == 1:
        slow = "le=\"2.5\"" if fires else "le=\"0.5\""
        for le in ("0.5", "1", "2.5", "+Inf"):
            inc = 10 if (fires and le in ("2.5", "+Inf")) or (not fires) else 0
            lines += [f"      - series: 'http_request_duration_seconds_{f}_bucket{{job=\"{job}\",instance=\"{inst}\",le=\"{le}\"}}'",
                      f"        values: '0+{inc}x40'"]
        exp = [({"job": job, "instance": inst, "severity": "page", "system": f"svc{f}"},
                {"summary": f"p99 latency above 1s on {inst}"})] if fires else []
        alerts += [("5m", f"LatencyP99High{f}", exp)]
        _ = slow
    elif kind == 2:
        depth = 1500 if fires else 900
        lines += [f"      - series: 'queue_depth_{f}{{job=\"{job}\",queue=\"q{g}\"}}'",
                  f"        values: '{depth}x40'"]
        exp = [({"job": job, "queue": f"q{g}", "severity": "warning", "system": f"svc{f}"},
                {"summary": f"queue q{g} holds {depth} jobs"})] if fires else []
        alerts += [("1m", f"QueueTooDeep{f}", []), ("3m", f"QueueTooDeep{f}", exp),
                   ("3m", f"QueueGrowing{f}", [])]
        exprs.append(("3m", f"sum by (job) (queue_depth_{f})", [(f"{{job=\"{job}\"}}", depth)]))
    elif kind == 3:
        vals = "1 1 0x30" if fires else "1x32"
        lines += [f"      - series: 'up{{job=\"{job}\",instance=\"{inst}\"}}'", f"        values: '{vals}'"]
        exp = [({"job": job, "instance": inst, "severity": "page", "system": f"svc{f}"},
                {"summary": f"{inst} down"})] if fires else []
        alerts += [("45s", f"TargetDown{f}", []), ("4m", f"TargetDown{f}", exp)]
        exprs.append(("4m", f"up{{job=\"{job}\"}}", [(f"up{{job=\"{job}\",instance=\"{inst}\"}}", 0 if fires else 1)]))
    else:
        per_step = 60 if fires else 3
        lines += [f"      - series: 'errors_total_{f}{{job=\"{job}\",instance=\"{inst}\"}}'",
                  f"        values: '0+{per_step}x40'"]
        exp = [({"job": job, "severity": "warning", "system": f"svc{f}"},
                {"summary": f"errors high on {job}"})] if fires else []
        alerts += [("5m", f"ErrorsHigh{f}", exp)]
    lines.append("    alert_rule_test:")
    for t, name, exp in alerts:
        lines += [f"      - eval_time: {t}", f"        alertname: {name}"]
        if not exp:
            lines.append("        exp_alerts: []")
            continue
        lines.append("        exp_alerts:")
        for labels, ann in exp:
            lines.append("          - exp_labels:")
            lines += [f"              {k}: \"{v}\"" for k, v in labels.items()]
            lines.append("            exp_annotations:")
            lines += [f"              {k}: \"{v}\"" for k, v in ann.items()]
    if exprs:
        lines.append("    promql_expr_test:")
        for t, expr, samples in exprs:
            lines += [f"      - expr: '{expr}'", f"        eval_time: {t}", "        exp_samples:"]
            for labels, v in samples:
                lines += [f"          - labels: '{labels}'", f"            value: {v}"]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tests", type=int, default=500, help="test groups in all")
    ap.add_argument("--per-file", type=int, default=10, help="test groups per test file")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    files = (a.tests + a.per_file - 1) // a.per_file
    n = 0
    for f in range(files):
        with open(os.path.join(a.out, f"rules_{f:03d}.yml"), "w") as out:
            out.write(RULES.format(f=f))
        groups = []
        for g in range(a.per_file):
            if n == a.tests:
                break
            groups.append(group(f, g))
            n += 1
        with open(os.path.join(a.out, f"rules_{f:03d}_test.yml"), "w") as out:
            out.write(f"rule_files:\n  - rules_{f:03d}.yml\nevaluation_interval: 15s\ntests:\n")
            out.write("\n".join(groups) + "\n")
    print(f"{n} test groups in {files} files: {a.out}")


if __name__ == "__main__":
    main()
