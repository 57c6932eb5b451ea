//! The poll window: while a process is serving I/O, low-priority threads keep CPUs out of the
//! idle state, so the next request's wake-up does not pay for waking an idle CPU.
//!
//! On a virtual machine an idle vCPU halts into the hypervisor; waking it again costs tens of
//! microseconds (40–60 µs on the Firecracker VMs this was measured on, where the guest's own
//! halt polling is off: `guest_halt_poll_ns` is 0). A replicated write crosses more processes
//! than a single-process server does (client → engine → replica → engine → client), and each
//! crossing may land on a halted CPU. While requests keep arriving, [`PollWindow`] threads spin
//! at `SCHED_IDLE` priority, the lowest there is: they run only on a CPU that would otherwise
//! halt, and any runnable thread preempts them at once. The scheduler also counts a CPU that
//! runs only `SCHED_IDLE` threads as idle when it places a woken thread, so woken threads land
//! on the warm CPUs.
//!
//! A window after the last request, the threads park on a futex: an idle process uses no CPU.
//! This is the guest kernel's halt polling (`cpuidle-haltpoll`) done in user space and scoped
//! to the time the process has I/O to serve; a window of zero turns it off.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How often a spinning thread looks at the clock and the activity counter.
const SPINS_PER_CHECK: u32 = 64;

/// The process-wide poll window, once [`install`]ed.
static INSTALLED: OnceLock<Arc<PollWindow>> = OnceLock::new();

/// Keeps `threads` CPUs warm for `window` after each call to [`PollWindow::note_activity`].
#[derive(Debug)]
pub struct PollWindow {
    window: Duration,
    /// Bumped on every request; a spinning thread restarts its window when it changes.
    activity: AtomicU64,
    /// True while the threads are parked (or about to park): the next activity wakes them.
    parked: AtomicBool,
    wake: Mutex<u64>,
    woken: Condvar,
}

impl PollWindow {
    /// Starts `threads` polling threads; `None` when the window is zero or `threads` is 0.
    pub fn start(window: Duration, threads: usize) -> Option<Arc<PollWindow>> {
        if window.is_zero() || threads == 0 {
            return None;
        }
        let poll = Arc::new(PollWindow {
            window,
            activity: AtomicU64::new(0),
            parked: AtomicBool::new(true),
            wake: Mutex::new(0),
            woken: Condvar::new(),
        });
        for index in 0..threads {
            let poll = Arc::clone(&poll);
            let spawned = std::thread::Builder::new()
                .name(format!("poll-window-{index}"))
                .spawn(move || poll.run());
            if let Err(e) = spawned {
                tracing::warn!("poll window thread not started: {e}");
            }
        }
        Some(poll)
    }

    /// Records that a request arrived: the polling threads keep their CPUs warm for another
    /// window. Costs one atomic add while they run; wakes them when they are parked.
    pub fn note_activity(&self) {
        self.activity.fetch_add(1, Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst) && self.parked.swap(false, Ordering::AcqRel) {
            let mut generation = self.wake.lock().unwrap_or_else(|e| e.into_inner());
            *generation += 1;
            self.woken.notify_all();
        }
    }

    fn run(&self) {
        lower_to_idle_priority();
        let mut seen_generation = 0;
        loop {
            let last_seen = self.spin_until_quiet();
            // Park; note_activity flips `parked` back and bumps the generation to wake us.
            self.parked.store(true, Ordering::SeqCst);
            // Activity noted between the last look and `parked` being set did not wake us.
            if self.activity.load(Ordering::SeqCst) != last_seen
                && self.parked.swap(false, Ordering::AcqRel)
            {
                continue;
            }
            let mut generation = self.wake.lock().unwrap_or_else(|e| e.into_inner());
            while *generation == seen_generation {
                generation = self
                    .woken
                    .wait(generation)
                    .unwrap_or_else(|e| e.into_inner());
            }
            seen_generation = *generation;
        }
    }

    /// Spins until no activity was noted for a whole window; returns the last count seen.
    fn spin_until_quiet(&self) -> u64 {
        let mut last = self.activity.load(Ordering::Relaxed);
        let mut quiet_since = Instant::now();
        loop {
            for _ in 0..SPINS_PER_CHECK {
                std::hint::spin_loop();
            }
            let now = self.activity.load(Ordering::Relaxed);
            if now != last {
                last = now;
                quiet_since = Instant::now();
            } else if quiet_since.elapsed() >= self.window {
                return last;
            }
        }
    }
}

/// Installs the process-wide poll window used by [`note_activity`]; a second call is ignored.
pub fn install(window: Duration, threads: usize) {
    if let Some(poll) = PollWindow::start(window, threads) {
        let _ = INSTALLED.set(poll);
    }
}

/// How many [`Suppressed`] guards are alive: while any is, requests do not open the window.
static SUPPRESSED: AtomicUsize = AtomicUsize::new(0);

/// Notes a request on the process-wide poll window, if one is installed and not suppressed.
#[inline]
pub fn note_activity() {
    if SUPPRESSED.load(Ordering::Relaxed) > 0 {
        return;
    }
    if let Some(poll) = INSTALLED.get() {
        poll.note_activity();
    }
}

/// Keeps the poll window shut while it lives. A process that serves a kernel block device
/// through FUSE keeps its CPUs busy with the loop driver's and the FUSE threads' work: there
/// the spinning threads take CPU time those need (measured, 2 vCPUs: 4k random writes at
/// QD32 went from 14.6k to 25.9k IOPS, QD1 reads from 3.1k to 3.6k, with the window shut).
#[derive(Debug)]
pub struct Suppressed(());

/// Shuts the poll window until the guard is dropped (guards nest).
pub fn suppress() -> Suppressed {
    SUPPRESSED.fetch_add(1, Ordering::SeqCst);
    Suppressed(())
}

impl Drop for Suppressed {
    fn drop(&mut self) {
        SUPPRESSED.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The number of polling threads for this machine: one per CPU, at most two. Two are enough
/// for the CPUs a request's path wakes; more would only burn power.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(2))
}

/// Whether this process runs under a CPU quota (a Kubernetes CPU limit, cgroup v1 or v2).
/// Polling threads count against the quota even at idle priority: they would spend the
/// time the request threads need, so the window stays off there.
pub fn cpu_quota_applies() -> bool {
    let Ok(cgroups) = std::fs::read_to_string("/proc/self/cgroup") else {
        return false;
    };
    quota_files(&cgroups)
        .into_iter()
        .any(|(path, version)| match std::fs::read_to_string(&path) {
            Ok(text) => quota_is_set(&text, version),
            Err(_) => false,
        })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CgroupVersion {
    V1,
    V2,
}

/// The files holding this process's CPU quota, from `/proc/self/cgroup`'s text.
fn quota_files(cgroups: &str) -> Vec<(std::path::PathBuf, CgroupVersion)> {
    let mut files = Vec::new();
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let relative = path.trim_start_matches('/');
        if controllers.is_empty() {
            let dir = std::path::Path::new("/sys/fs/cgroup").join(relative);
            files.push((dir.join("cpu.max"), CgroupVersion::V2));
        } else if controllers.split(',').any(|c| c == "cpu") {
            let dir = std::path::Path::new("/sys/fs/cgroup")
                .join(controllers)
                .join(relative);
            files.push((dir.join("cpu.cfs_quota_us"), CgroupVersion::V1));
        }
    }
    files
}

/// Whether a quota file's text sets a limit (`max …` and `-1` mean none).
fn quota_is_set(text: &str, version: CgroupVersion) -> bool {
    let quota = text.split_whitespace().next().unwrap_or("");
    match version {
        CgroupVersion::V2 => !quota.is_empty() && quota != "max",
        CgroupVersion::V1 => quota.parse::<i64>().is_ok_and(|q| q > 0),
    }
}

/// Moves the calling thread to `SCHED_IDLE`; a thread may always lower its own priority.
/// The one system call neither std nor rustix wraps.
#[allow(unsafe_code)]
fn lower_to_idle_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param; pid 0 means the calling thread.
    let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if result != 0 {
        tracing::debug!(
            "poll window thread stays at normal priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_cpu_ticks_of(name: &str) -> u64 {
        let mut total = 0;
        for entry in std::fs::read_dir("/proc/self/task").unwrap() {
            let dir = entry.unwrap().path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            if comm.trim() != name {
                continue;
            }
            let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
            let after_name = &stat[stat.rfind(')').unwrap() + 2..];
            let fields: Vec<&str> = after_name.split(' ').collect();
            // utime and stime are fields 14 and 15; 12 and 13 after the name and state.
            total += fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        }
        total
    }

    #[test]
    fn cpu_quotas_are_found_in_both_cgroup_versions() {
        let v2 = quota_files("0::/kubepods/pod1/engine\n");
        assert_eq!(
            v2,
            vec![(
                std::path::PathBuf::from("/sys/fs/cgroup/kubepods/pod1/engine/cpu.max"),
                CgroupVersion::V2
            )]
        );
        let v1 = quota_files("4:memory:/x\n2:cpu,cpuacct:/kubepods/pod1\n0::/\n");
        assert_eq!(
            v1[0],
            (
                std::path::PathBuf::from(
                    "/sys/fs/cgroup/cpu,cpuacct/kubepods/pod1/cpu.cfs_quota_us"
                ),
                CgroupVersion::V1
            )
        );
        assert!(!quota_is_set("max 100000\n", CgroupVersion::V2));
        assert!(quota_is_set("50000 100000\n", CgroupVersion::V2));
        assert!(!quota_is_set("-1\n", CgroupVersion::V1));
        assert!(quota_is_set("200000\n", CgroupVersion::V1));
        assert!(!quota_is_set("garbage", CgroupVersion::V1));
    }

    #[test]
    fn a_zero_window_starts_nothing() {
        assert!(PollWindow::start(Duration::ZERO, 2).is_none());
        assert!(PollWindow::start(Duration::from_millis(1), 0).is_none());
    }

    #[test]
    fn threads_park_after_the_window_and_wake_on_activity() {
        let poll = PollWindow::start(Duration::from_millis(5), 1).unwrap();
        // Parked from the start: no activity yet.
        let wait_for = |parked: bool| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while poll.parked.load(Ordering::Acquire) != parked {
                assert!(Instant::now() < deadline, "parked never became {parked}");
                std::thread::yield_now();
            }
        };
        wait_for(true);
        poll.note_activity();
        assert!(
            !poll.parked.load(Ordering::Acquire),
            "activity must wake the threads"
        );
        // A window after the last activity the thread parks again.
        wait_for(true);
        // Parked, it uses no CPU: its tick count stays put over a second.
        let before = thread_cpu_ticks_of("poll-window-0");
        std::thread::sleep(Duration::from_secs(1));
        let after = thread_cpu_ticks_of("poll-window-0");
        assert!(
            after <= before + 1,
            "parked thread used {} ticks",
            after - before
        );
    }
}
