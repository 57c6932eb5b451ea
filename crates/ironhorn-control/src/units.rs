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

/// `10Gi`, `512Mi`, `4096`, `1G` (powers of 1000), `1.5Gi` → bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "Ki" | "KiB" => 1 << 10,
        "Mi" | "MiB" => 1 << 20,
        "Gi" | "GiB" => 1 << 30,
        "Ti" | "TiB" => 1 << 40,
        "K" | "KB" | "k" => 1_000,
        "M" | "MB" => 1_000_000,
        "G" | "GB" => 1_000_000_000,
        "T" | "TB" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {text:?} (use Ki, Mi, Gi, Ti)"
            ))
        }
    };
    let bytes = if number.contains('.') {
        let value: f64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a size"))?;
        (value * multiplier as f64).round() as u64
    } else {
        number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(multiplier))
            .ok_or_else(|| format!("{text:?} is not a size"))?
    };
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_sizes() {
        assert_eq!(parse_size("10Gi"), Ok(10 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1.5Ki"), Ok(1536));
        assert_eq!(parse_size("2G"), Ok(2_000_000_000));
        assert!(parse_size("10Qi").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999999Ti").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(4096), "4 KiB");
        assert_eq!(human_size(8 << 20), "8 MiB");
        assert_eq!(human_size(1_052_672), "1.00 MiB");
        assert_eq!(human_size(1536), "1.50 KiB");
    }
}
