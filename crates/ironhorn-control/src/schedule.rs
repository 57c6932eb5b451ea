//! When a recurring job runs: its cron expression ([`crate::cron`]) read in a time zone (UTC
//! unless the operator sets another). Across a daylight-saving change a run is never doubled
//! nor lost: a time the clocks skip runs as soon as the clocks reach it (02:30 on a
//! spring-forward night runs at 03:30), a time they repeat runs once, the first time.

use jiff::tz::TimeZone;
use jiff::{civil, Timestamp};

use crate::cron::{CivilMinute, Cron, CronError};

/// Why a schedule cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Cron(#[from] CronError),
    #[error(
        "time zone {name:?} is unknown ({message}); use an IANA name such as Europe/Berlin, or UTC"
    )]
    Zone { name: String, message: String },
}

/// A cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    zone: TimeZone,
    zone_name: String,
}

fn civil_minute(dt: civil::DateTime) -> CivilMinute {
    CivilMinute {
        year: i32::from(dt.year()),
        month: dt.month() as u8,
        day: dt.day() as u8,
        hour: dt.hour() as u8,
        minute: dt.minute() as u8,
    }
}

impl Schedule {
    /// `zone` is an IANA name; empty or `UTC` is UTC.
    pub fn new(cron: &str, zone: &str) -> Result<Schedule, ScheduleError> {
        let cron = Cron::parse(cron)?;
        let (zone, zone_name) = if zone.is_empty() || zone.eq_ignore_ascii_case("UTC") {
            (TimeZone::UTC, "UTC".to_string())
        } else {
            let tz = TimeZone::get(zone).map_err(|e| ScheduleError::Zone {
                name: zone.to_string(),
                message: e.to_string(),
            })?;
            (tz, zone.to_string())
        };
        Ok(Schedule {
            cron,
            zone,
            zone_name,
        })
    }

    pub fn cron(&self) -> &Cron {
        &self.cron
    }

    pub fn zone_name(&self) -> &str {
        &self.zone_name
    }

    /// The first run strictly after `after` (seconds since the Unix epoch), as seconds.
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let now = Timestamp::from_second(after).ok()?;
        let mut civil_now = civil_minute(self.zone.to_datetime(now));
        // Each step moves civil time forward; a few steps at most are needed around a
        // daylight-saving change, the bound only guards against a zone that misbehaves.
        for _ in 0..1000 {
            let next = self.cron.next_after(civil_now)?;
            let dt = civil::date(next.year as i16, next.month as i8, next.day as i8).at(
                next.hour as i8,
                next.minute as i8,
                0,
                0,
            );
            // Skipped times move forward by the gap, repeated ones take the first.
            let zoned = self
                .zone
                .to_ambiguous_zoned_datetime(dt)
                .compatible()
                .ok()?;
            let at = zoned.timestamp().as_second();
            if at > after {
                return Some(at);
            }
            civil_now = next;
        }
        None
    }

    /// `at` (seconds since the Unix epoch) as RFC 3339 in the schedule's zone
    /// (`2026-12-05T03:00:00+01:00`).
    pub fn local_time(&self, at: i64) -> String {
        match Timestamp::from_second(at) {
            Ok(t) => t
                .to_zoned_datetime(self.zone.clone())
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string(),
            Err(_) => at.to_string(),
        }
    }

    /// The next `count` runs after `after`.
    pub fn next_runs(&self, after: i64, count: usize) -> Vec<i64> {
        let mut runs = Vec::with_capacity(count);
        let mut t = after;
        while runs.len() < count {
            match self.next_after(t) {
                Some(next) => {
                    runs.push(next);
                    t = next;
                }
                None => break,
            }
        }
        runs
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn utc(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_second()
    }

    fn runs_between(s: &Schedule, from: &str, until: &str) -> Vec<i64> {
        let end = utc(until);
        let mut out = Vec::new();
        let mut t = utc(from);
        while let Some(next) = s.next_after(t) {
            if next >= end {
                break;
            }
            out.push(next);
            t = next;
        }
        out
    }

    #[test]
    fn run_times_show_in_the_schedules_zone() {
        let berlin = Schedule::new("0 3 ? * SAT", "Europe/Berlin").unwrap();
        let next = berlin.next_after(utc("2026-12-01T00:00:00Z")).unwrap();
        assert_eq!(berlin.local_time(next), "2026-12-05T03:00:00+01:00");
        let plain = Schedule::new("@daily", "").unwrap();
        assert_eq!(plain.local_time(next), "2026-12-05T02:00:00+00:00");
    }

    #[test]
    fn the_seeds_schedules_in_utc_over_a_month() {
        let every_3h = Schedule::new("0 0/3 * * ?", "").unwrap();
        let runs = runs_between(&every_3h, "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z");
        assert_eq!(
            runs.len(),
            31 * 8 - 1,
            "the first run is strictly after the start"
        );
        assert_eq!(runs[0], utc("2026-03-01T03:00:00Z"));
        let weekly = Schedule::new("0 3 ? * SAT", "UTC").unwrap();
        assert_eq!(
            runs_between(&weekly, "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"),
            [
                "2026-03-07T03:00:00Z",
                "2026-03-14T03:00:00Z",
                "2026-03-21T03:00:00Z",
                "2026-03-28T03:00:00Z"
            ]
            .map(utc)
            .to_vec()
        );
    }

    #[test]
    fn every_three_hours_in_new_york_across_the_spring_change() {
        // 2026-03-08: clocks go from 02:00 to 03:00; 00:00 and 03:00 local both exist.
        let s = Schedule::new("0 0/3 * * ?", "America/New_York").unwrap();
        let runs = runs_between(&s, "2026-03-01T05:00:00Z", "2026-04-01T04:00:00Z");
        assert_eq!(runs.len(), 31 * 8 - 1);
        let gaps: Vec<i64> = runs.windows(2).map(|w| w[1] - w[0]).collect();
        // One interval is an hour short (00:00 EST to 03:00 EDT): every other is 3 hours.
        assert_eq!(gaps.iter().filter(|g| **g == 2 * 3600).count(), 1);
        assert!(gaps.iter().all(|g| *g == 3 * 3600 || *g == 2 * 3600));
    }

    #[test]
    fn a_skipped_time_runs_once_later_and_a_repeated_time_runs_once() {
        let s = Schedule::new("30 2 * * *", "Europe/Berlin").unwrap();
        // Spring forward 2026-03-29: 02:30 does not exist; it runs at 03:30 CEST.
        assert_eq!(
            runs_between(&s, "2026-03-27T12:00:00Z", "2026-03-30T12:00:00Z"),
            [
                "2026-03-28T01:30:00Z",
                "2026-03-29T01:30:00Z",
                "2026-03-30T00:30:00Z"
            ]
            .map(utc)
            .to_vec()
        );
        // Fall back 2026-10-25: 02:30 happens twice; it runs the first time only.
        assert_eq!(
            runs_between(&s, "2026-10-24T12:00:00Z", "2026-10-26T12:00:00Z"),
            ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
                .map(utc)
                .to_vec()
        );
        // An hourly job: 02:00 local happens twice (00:00Z CEST, 01:00Z CET) and runs once.
        let hourly = Schedule::new("0 * * * *", "Europe/Berlin").unwrap();
        assert_eq!(
            runs_between(&hourly, "2026-10-24T22:30:00Z", "2026-10-25T03:30:00Z"),
            [
                "2026-10-24T23:00:00Z",
                "2026-10-25T00:00:00Z",
                "2026-10-25T02:00:00Z",
                "2026-10-25T03:00:00Z"
            ]
            .map(utc)
            .to_vec()
        );
    }

    #[test]
    fn an_unknown_zone_is_named() {
        let e = Schedule::new("@daily", "Mars/Olympus").unwrap_err();
        assert!(e.to_string().contains("Mars/Olympus"), "{e}");
        assert!(matches!(
            Schedule::new("61 * * * *", "UTC"),
            Err(ScheduleError::Cron(_))
        ));
    }
}
