//! `process_*` metrics, named as every Prometheus client library names them, read from
//! `/proc` at scrape time (Linux; elsewhere nothing is exported). prometheus-client has no
//! process collector and these are a few lines of reading `/proc/self`.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second of `/proc/*/stat` times: USER_HZ, 100 on every Linux ABI we run on.
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug, Clone, Copy)]
pub struct ProcessMetrics;

#[derive(Debug, Default, PartialEq)]
struct Reading {
    cpu_seconds: f64,
    start_time_seconds: f64,
    virtual_bytes: f64,
    resident_bytes: f64,
    open_fds: f64,
    max_fds: Option<f64>,
}

impl Collector for ProcessMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(reading) = read() else { return Ok(()) };
        let counter = ConstCounter::new(reading.cpu_seconds);
        counter.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            counter.metric_type(),
        )?)?;
        let mut gauges = vec![
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                reading.start_time_seconds,
            ),
            ("process_virtual_memory_bytes", "Virtual memory size in bytes", reading.virtual_bytes),
            ("process_resident_memory_bytes", "Resident memory size in bytes", reading.resident_bytes),
            ("process_open_fds", "Number of open file descriptors", reading.open_fds),
        ];
        if let Some(max) = reading.max_fds {
            gauges.push(("process_max_fds", "Maximum number of open file descriptors", max));
        }
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

fn read() -> Option<Reading> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let open_fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0);
    parse(&stat, &status, &boot, &limits, open_fds)
}

/// The figures from the texts of `/proc/self/stat`, `/proc/self/status`, `/proc/stat` and
/// `/proc/self/limits`; `None` if one is not as Linux writes it.
fn parse(stat: &str, status: &str, boot: &str, limits: &str, open_fds: usize) -> Option<Reading> {
    // The command name (field 2) may hold spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = stat.get(stat.rfind(')')?.checked_add(2)?..)?.split_whitespace().collect();
    // Field numbers as in proc(5), counted from the state (field 3) at index 0.
    let field = |n: usize| -> Option<f64> { fields.get(n.checked_sub(3)?)?.parse::<f64>().ok() };
    let ticks = field(14)? + field(15)?;
    let start_ticks = field(22)?;
    let virtual_bytes = field(23)?;
    let kib = |key: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line.get(key.len()..)?.split_whitespace().next()?.parse::<f64>().ok()
    };
    let resident_bytes = kib("VmRSS:")? * 1024.0;
    let boot_time: f64 = boot.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()?;
    let max_fds = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|soft| soft.parse::<f64>().ok());
    Some(Reading {
        cpu_seconds: ticks / TICKS_PER_SECOND,
        start_time_seconds: boot_time + start_ticks / TICKS_PER_SECOND,
        virtual_bytes,
        resident_bytes,
        open_fds: open_fds as f64,
        max_fds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (consent (token) op) S 1 4242 4242 0 -1 4194560 3000 0 0 0 250 50 0 0 20 0 9 0 12345 104857600 6400 18446744073709551615";
    const STATUS: &str = "Name:\tconsent\nVmPeak:\t  110000 kB\nVmRSS:\t   25600 kB\nThreads:\t9\n";
    const BOOT: &str = "cpu  1 2 3\nbtime 1700000000\nprocesses 10\n";
    const LIMITS: &str = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1048576              1048576              files\n";

    #[test]
    fn reads_what_linux_writes() {
        let reading = parse(STAT, STATUS, BOOT, LIMITS, 17).unwrap();
        assert_eq!(
            reading,
            Reading {
                cpu_seconds: 3.0,
                start_time_seconds: 1_700_000_123.45,
                virtual_bytes: 104_857_600.0,
                resident_bytes: 25_600.0 * 1024.0,
                open_fds: 17.0,
                max_fds: Some(1_048_576.0),
            }
        );
        assert_eq!(parse("garbage", STATUS, BOOT, LIMITS, 1), None);
        assert_eq!(parse(STAT, "", BOOT, LIMITS, 1), None);
    }

    #[test]
    fn this_process_is_read() {
        let reading = read().unwrap();
        assert!(reading.resident_bytes > 0.0 && reading.open_fds > 0.0);
    }
}
