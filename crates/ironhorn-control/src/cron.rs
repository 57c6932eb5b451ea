//! Cron expressions as Longhorn's recurring jobs take them: five fields (minute, hour, day of
//! month, month, day of week), `*` or `?` for any value (`?` in the day fields), ranges
//! `a-b`, steps `*/n`, `a/n` and `a-b/n`, lists `a,b`, month names `JAN`-`DEC`, weekday names
//! `SUN`-`SAT` (0-6; 7 is Sunday too), and the macros `@yearly`, `@annually`, `@monthly`,
//! `@weekly`, `@daily`, `@midnight`, `@hourly`. When both day fields are restricted a day
//! matches either (Vixie cron's rule, which Longhorn's parser follows).
//!
//! Times are civil minutes ([`CivilMinute`]): the caller converts to and from its time zone,
//! so this module is pure arithmetic.

use std::fmt;

/// Why an expression was refused; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error("cron {text:?}: {count} fields; write five (minute hour day-of-month month day-of-week), e.g. `0 0/3 * * ?`, or a macro such as @daily")]
    FieldCount { text: String, count: usize },
    #[error("cron {text:?}: {field} field {value:?}: {message}")]
    Field {
        text: String,
        field: &'static str,
        value: String,
        message: String,
    },
    #[error("cron {text:?}: unknown macro; use @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly")]
    Macro { text: String },
}

/// A minute of civil (wall-clock) time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CivilMinute {
    pub year: i32,
    /// 1-12.
    pub month: u8,
    /// 1-31.
    pub day: u8,
    /// 0-23.
    pub hour: u8,
    /// 0-59.
    pub minute: u8,
}

/// Days from 1970-01-01 to the date (proleptic Gregorian).
fn days_from_civil(year: i32, month: u8, day: u8) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` after 1970-01-01.
fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

impl CivilMinute {
    /// The civil minute `seconds` after the Unix epoch, read in UTC (seconds are dropped).
    pub fn from_unix(seconds: i64) -> CivilMinute {
        let days = seconds.div_euclid(86_400);
        let rest = seconds.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        CivilMinute {
            year,
            month,
            day,
            hour: (rest / 3600) as u8,
            minute: (rest % 3600 / 60) as u8,
        }
    }

    /// Seconds since the Unix epoch of this minute read as UTC.
    pub fn to_unix(self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
    }

    /// 0 = Sunday.
    pub fn weekday(self) -> u8 {
        (days_from_civil(self.year, self.month, self.day) + 4).rem_euclid(7) as u8
    }
}

impl fmt::Display for CivilMinute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute
        )
    }
}

/// A parsed expression: one bit per allowed value of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    text: String,
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    /// The day-of-month field was `*` or `?` (then only the weekdays decide), and likewise.
    any_day: bool,
    any_weekday: bool,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    question_mark: bool,
}

const FIELDS: [FieldSpec; 5] = [
    FieldSpec {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
        question_mark: false,
    },
    FieldSpec {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
        question_mark: false,
    },
    FieldSpec {
        name: "day-of-month",
        min: 1,
        max: 31,
        names: &[],
        question_mark: true,
    },
    FieldSpec {
        name: "month",
        min: 1,
        max: 12,
        names: &MONTHS,
        question_mark: false,
    },
    // 7 is accepted as Sunday and folded onto 0.
    FieldSpec {
        name: "day-of-week",
        min: 0,
        max: 7,
        names: &WEEKDAYS,
        question_mark: true,
    },
];

/// One field's bits (bit v set for each allowed v) and whether it was `*` or `?`.
fn parse_field(text: &str, spec: &FieldSpec, field: &str) -> Result<(u64, bool), CronError> {
    let bad = |message: String| CronError::Field {
        text: text.to_string(),
        field: spec.name,
        value: field.to_string(),
        message,
    };
    let value = |s: &str| -> Result<u32, CronError> {
        let upper = s.to_ascii_uppercase();
        if let Some(i) = spec.names.iter().position(|n| *n == upper) {
            // Month names count from 1, weekday names from 0.
            return Ok(i as u32 + if spec.min == 1 { 1 } else { 0 });
        }
        let n: u32 = s.parse().map_err(|_| {
            bad(format!(
                "{s:?} is not a number{}",
                if spec.names.is_empty() {
                    String::new()
                } else {
                    format!(" or a name ({})", spec.names.join(", "))
                }
            ))
        })?;
        if n < spec.min || n > spec.max {
            return Err(bad(format!("{n} is outside {}-{}", spec.min, spec.max)));
        }
        Ok(n)
    };
    let mut bits = 0u64;
    let mut any = false;
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| bad(format!("step {s:?} is not a whole number above 0")))?;
                (r, Some(step))
            }
            None => (part, None),
        };
        let (start, end) = match range {
            "*" => (spec.min, spec.max),
            "?" if spec.question_mark => (spec.min, spec.max),
            "?" => {
                return Err(bad(
                    "`?` is only for the day-of-month and day-of-week fields".into(),
                ))
            }
            _ => match range.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                // `a/n` runs from a to the end of the field.
                None if step.is_some() => (value(range)?, spec.max),
                None => {
                    let v = value(range)?;
                    (v, v)
                }
            },
        };
        if start > end {
            return Err(bad(format!("range {start}-{end} runs backwards")));
        }
        // `*` and `?` (with no step, or a step of 1) leave the day to the other day field.
        if matches!(range, "*" | "?") && step.unwrap_or(1) == 1 {
            any = true;
        }
        let mut v = start;
        while v <= end {
            bits |= 1 << v;
            v += step.unwrap_or(1);
        }
    }
    Ok((bits, any))
}

impl Cron {
    /// Parses an expression; the error names the field at fault.
    pub fn parse(text: &str) -> Result<Cron, CronError> {
        let trimmed = text.trim();
        let expanded = match trimmed.strip_prefix('@') {
            None => trimmed,
            Some(m) => match m.to_ascii_lowercase().as_str() {
                "yearly" | "annually" => "0 0 1 1 *",
                "monthly" => "0 0 1 * *",
                "weekly" => "0 0 * * 0",
                "daily" | "midnight" => "0 0 * * *",
                "hourly" => "0 * * * *",
                _ => {
                    return Err(CronError::Macro {
                        text: text.to_string(),
                    })
                }
            },
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(CronError::FieldCount {
                text: text.to_string(),
                count: fields.len(),
            });
        }
        let mut parsed = [(0u64, false); 5];
        for (i, (field, spec)) in fields.iter().zip(FIELDS.iter()).enumerate() {
            parsed[i] = parse_field(text, spec, field)?;
        }
        let weekdays = parsed[4].0;
        // Sunday written as 7 is Sunday.
        let weekdays = ((weekdays | (weekdays >> 7)) & 0x7f) as u8;
        Ok(Cron {
            text: trimmed.to_string(),
            minutes: parsed[0].0,
            hours: parsed[1].0 as u32,
            days: parsed[2].0 as u32,
            months: parsed[3].0 as u16,
            weekdays,
            any_day: parsed[2].1,
            any_weekday: parsed[4].1,
        })
    }

    /// The expression as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn day_matches(&self, year: i32, month: u8, day: u8) -> bool {
        let in_days = self.days & (1 << day) != 0;
        let weekday = CivilMinute {
            year,
            month,
            day,
            hour: 0,
            minute: 0,
        }
        .weekday();
        let in_weekdays = self.weekdays & (1 << weekday) != 0;
        if self.any_day || self.any_weekday {
            in_days && in_weekdays
        } else {
            in_days || in_weekdays
        }
    }

    /// Whether the schedule fires at this minute.
    pub fn matches(&self, t: CivilMinute) -> bool {
        self.minutes & (1 << t.minute) != 0
            && self.hours & (1 << t.hour) != 0
            && self.months & (1 << t.month) != 0
            && self.day_matches(t.year, t.month, t.day)
    }

    /// The first minute strictly after `after` at which the schedule fires, looking up to
    /// eight years ahead (None: it never fires, as `0 0 30 2 *`).
    pub fn next_after(&self, after: CivilMinute) -> Option<CivilMinute> {
        let start_days = days_from_civil(after.year, after.month, after.day);
        for offset in 0..(8 * 366) {
            let (year, month, day) = civil_from_days(start_days + offset);
            if self.months & (1 << month) == 0 || !self.day_matches(year, month, day) {
                continue;
            }
            for hour in 0..24u8 {
                if self.hours & (1 << hour) == 0 {
                    continue;
                }
                for minute in 0..60u8 {
                    if self.minutes & (1 << minute) == 0 {
                        continue;
                    }
                    let t = CivilMinute {
                        year,
                        month,
                        day,
                        hour,
                        minute,
                    };
                    if t > after {
                        return Some(t);
                    }
                }
            }
        }
        None
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn days_in_month(year: i32, month: u8) -> u8 {
        match month {
            4 | 6 | 9 | 11 => 30,
            2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
            2 => 28,
            _ => 31,
        }
    }

    fn valid_date(year: i32, month: u8, day: u8) -> bool {
        (1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month)
    }

    fn at(year: i32, month: u8, day: u8, hour: u8, minute: u8) -> CivilMinute {
        CivilMinute {
            year,
            month,
            day,
            hour,
            minute,
        }
    }

    fn runs(cron: &str, from: CivilMinute, until: CivilMinute) -> Vec<CivilMinute> {
        let cron = Cron::parse(cron).unwrap();
        let mut out = Vec::new();
        let mut t = from;
        while let Some(next) = cron.next_after(t) {
            if next >= until {
                break;
            }
            out.push(next);
            t = next;
        }
        out
    }

    #[test]
    fn the_seeds_schedules_over_a_month() {
        let (from, until) = (at(2026, 2, 28, 23, 59), at(2026, 3, 31, 23, 59));
        let every_3h = runs("0 0/3 * * ?", from, until);
        assert_eq!(every_3h.len(), 31 * 8);
        assert_eq!(every_3h[0], at(2026, 3, 1, 0, 0));
        assert_eq!(every_3h[1], at(2026, 3, 1, 3, 0));
        assert!(every_3h.iter().all(|t| t.minute == 0 && t.hour % 3 == 0));
        let daily = runs("0 2 * * *", from, until);
        assert_eq!(daily.len(), 31);
        let saturdays = runs("0 3 ? * SAT", from, until);
        // March 2026: Saturdays 7, 14, 21, 28.
        assert_eq!(
            saturdays,
            vec![
                at(2026, 3, 7, 3, 0),
                at(2026, 3, 14, 3, 0),
                at(2026, 3, 21, 3, 0),
                at(2026, 3, 28, 3, 0)
            ]
        );
    }

    #[test]
    fn names_macros_lists_and_the_day_rule() {
        assert_eq!(
            Cron::parse("@weekly")
                .unwrap()
                .next_after(at(2026, 12, 3, 10, 0)),
            Some(at(2026, 12, 6, 0, 0))
        );
        assert_eq!(
            Cron::parse("@hourly")
                .unwrap()
                .next_after(at(2026, 12, 3, 10, 0)),
            Some(at(2026, 12, 3, 11, 0))
        );
        assert_eq!(
            Cron::parse("30 1 1,15 jan-mar *")
                .unwrap()
                .next_after(at(2026, 1, 1, 2, 0)),
            Some(at(2026, 1, 15, 1, 30))
        );
        // Both day fields restricted: either matches (the 13th, or any Friday).
        let c = Cron::parse("0 0 13 * FRI").unwrap();
        assert_eq!(
            c.next_after(at(2026, 12, 3, 0, 0)),
            Some(at(2026, 12, 4, 0, 0))
        );
        assert_eq!(
            c.next_after(at(2026, 12, 11, 0, 0)),
            Some(at(2026, 12, 13, 0, 0))
        );
        assert_eq!(
            Cron::parse("0 0 * * 7")
                .unwrap()
                .next_after(at(2026, 12, 3, 0, 0)),
            Some(at(2026, 12, 6, 0, 0))
        );
        assert_eq!(
            Cron::parse("0 0 29 2 *")
                .unwrap()
                .next_after(at(2026, 1, 1, 0, 0)),
            Some(at(2028, 2, 29, 0, 0))
        );
        assert_eq!(
            Cron::parse("0 0 30 2 *")
                .unwrap()
                .next_after(at(2026, 1, 1, 0, 0)),
            None
        );
    }

    #[test]
    fn bad_expressions_name_the_field() {
        for (text, field) in [
            ("60 * * * *", "minute"),
            ("* 24 * * *", "hour"),
            ("* * 0 * *", "day-of-month"),
            ("* * * 13 *", "month"),
            ("* * * FOO *", "month"),
            ("* * * * 8", "day-of-week"),
            ("*/0 * * * *", "minute"),
            ("5-1 * * * *", "minute"),
            ("? * * * *", "minute"),
            ("* * * * MON-", "day-of-week"),
        ] {
            match Cron::parse(text) {
                Err(CronError::Field { field: f, .. }) => assert_eq!(f, field, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(matches!(
            Cron::parse("* * * *"),
            Err(CronError::FieldCount { count: 4, .. })
        ));
        assert!(matches!(
            Cron::parse("@every 1h"),
            Err(CronError::Macro { .. })
        ));
        assert!(matches!(
            Cron::parse(""),
            Err(CronError::FieldCount { count: 0, .. })
        ));
    }

    fn field(min: u32, max: u32) -> impl Strategy<Value = String> {
        prop_oneof![
            Just("*".to_string()),
            (min..=max).prop_map(|v| v.to_string()),
            (min..=max, 1..=max.max(1)).prop_map(|(a, s)| format!("{a}/{s}")),
            (min..=max, min..=max).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
            (min..=max, min..=max).prop_map(|(a, b)| format!("{a},{b}")),
        ]
    }

    proptest! {
        #[test]
        fn civil_minutes_round_trip(seconds in -2_000_000_000i64..8_000_000_000) {
            let t = CivilMinute::from_unix(seconds);
            prop_assert_eq!(t.to_unix(), seconds - seconds.rem_euclid(60));
            prop_assert!(valid_date(t.year, t.month, t.day));
        }

        #[test]
        fn any_text_parses_or_is_refused_without_panicking(text in "\\PC{0,40}") {
            let _ = Cron::parse(&text);
        }

        #[test]
        fn the_next_run_is_the_first_matching_minute(
            minute in field(0, 59), hour in field(0, 23), day in field(1, 31),
            month in field(1, 12), weekday in field(0, 7),
            start in 1_700_000_000i64..1_900_000_000,
        ) {
            let text = format!("{minute} {hour} {day} {month} {weekday}");
            let cron = Cron::parse(&text).unwrap();
            let from = CivilMinute::from_unix(start);
            let next = cron.next_after(from);
            if let Some(next) = next {
                prop_assert!(next > from && cron.matches(next), "{text}: {from} -> {next}");
                // No minute in between fires: checked minute by minute up to 40 days.
                let gap = (next.to_unix() - from.to_unix()) / 60;
                if gap <= 40 * 1440 {
                    for m in 1..gap {
                        let t = CivilMinute::from_unix(from.to_unix() + m * 60);
                        prop_assert!(!cron.matches(t), "{text}: {t} fires before {next}");
                    }
                }
            }
        }
    }
}
