//! The exposition body of the peer target (`../shared/peer/target.py`), for the benches that
//! ingest it (`memory.rs`, `ingest.rs`).

const PAD_GROUPS: usize = 256;

/// The peer target's padding series at scrape `step`: counters shared per group, advancing by
/// a per-group rate, and gauges with three decimals, as `target.py` renders them.
pub fn body(series: usize, step: u64) -> String {
    let mut out = String::with_capacity(series * 64);
    out.push_str("# TYPE scaipad_ops_total counter\n# TYPE scaipad_level gauge\n");
    for g in 0..PAD_GROUPS {
        let counter = 1000.0 + step as f64 * (0.1 + (g % 50) as f64);
        let gauge = ((g as u64 * 7919 + step * 104_729) % 1_000_000) as f64 / 1000.0;
        for i in (g..series).step_by(PAD_GROUPS) {
            let shard = i % 64;
            if i % 5 == 4 {
                out.push_str(&format!(
                    "scaipad_level{{shard=\"s{shard:02}\",idx=\"{i:06}\",group=\"g{g:03}\"}} {gauge:.3}\n"
                ));
            } else {
                out.push_str(&format!(
                    "scaipad_ops_total{{shard=\"s{shard:02}\",idx=\"{i:06}\",group=\"g{g:03}\"}} {}\n",
                    counter.floor()
                ));
            }
        }
    }
    out
}
