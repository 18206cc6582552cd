//! Where the CPU went during a measurement: user + system time of this
//! process (the service and the load generator), of every `postgres`,
//! `nats-server` and `redis-server` process, and the machine's idle time,
//! read from `/proc` before and after (Linux only; elsewhere all zero).
//!
//! Divided by the operations done, it gives the CPU each operation costs
//! in each component, which bounds what any ratio to a ceiling can reach on
//! this machine: a path cannot run faster than the cores divided by its
//! CPU per operation.

use std::time::Instant;

/// Components whose CPU is counted, by process name.
const COMPONENTS: [&str; 3] = ["postgres", "nats-server", "redis-server"];

/// Clock ticks per second of `/proc`'s times (Linux's USER_HZ).
const TICKS_PER_SEC: f64 = 100.0;

/// CPU ticks so far: this process, each of [`COMPONENTS`], machine idle.
#[derive(Clone, Copy, Default)]
struct Ticks {
    own: u64,
    components: [u64; 3],
    idle: u64,
    total: u64,
}

fn process_ticks(stat: &str) -> Option<(String, u64)> {
    // pid (comm) state ppid ... utime(14) stime(15): comm may hold spaces.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = stat.get(close + 2..)?.split(' ').collect();
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

fn read() -> Ticks {
    let mut ticks = Ticks::default();
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        ticks.own = process_ticks(&stat).map(|(_, t)| t).unwrap_or(0);
    }
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            if !entry
                .file_name()
                .to_string_lossy()
                .starts_with(|c: char| c.is_ascii_digit())
            {
                continue;
            }
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            if let Some((comm, t)) = process_ticks(&stat) {
                if let Some(i) = COMPONENTS.iter().position(|c| *c == comm) {
                    ticks.components[i] += t;
                }
            }
        }
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/stat") {
        if let Some(line) = stat.lines().next() {
            let fields: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|f| f.parse().ok())
                .collect();
            ticks.total = fields.iter().take(8).sum();
            ticks.idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
        }
    }
    ticks
}

/// A measurement in progress.
pub struct Meter {
    start: Ticks,
    at: Instant,
}

/// CPU per operation of one measurement, in microseconds.
#[derive(Clone, Copy, Default)]
pub struct PerOp {
    /// Operations per second.
    pub rate: f64,
    /// This process (service and load generator).
    pub own: f64,
    /// postgres, nats-server, redis-server.
    pub components: [f64; 3],
    /// Share of the machine's CPU time that was idle.
    pub idle: f64,
}

impl PerOp {
    /// CPU of every counted component per operation.
    pub fn total(&self) -> f64 {
        self.own + self.components.iter().sum::<f64>()
    }
}

impl Meter {
    pub fn start() -> Self {
        Self {
            start: read(),
            at: Instant::now(),
        }
    }

    /// The CPU per operation since [`Meter::start`], `rate` operations per second.
    pub fn finish(self, rate: f64) -> PerOp {
        let end = read();
        let ops = rate * self.at.elapsed().as_secs_f64();
        let us = |ticks: u64| {
            if ops > 0.0 {
                ticks as f64 / TICKS_PER_SEC * 1e6 / ops
            } else {
                f64::NAN
            }
        };
        let total = end.total.saturating_sub(self.start.total).max(1);
        PerOp {
            rate,
            own: us(end.own.saturating_sub(self.start.own)),
            components: std::array::from_fn(|i| {
                us(end.components[i].saturating_sub(self.start.components[i]))
            }),
            idle: end.idle.saturating_sub(self.start.idle) as f64 / total as f64,
        }
    }
}

/// Prints the CPU table of the measured rows.
pub fn print(rows: &[(&str, PerOp)]) {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!();
    println!(
        "CPU per operation, microseconds (from /proc; {cores} cores give {} us of CPU per second):",
        cores * 1_000_000
    );
    println!();
    println!("| run | ops/s | this process (service + load) | postgres | nats-server | redis-server | all | bound: cores / all | machine idle |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, r) in rows {
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0}/s | {:.0} % |",
            r.rate,
            r.own,
            r.components[0],
            r.components[1],
            r.components[2],
            r.total(),
            cores as f64 * 1e6 / r.total(),
            r.idle * 100.0
        );
    }
}
