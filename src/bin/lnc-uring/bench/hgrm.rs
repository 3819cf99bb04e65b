//! Latency summaries: the figures every latency bench prints, and HdrHistogram's text
//! percentile distribution (`.hgrm`) for `--hdr-out`.

use std::io::{self, Write};
use std::path::Path;

use hdrhistogram::Histogram;
use lnc_uring::Error;

/// Latencies in nanoseconds, with the exact largest one (the histogram's own maximum is
/// rounded up to its bucket).
pub(crate) struct Latencies {
    pub(crate) hist: Histogram<u64>,
    max_ns: u64,
}

impl Latencies {
    pub(crate) fn new() -> Latencies {
        Latencies {
            // Auto-resizing, three significant digits.
            hist: Histogram::new(3).expect("3 significant digits are valid"),
            max_ns: 0,
        }
    }

    pub(crate) fn record(&mut self, ns: u64) {
        // An auto-resizing histogram takes any u64.
        let _ = self.hist.record(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    pub(crate) fn count(&self) -> u64 {
        self.hist.len()
    }

    /// The value at quantile `q` in microseconds (0 when nothing was recorded): the top
    /// of its histogram bucket, but never above the largest value recorded.
    pub(crate) fn us(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            return 0.0;
        }
        self.hist.value_at_quantile(q).min(self.max_ns) as f64 / 1000.0
    }

    pub(crate) fn max_us(&self) -> f64 {
        self.max_ns as f64 / 1000.0
    }

    pub(crate) fn mean_us(&self) -> f64 {
        self.hist.mean() / 1000.0
    }

    /// `p50_us`, `p99_us`, `p999_us`, `p9999_us`, `max_us`, `mean_us` into `obj`.
    pub(crate) fn add_json(&self, obj: &mut serde_json::Map<String, serde_json::Value>) {
        for (k, v) in [
            ("p50_us", self.us(0.5)),
            ("p99_us", self.us(0.99)),
            ("p999_us", self.us(0.999)),
            ("p9999_us", self.us(0.9999)),
            ("max_us", self.max_us()),
            ("mean_us", self.mean_us()),
        ] {
            obj.insert(k.into(), serde_json::json!(v));
        }
    }

    /// `p50 … µs  p99 … µs  p99.9 … µs  p99.99 … µs  max … µs`.
    pub(crate) fn line(&self) -> String {
        format!(
            "p50 {:.1} µs  p99 {:.1} µs  p99.9 {:.1} µs  p99.99 {:.1} µs  max {:.1} µs",
            self.us(0.5),
            self.us(0.99),
            self.us(0.999),
            self.us(0.9999),
            self.max_us()
        )
    }

    /// Writes the distribution in microseconds to `path` (see [`write_percentiles`]).
    pub(crate) fn write_hgrm(&self, path: &Path) -> Result<(), Error> {
        let io_err =
            |e: io::Error| Error::Config(format!("cannot write --hdr-out {}: {e}", path.display()));
        let mut out = io::BufWriter::new(std::fs::File::create(path).map_err(io_err)?);
        write_percentiles(&self.hist, 1000.0, 5, &mut out).map_err(io_err)?;
        out.flush().map_err(io_err)
    }
}

/// The percentile distribution of `h` as HdrHistogram's `outputPercentileDistribution`
/// prints it: a `Value Percentile TotalCount 1/(1-Percentile)` header, one line per
/// step of the crate's quantile iterator (`ticks` steps per halving of the distance to
/// 100 %), values divided by `scale`, then the mean, deviation, maximum, count and
/// bucket layout as `#[...]` lines. Tools that read `.hgrm` files (the HdrHistogram
/// plotter among them) take it as it is.
pub(crate) fn write_percentiles(
    h: &Histogram<u64>,
    scale: f64,
    ticks: u32,
    out: &mut impl Write,
) -> io::Result<()> {
    let d = usize::from(h.sigfig());
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    let mut total = 0u64;
    for v in h.iter_quantiles(ticks) {
        total += v.count_since_last_iteration();
        let value = v.value_iterated_to() as f64 / scale;
        let q = v.quantile_iterated_to();
        if q < 1.0 {
            writeln!(
                out,
                "{value:12.d$} {q:2.12} {total:10} {:14.2}",
                1.0 / (1.0 - q)
            )?;
        } else {
            writeln!(out, "{value:12.d$} {q:2.12} {total:10}")?;
        }
    }
    let max = if h.is_empty() { 0 } else { h.max() };
    writeln!(
        out,
        "#[Mean    = {:12.d$}, StdDeviation   = {:12.d$}]",
        h.mean() / scale,
        h.stdev() / scale
    )?;
    writeln!(
        out,
        "#[Max     = {:12.d$}, Total count    = {:12}]",
        max as f64 / scale,
        h.len()
    )?;
    // The sub-bucket count: unit resolution up to 2 × 10^sigfig, a power of two.
    let sub_buckets = (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two();
    writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_buckets
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hgrm_layout() {
        let mut h = Histogram::<u64>::new(3).unwrap();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let mut out = Vec::new();
        write_percentiles(&h, 1000.0, 5, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines[1], "");
        // First step: the smallest value, quantile 0.
        assert_eq!(
            lines[2],
            "       1.000 0.000000000000          1           1.00"
        );
        let rows: Vec<Vec<&str>> = lines[2..]
            .iter()
            .take_while(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().collect())
            .collect();
        // Cumulative counts never fall, and the last row is the 100 % one, without the
        // 1/(1-p) column.
        let counts: Vec<u64> = rows.iter().map(|r| r[2].parse().unwrap()).collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]));
        let last = rows.last().unwrap();
        assert_eq!(last.len(), 3);
        assert_eq!(last[1], "1.000000000000");
        assert_eq!(last[2], "1000");
        assert!(rows[..rows.len() - 1].iter().all(|r| r.len() == 4));
        let median = rows
            .iter()
            .find(|r| r[1] == "0.500000000000")
            .expect("a 50 % row");
        assert_eq!(median[0], "500.223");
        assert!(text.contains("#[Max     =     1000.447, Total count    =         1000]"));
        assert!(text.contains("#[Buckets = "));
        assert!(text.ends_with("SubBuckets     =         2048]\n"));
    }
}
