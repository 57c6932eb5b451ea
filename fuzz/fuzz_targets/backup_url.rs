//! Backup target and backup URLs: parsing never panics, and a parsed URL prints as text that
//! parses back to it.
#![no_main]
use ironhorn_backupstore::{BackupUrl, TargetUrl};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(target) = TargetUrl::parse(text) {
        assert_eq!(TargetUrl::parse(&target.to_string()).ok(), Some(target));
    }
    if let Ok(url) = BackupUrl::parse(text) {
        assert_eq!(BackupUrl::parse(&url.to_string()).ok(), Some(url));
    }
});
