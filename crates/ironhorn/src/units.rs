//! Human-readable sizes: `10Gi` in, `8 MiB` out.

const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/// `8388608` → `8 MiB`, `1052672` → `1.00 MiB`; exact multiples print without decimals.
pub fn human_size(bytes: u64) -> String {
    let mut unit = 0;
    let mut whole = bytes;
    while unit + 1 < UNITS.len() && whole >= 1024 {
        whole /= 1024;
        unit += 1;
    }
    let divisor = 1u64 << (10 * unit);
    if bytes % divisor == 0 {
        format!("{} {}", bytes / divisor, UNITS[unit])
    } else {
        format!("{:.2} {}", bytes as f64 / divisor as f64, UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(4096), "4 KiB");
        assert_eq!(human_size(8 << 20), "8 MiB");
        assert_eq!(human_size(1_052_672), "1.00 MiB");
        assert_eq!(human_size(1536), "1.50 KiB");
    }
}
