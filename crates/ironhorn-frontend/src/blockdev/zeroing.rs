//! The discards and zeroing a kernel device has sent into a volume: counted, so `volume trim`
//! can report the bytes that reached the replicas and wait until the filesystem's discards
//! (which some filesystems still send after FITRIM has returned) have all been carried out.
//! [`CountingDevice`] counts them for backends that hand the kernel's requests to a
//! [`BlockDevice`] (nbd, ublk); fuse-loop counts in its FUSE handler.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironhorn_engine::{BlockDevice, DeviceFuture};

/// How many zeroing requests run now, the bytes done, and a count of starts and ends.
#[derive(Debug, Default)]
pub struct ZeroingActivity {
    running: AtomicU64,
    bytes: AtomicU64,
    events: AtomicU64,
}

impl ZeroingActivity {
    /// (running now, bytes zeroed so far, starts and ends so far).
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.running.load(Ordering::SeqCst),
            self.bytes.load(Ordering::SeqCst),
            self.events.load(Ordering::SeqCst),
        )
    }

    pub fn start(&self) {
        self.running.fetch_add(1, Ordering::SeqCst);
        self.events.fetch_add(1, Ordering::SeqCst);
    }

    /// Ends a request that zeroed `bytes` (0 when it failed).
    pub fn end(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::SeqCst);
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.events.fetch_add(1, Ordering::SeqCst);
    }

    /// Waits until no zeroing has started or ended for `quiet`, none runs, and the kernel
    /// holds none for the device (`queued` tells); false when `limit` passed first.
    pub fn wait_settled(&self, queued: impl Fn() -> u64, quiet: Duration, limit: Duration) -> bool {
        let start = Instant::now();
        loop {
            let (_, _, before) = self.snapshot();
            std::thread::sleep(quiet);
            let (running, _, after) = self.snapshot();
            if running == 0 && queued() == 0 && before == after {
                return true;
            }
            if start.elapsed() > limit {
                return false;
            }
        }
    }
}

/// A [`BlockDevice`] whose trims and write-zeroes are counted in a [`ZeroingActivity`].
pub struct CountingDevice {
    inner: Arc<dyn BlockDevice>,
    activity: Arc<ZeroingActivity>,
}

impl std::fmt::Debug for CountingDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountingDevice")
            .field("activity", &self.activity)
            .finish()
    }
}

impl CountingDevice {
    pub fn new(inner: Arc<dyn BlockDevice>, activity: Arc<ZeroingActivity>) -> CountingDevice {
        CountingDevice { inner, activity }
    }

    fn counted<'a>(&'a self, len: u64, work: DeviceFuture<'a, ()>) -> DeviceFuture<'a, ()> {
        self.activity.start();
        Box::pin(async move {
            let result = work.await;
            self.activity.end(if result.is_ok() { len } else { 0 });
            result
        })
    }
}

impl BlockDevice for CountingDevice {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn read_only(&self) -> bool {
        self.inner.read_only()
    }

    fn flush_covers_all_connections(&self) -> bool {
        self.inner.flush_covers_all_connections()
    }

    fn read(&self, offset: u64, len: usize) -> DeviceFuture<'_, Vec<u8>> {
        self.inner.read(offset, len)
    }

    fn write(&self, data: Vec<u8>, offset: u64, fua: bool) -> DeviceFuture<'_, ()> {
        self.inner.write(data, offset, fua)
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> DeviceFuture<'_, ()> {
        self.counted(len, self.inner.write_zeroes(offset, len))
    }

    fn trim(&self, offset: u64, len: u64) -> DeviceFuture<'_, ()> {
        self.counted(len, self.inner.trim(offset, len))
    }

    fn flush(&self) -> DeviceFuture<'_, ()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironhorn_engine::DeviceError;

    /// A device whose zeroing succeeds below 1 MiB and fails above.
    struct Zeroes;

    impl BlockDevice for Zeroes {
        fn size(&self) -> u64 {
            1 << 30
        }
        fn read_only(&self) -> bool {
            false
        }
        fn flush_covers_all_connections(&self) -> bool {
            true
        }
        fn read(&self, _: u64, len: usize) -> DeviceFuture<'_, Vec<u8>> {
            Box::pin(async move { Ok(vec![0; len]) })
        }
        fn write(&self, _: Vec<u8>, _: u64, _: bool) -> DeviceFuture<'_, ()> {
            Box::pin(async { Ok(()) })
        }
        fn write_zeroes(&self, offset: u64, _: u64) -> DeviceFuture<'_, ()> {
            Box::pin(async move {
                if offset < 1 << 20 {
                    Ok(())
                } else {
                    Err(DeviceError::Io("past the first MiB".into()))
                }
            })
        }
        fn trim(&self, offset: u64, len: u64) -> DeviceFuture<'_, ()> {
            self.write_zeroes(offset, len)
        }
        fn flush(&self) -> DeviceFuture<'_, ()> {
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test]
    async fn only_zeroing_that_succeeded_counts_and_every_request_ends() {
        let activity = Arc::new(ZeroingActivity::default());
        let device = CountingDevice::new(Arc::new(Zeroes), activity.clone());
        device.trim(0, 4096).await.unwrap();
        device.write_zeroes(8192, 512).await.unwrap();
        assert!(device.trim(2 << 20, 4096).await.is_err());
        assert_eq!(activity.snapshot(), (0, 4608, 6));
        let pending = device.trim(0, 100);
        assert_eq!(activity.snapshot().0, 1, "counted from the call on");
        pending.await.unwrap();
        assert!(activity.wait_settled(|| 0, Duration::from_millis(1), Duration::from_secs(5)));
        assert!(!activity.wait_settled(|| 1, Duration::from_millis(1), Duration::from_millis(5)));
    }
}
