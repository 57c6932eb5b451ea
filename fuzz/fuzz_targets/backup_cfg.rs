//! Backupstore cfg decoding (`volume.cfg`, `backup_<name>.cfg`) never panics, and what
//! decodes re-encodes to bytes that decode to the same value.
#![no_main]
use ironhorn_backupstore::config::{BackupConfig, VolumeConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cfg) = VolumeConfig::decode("volume.cfg", data) {
        let again = VolumeConfig::decode("volume.cfg", &cfg.encode()).expect("re-decode");
        assert_eq!(again, cfg);
    }
    if let Ok(cfg) = BackupConfig::decode("backup.cfg", data) {
        let again = BackupConfig::decode("backup.cfg", &cfg.encode()).expect("re-decode");
        assert_eq!(again.encode(), cfg.encode());
    }
});
