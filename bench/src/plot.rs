//! The report: a markdown table and two PNG plots (refresh lateness, memory against N).

use std::path::Path;

use plotters::prelude::*;

use crate::Result_;
use crate::cluster::Error;

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

fn register_font() -> Result<(), Error> {
    let bytes: &'static [u8] = Box::leak(std::fs::read(FONT)?.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).map_err(|_| "cannot load the plot font")?;
    Ok(())
}

pub fn markdown(results: &[Result_], machine: &str) -> String {
    let mut out = format!(
        "Measured on {machine} with `make bench`.\n\n| | {} |\n|---|{}\n",
        results.iter().map(|r| format!("N = {}", r.n)).collect::<Vec<_>>().join(" | "),
        "---|".repeat(results.len())
    );
    let row = |name: &str, f: &dyn Fn(&Result_) -> String| {
        format!("| {name} | {} |\n", results.iter().map(f).collect::<Vec<_>>().join(" | "))
    };
    out += &row("time to all Ready", &|r| format!("{:.1} s", r.time_to_all_ready_s));
    out +=
        &row("floor: the same writes (Secret, status, Event) by a minimal client", &|r| format!("{:.1} s", r.floor_s));
    out += &row("ratio to the floor (target <= 1.25)", &|r| format!("{:.2}", r.ready_over_floor));
    out += &row("floor without the Event / ratio", &|r| {
        format!("{:.1} s / {:.2}", r.floor_without_events_s, r.ready_over_floor_without_events)
    });
    out += &row("token lifetime (FDX, as MX's)", &|r| format!("{} s", r.token_lifetime_s));
    out += &row("refreshes in the steady window", &|r| format!("{} in {:.0} s", r.refreshes, r.steady_window_s));
    out += &row("refresh lateness p50 / p99 / max (target p99 < 1 s)", &|r| {
        format!("{:.0} / {:.0} / {:.0} ms", r.lateness_p50_ms, r.lateness_p99_ms, r.lateness_max_ms)
    });
    out += &row("tokens that ever expired in their Secret (target 0)", &|r| r.expired_tokens.to_string());
    out += &row("API writes per routine renewal (floor 1.00: the Secret; target <= 1.05)", &|r| {
        format!("{:.3}", r.api_writes_per_refresh)
    });
    out += &row("CPU per renewal: kube-apiserver / etcd", &|r| {
        format!("{:.1} / {:.1} ms", r.apiserver_cpu_ms_per_refresh, r.etcd_cpu_ms_per_refresh)
    });
    let requests = |counts: &std::collections::BTreeMap<String, f64>| {
        counts.iter().map(|(k, v)| format!("{k} {v:.2}")).collect::<Vec<_>>().join(", ")
    };
    out += &row("API requests per object: floor client", &|r| requests(&r.floor_requests_per_object));
    out += &row("API requests per object: operator to all Ready", &|r| requests(&r.ready_requests_per_object));
    out += &row("API requests per refresh (steady)", &|r| requests(&r.steady_requests_per_refresh));
    out += &row("upstream requests in the window (FDX / collection point / OAuth)", &|r| {
        format!(
            "{} / {} / {}",
            r.upstream_requests.get("fdx_token").copied().unwrap_or(0),
            r.upstream_requests.get("collection_point_token").copied().unwrap_or(0),
            r.upstream_requests.get("onetrust_oauth").copied().unwrap_or(0)
        )
    });
    out += &row("OAuth token requests in the whole run (credentials)", &|r| {
        format!("{} ({})", r.oauth_requests, r.onetrust_credentials)
    });
    out += &row("RSS peak / steady (target steady < 40 MiB at 10,000)", &|r| {
        format!("{:.1} / {:.1} MiB", r.rss_peak_mib, r.rss_steady_mib)
    });
    out += &row("memory per 1,000 ConsentTokens", &|r| {
        format!("{:.2} MiB (idle {:.1} MiB)", r.mib_per_1000, r.rss_idle_mib)
    });
    out += &row("CPU seconds per minute (steady)", &|r| format!("{:.2}", r.cpu_seconds_per_minute));
    let cores = |cores: &std::collections::BTreeMap<String, f64>| {
        let get = |name: &str| cores.get(name).copied().unwrap_or(0.0);
        format!(
            "{:.2} / {:.2} / {:.2} / {:.2} / {:.2}",
            get("kube-apiserver"),
            get("etcd"),
            get("kube-controller-manager"),
            get("operator"),
            get("bench")
        )
    };
    out += &row(
        "cores used, floor client writing: kube-apiserver / etcd / kube-controller-manager / - / bench (the floor client)",
        &|r| cores(&r.floor_cores),
    );
    out += &row(
        "cores used, operator to all Ready: kube-apiserver / etcd / kube-controller-manager / operator / bench (fake provider, watch)",
        &|r| cores(&r.ready_cores),
    );
    out += &row(
        "cores used, steady: kube-apiserver / etcd / kube-controller-manager / operator / bench (fake provider, watch)",
        &|r| cores(&r.steady_cores),
    );
    out += &row("upstream requests per minute: steady average / steady busiest", &|r| {
        format!("{} / {}", r.normal_minute_requests, r.steady_peak_minute_requests)
    });
    out += &row("upstream requests: 1st / 2nd minute after a SIGKILL restart", &|r| {
        restart_figure(r, format!("{} / {}", r.restart_first_minute_requests, r.restart_second_minute_requests))
    });
    out += &row("restart busiest minute over steady average (target <= 1.2) / over steady busiest", &|r| {
        restart_figure(r, format!("{:.2} / {:.2}", r.restart_peak_ratio, r.restart_peak_over_steady_peak))
    });
    out += &row("time until all Ready after a restart", &|r| {
        restart_figure(r, format!("{:.1} s", r.restart_time_to_all_ready_s))
    });
    out
}

/// A run with `--no-restart` leaves the restart figures at zero, and a real restart always takes
/// some time to bring every object to Ready: say "not measured" rather than print zeros that
/// read like a perfect restart.
fn restart_figure(r: &Result_, figure: String) -> String {
    if r.restart_time_to_all_ready_s > 0.0 { figure } else { "not measured (`--no-restart`)".to_owned() }
}

/// Cumulative distribution of refresh lateness, one line per N.
pub fn lateness(results: &[Result_], path: &Path) -> Result<(), Error> {
    register_font()?;
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = results.iter().flat_map(|r| r.lateness_ms.iter().copied()).fold(1.0f64, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption("Refresh lateness against the scheduled time", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0..max * 1.05, 0.0..1.0)?;
    chart.configure_mesh().x_desc("lateness (ms)").y_desc("share of refreshes").draw()?;
    for (i, r) in results.iter().enumerate() {
        let mut sorted = r.lateness_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let total = sorted.len().max(1) as f64;
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                sorted.iter().enumerate().map(|(k, v)| (*v, (k + 1) as f64 / total)),
                color.stroke_width(2),
            ))?
            .label(format!("N = {}", r.n))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}

/// Steady RSS against N, with the idle process at N = 0.
pub fn memory(results: &[Result_], path: &Path) -> Result<(), Error> {
    register_font()?;
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut points: Vec<(f64, f64)> = Vec::new();
    if let Some(first) = results.first() {
        points.push((0.0, first.rss_idle_mib));
    }
    points.extend(results.iter().map(|r| (r.n as f64, r.rss_steady_mib)));
    let max_n = points.iter().map(|p| p.0).fold(1.0, f64::max);
    let max_mib = points.iter().map(|p| p.1).fold(TARGET_MIB, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption("Operator memory (steady RSS) against the number of ConsentTokens", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0..max_n * 1.05, 0.0..max_mib * 1.1)?;
    chart.configure_mesh().x_desc("ConsentTokens").y_desc("RSS (MiB)").draw()?;
    chart.draw_series(LineSeries::new(points.clone(), BLUE.stroke_width(2)))?;
    chart.draw_series(points.iter().map(|p| Circle::new(*p, 5, BLUE.filled())))?;
    chart.draw_series(LineSeries::new(vec![(0.0, TARGET_MIB), (10_000.0, TARGET_MIB)], RED.mix(0.6)))?;
    root.present()?;
    Ok(())
}

/// The steady RSS target at 10,000 ConsentTokens.
const TARGET_MIB: f64 = 40.0;

/// Time to all Ready against N, next to the floor (the same writes by a minimal client).
pub fn time_to_ready(results: &[Result_], path: &Path) -> Result<(), Error> {
    register_font()?;
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let operator: Vec<(f64, f64)> = results.iter().map(|r| (r.n as f64, r.time_to_all_ready_s)).collect();
    let floor: Vec<(f64, f64)> = results.iter().map(|r| (r.n as f64, r.floor_s)).collect();
    let max_n = operator.iter().map(|p| p.0).fold(1.0, f64::max);
    let max_s = operator.iter().chain(&floor).map(|p| p.1).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption("Time to all Ready against the number of ConsentTokens", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0..max_n * 1.05, 0.0..max_s * 1.1)?;
    chart.configure_mesh().x_desc("ConsentTokens").y_desc("seconds").draw()?;
    for (points, color, label) in [(operator, BLUE, "operator"), (floor, BLACK, "floor (minimal client)")] {
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 5, color.filled())))?;
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}
