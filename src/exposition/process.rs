//! Linux process metrics (`process_*`) with the names, types and help texts of Go's
//! client_golang process collector, so existing dashboards and alerts work unchanged.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

/// Collector for `process_*` metrics, read from `/proc/self` on every scrape (nothing off Linux).
#[derive(Debug, Default)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        imp::encode(encoder)
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use prometheus_client::encoding::DescriptorEncoder;

    pub(super) fn encode(_encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        Ok(())
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::fs;

    use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
    use prometheus_client::metrics::MetricType;
    use prometheus_client::metrics::counter::ConstCounter;
    use prometheus_client::metrics::gauge::ConstGauge;

    /// Clock ticks per second for the tick-based fields of `/proc/<pid>/stat`. This is the
    /// kernel's USER_HZ, which is fixed at 100 on every Linux architecture (it is what
    /// `sysconf(_SC_CLK_TCK)` returns), so there is no need to call into libc for it.
    const USER_HZ: f64 = 100.0;

    /// The fields of `/proc/<pid>/stat` that we export, still in clock ticks.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) struct Stat {
        pub(super) utime: u64,
        pub(super) stime: u64,
        pub(super) starttime: u64,
    }

    /// Parses `/proc/<pid>/stat`. The comm field (2) is the executable name in parentheses
    /// and may itself contain spaces and ')', so the numbered fields start after the LAST ')'.
    pub(super) fn parse_stat(content: &str) -> Option<Stat> {
        let (_, rest) = content.rsplit_once(')')?;
        // `rest` starts at field 3 (state); field N of proc(5) is at index N - 3.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Stat {
            utime: field(14)?,
            stime: field(15)?,
            starttime: field(22)?,
        })
    }

    /// Boot time in seconds since the epoch, from the `btime` line of `/proc/stat`.
    pub(super) fn parse_btime(content: &str) -> Option<u64> {
        content
            .lines()
            .find_map(|line| line.strip_prefix("btime "))
            .and_then(|v| v.trim().parse().ok())
    }

    /// A `kB` value of `/proc/<pid>/status` (e.g. `VmRSS`), converted to bytes.
    pub(super) fn parse_status_kb(content: &str, key: &str) -> Option<u64> {
        let value = content.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k == key).then_some(v)
        })?;
        let kb: u64 = value.trim().strip_suffix("kB")?.trim().parse().ok()?;
        kb.checked_mul(1024)
    }

    /// The soft limit of "Max open files" in `/proc/<pid>/limits`; `None` when it is
    /// "unlimited", which Linux does not actually allow for RLIMIT_NOFILE.
    pub(super) fn parse_max_fds(content: &str) -> Option<u64> {
        content
            .lines()
            .find_map(|line| line.strip_prefix("Max open files"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|soft| soft.parse().ok())
    }

    fn open_fds() -> Option<u64> {
        let entries = fs::read_dir("/proc/self/fd").ok()?;
        // Counts the descriptor read_dir itself holds open too, as Go's collector does.
        Some(entries.filter(|e| e.is_ok()).count() as u64)
    }

    fn gauge<N>(
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        value: N,
    ) -> Result<(), std::fmt::Error>
    where
        ConstGauge<N>: EncodeMetric,
    {
        let metric = ConstGauge::new(value);
        metric.encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
    }

    pub(super) fn encode(mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stat = fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| parse_stat(&s));
        let status = fs::read_to_string("/proc/self/status").ok();
        let status_bytes = |key| status.as_deref().and_then(|s| parse_status_kb(s, key));

        // Emitted in name order, as Go's registry would sort them.
        if let Some(stat) = stat {
            // The descriptor name has no `_total`: both text encoders append it to counters.
            let cpu = ConstCounter::new((stat.utime as f64 + stat.stime as f64) / USER_HZ);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                MetricType::Counter,
            )?)?;
        }
        if let Some(max) = fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|s| parse_max_fds(&s))
        {
            gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                max,
            )?;
        }
        if let Some(open) = open_fds() {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors.",
                open,
            )?;
        }
        if let Some(rss) = status_bytes("VmRSS") {
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                rss,
            )?;
        }
        if let Some(stat) = stat {
            // The boot time never changes, and /proc/stat is long (a line per CPU and interrupt
            // counters), so it is read once rather than on every scrape.
            static BTIME: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
            let btime = *BTIME.get_or_init(|| {
                fs::read_to_string("/proc/stat")
                    .ok()
                    .and_then(|s| parse_btime(&s))
            });
            if let Some(btime) = btime {
                gauge(
                    &mut encoder,
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.",
                    btime as f64 + stat.starttime as f64 / USER_HZ,
                )?;
            }
        }
        if let Some(vsize) = status_bytes("VmSize") {
            gauge(
                &mut encoder,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                vsize,
            )?;
        }
        Ok(())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use prometheus_client::encoding::{prometheus_text, text};
    use prometheus_client::registry::Registry;

    use super::imp::{Stat, parse_btime, parse_max_fds, parse_stat, parse_status_kb};
    use super::*;

    const NAMES: [&str; 6] = [
        "process_cpu_seconds_total",
        "process_max_fds",
        "process_open_fds",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
        "process_virtual_memory_bytes",
    ];

    fn registry() -> Registry {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ProcessCollector));
        registry
    }

    /// The value of the sample line `name <value>`, failing the test if it is missing.
    fn sample(exposition: &str, name: &str) -> f64 {
        let line = exposition
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no sample {name} in:\n{exposition}"));
        let value = line.split_whitespace().nth(1).unwrap_or_default();
        value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"))
    }

    fn check_values(exposition: &str) {
        for name in NAMES {
            sample(exposition, name);
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs_f64();
        assert!(sample(exposition, "process_cpu_seconds_total") >= 0.0);
        assert!(sample(exposition, "process_resident_memory_bytes") > 1024.0 * 1024.0);
        assert!(
            sample(exposition, "process_virtual_memory_bytes")
                >= sample(exposition, "process_resident_memory_bytes")
        );
        assert!(sample(exposition, "process_open_fds") >= 3.0);
        assert!(sample(exposition, "process_max_fds") >= sample(exposition, "process_open_fds"));
        let start = sample(exposition, "process_start_time_seconds");
        assert!(start <= now, "start {start} after now {now}");
        assert!(start > now - 86_400.0, "start {start} over a day ago");
    }

    #[test]
    fn openmetrics_exposition() {
        let mut out = String::new();
        text::encode(&mut out, &registry()).expect("encode");
        check_values(&out);
        assert!(
            out.contains("# TYPE process_cpu_seconds counter\n"),
            "{out}"
        );
        assert!(
            out.contains(
                "# HELP process_cpu_seconds Total user and system CPU time spent in seconds.\n"
            ),
            "{out}"
        );
        assert!(
            out.contains("# TYPE process_resident_memory_bytes gauge\n"),
            "{out}"
        );
        assert!(!out.contains("_total_total"), "{out}");
        assert!(out.ends_with("# EOF\n"), "{out}");
    }

    #[test]
    fn prometheus_text_exposition() {
        let mut out = String::new();
        prometheus_text::encode(&mut out, &registry()).expect("encode");
        check_values(&out);
        assert!(
            out.contains("# TYPE process_cpu_seconds_total counter\n"),
            "{out}"
        );
        assert!(
            out.contains(
                "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
            ),
            "{out}"
        );
        assert!(out.contains("# TYPE process_open_fds gauge\n"), "{out}");
        assert!(!out.contains("_total_total"), "{out}");
    }

    #[test]
    fn stat_comm_with_spaces_and_parens() {
        let line = "4242 (evil ) name) (x) S 1 4242 4242 0 -1 4194560 1200 0 3 0 \
                    57 31 0 0 20 0 4 0 123456 10000000 2000 18446744073709551615 \
                    1 1 0 0 0 0 0 4096 17575 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                utime: 57,
                stime: 31,
                starttime: 123456,
            })
        );
        assert_eq!(parse_stat("4242 (short) S 1 2"), None);
        assert_eq!(parse_stat("no parens at all"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn proc_file_parsers() {
        assert_eq!(
            parse_btime("cpu  1 2 3\nbtime 1764275000\nprocesses 7\n"),
            Some(1_764_275_000)
        );
        assert_eq!(parse_btime("cpu 1 2 3\n"), None);

        let status = "Name:\tx\nVmSize:\t  123456 kB\nVmRSS:\t    2048 kB\n";
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(2048 * 1024));
        assert_eq!(parse_status_kb(status, "VmSize"), Some(123_456 * 1024));
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
        assert_eq!(parse_status_kb("VmRSS:\tlots kB\n", "VmRSS"), None);

        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_fds(limits), Some(1024));
        assert_eq!(
            parse_max_fds(
                "Max open files            unlimited            unlimited            files\n"
            ),
            None
        );
    }
}
