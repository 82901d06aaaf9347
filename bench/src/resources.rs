//! Per-scenario resource use: each process's CPU (share of one core) and peak RSS, and the machine's busy
//! share. Redis and PostgreSQL are counted by process name, so on a shared machine they include whatever
//! else those servers did meanwhile; processes that exit during the scenario are not counted.

use std::collections::HashMap;
use std::time::Instant;

use crate::procfs;

/// Which processes a row of the CPU table adds up.
#[derive(Debug, Clone)]
pub enum Pids {
    /// One process we started: its peak RSS is reported too.
    One(u32),
    /// Every process with this command name (`postgres`, `redis-server`).
    Named(&'static str),
}

#[derive(Debug, Clone)]
pub struct Tracked {
    pub name: String,
    pub pids: Pids,
}

impl Tracked {
    pub fn one(name: &str, pid: u32) -> Self {
        Self {
            name: name.to_owned(),
            pids: Pids::One(pid),
        }
    }

    pub fn named(name: &str, comm: &'static str) -> Self {
        Self {
            name: name.to_owned(),
            pids: Pids::Named(comm),
        }
    }

    fn pids(&self) -> Vec<u32> {
        match self.pids {
            Pids::One(pid) => vec![pid],
            Pids::Named(comm) => procfs::pids_named(comm),
        }
    }
}

/// Started at the beginning of a scenario; [`Probe::finish`] gives its [`Usage`].
#[derive(Debug)]
pub struct Probe {
    tracked: Vec<Tracked>,
    started: Instant,
    ticks: Vec<HashMap<u32, u64>>,
    machine: Option<procfs::MachineTicks>,
    /// Whether every peak could be reset (else peaks are since the process started).
    peaks_reset: bool,
}

/// What a scenario cost.
#[derive(Debug, Clone)]
pub struct Usage {
    /// (name, % of one core).
    pub cpu: Vec<(String, f64)>,
    /// Busy share of all cores, in %.
    pub machine_busy: Option<f64>,
    /// Interrupt handling's share of all cores, in % (part of `machine_busy`).
    pub irq: Option<f64>,
    /// (name, peak RSS in bytes) of the processes tracked one by one.
    pub peaks: Vec<(String, u64)>,
    pub peaks_reset: bool,
}

impl Probe {
    /// Starts measuring, resetting the peak RSS of the processes tracked one by one.
    pub fn start(tracked: Vec<Tracked>) -> Self {
        let mut peaks_reset = true;
        for t in &tracked {
            if let Pids::One(pid) = t.pids {
                peaks_reset &= procfs::reset_peak_rss(pid);
            }
        }
        Self::start_keeping_peaks(tracked, peaks_reset)
    }

    /// Starts measuring CPU without resetting peaks (a second phase of the same scenario).
    pub fn start_keeping_peaks(tracked: Vec<Tracked>, peaks_reset: bool) -> Self {
        let ticks = tracked.iter().map(read_ticks).collect();
        Self {
            tracked,
            started: Instant::now(),
            ticks,
            machine: procfs::machine_ticks(),
            peaks_reset,
        }
    }

    pub fn finish(self) -> Usage {
        let wall = self.started.elapsed().as_secs_f64().max(1e-3);
        let per_second = procfs::ticks_per_second() as f64;
        let cpu = self
            .tracked
            .iter()
            .zip(&self.ticks)
            .map(|(t, before)| {
                let after = read_ticks(t);
                let spent: u64 = after
                    .iter()
                    .map(|(pid, now)| now.saturating_sub(*before.get(pid).unwrap_or(&0)))
                    .sum();
                (t.name.clone(), 100.0 * spent as f64 / per_second / wall)
            })
            .collect();
        let (machine_busy, irq) = match (self.machine, procfs::machine_ticks()) {
            (Some(t0), Some(t1)) if t1.total > t0.total => {
                let total = (t1.total - t0.total) as f64;
                (
                    Some(100.0 * (t1.busy - t0.busy) as f64 / total),
                    Some(100.0 * (t1.irq - t0.irq) as f64 / total),
                )
            }
            _ => (None, None),
        };
        let peaks = self
            .tracked
            .iter()
            .filter_map(|t| match t.pids {
                Pids::One(pid) => Some((t.name.clone(), procfs::peak_rss(pid)?)),
                Pids::Named(_) => None,
            })
            .collect();
        Usage {
            cpu,
            machine_busy,
            irq,
            peaks,
            peaks_reset: self.peaks_reset,
        }
    }
}

fn read_ticks(tracked: &Tracked) -> HashMap<u32, u64> {
    tracked
        .pids()
        .into_iter()
        .filter_map(|pid| Some((pid, procfs::cpu_ticks(pid)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_process_shows_cpu_and_a_peak() {
        let me = std::process::id();
        let probe = Probe::start(vec![
            Tracked::one("me", me),
            Tracked::named("none", "no-such-comm"),
        ]);
        // Burn CPU until the tick counter has moved (bounded: 5 s).
        let start_ticks = procfs::cpu_ticks(me).unwrap();
        let until = Instant::now() + std::time::Duration::from_secs(5);
        let mut x = 0u64;
        while Instant::now() < until && procfs::cpu_ticks(me).unwrap() < start_ticks + 2 {
            for _ in 0..100_000 {
                x = x.wrapping_mul(31).wrapping_add(7);
            }
        }
        assert!(x != 1);
        let usage = probe.finish();
        assert_eq!(usage.cpu.len(), 2);
        assert!(usage.cpu[0].1 > 0.0, "{usage:?}");
        assert_eq!(usage.cpu[1].1, 0.0);
        assert_eq!(usage.peaks.len(), 1);
        assert!(usage.peaks[0].1 > 0);
    }
}
