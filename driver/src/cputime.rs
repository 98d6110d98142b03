//! CPU time of another process to the nanosecond, for the load testers' `--server-pid`.
//!
//! `/proc/PID/stat` counts a process's time in clock ticks (10 ms): over a 20 s run of a
//! server spending 0.2 CPU s, one tick is 5% of the figure. The process's CPU-time clock
//! (`clock_getcpuclockid`) is the scheduler's own sum, in nanoseconds.

/// CPU seconds (all threads, user and system together) process `pid` has run, from its
/// CPU-time clock; `None` where there is no such clock (not Linux, no such process).
#[cfg(target_os = "linux")]
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `clock_getcpuclockid` writes one `clockid_t` through the pointer, which points
    // at a live local of that type.
    if unsafe { libc::clock_getcpuclockid(pid, &mut clock) } != 0 {
        return None;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` through the pointer, which points at a
    // live local of that type.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    Some(ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9)
}

/// No CPU-time clock of another process outside Linux.
#[cfg(not(target_os = "linux"))]
pub fn process_cpu_seconds(_pid: u32) -> Option<f64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn a_busy_process_is_measured_finer_than_a_tick() {
        let me = std::process::id();
        let before = process_cpu_seconds(me).expect("own clock");
        // Spin for 3 ms of CPU: less than one /proc tick.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(3) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let spent = process_cpu_seconds(me).expect("own clock") - before;
        assert!(spent > 0.001 && spent < 0.5, "{spent}");
        assert_eq!(process_cpu_seconds(u32::MAX), None, "no such process");
    }
}
