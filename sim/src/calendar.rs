//! Civil dates without a date library: parsing `YYYY-MM-DD`, day of year, weekday and unix time.

use std::fmt;

/// A proleptic Gregorian calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    /// Year, e.g. 2026.
    pub year: i32,
    /// Month 1–12.
    pub month: u32,
    /// Day of month 1–31.
    pub day: u32,
}

/// Day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

/// Whether `year` is a leap year.
pub fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Days in `month` of `year`.
pub fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

impl Date {
    /// A validated date.
    pub fn new(year: i32, month: u32, day: u32) -> Option<Self> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Self { year, month, day })
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.trim().split('-');
        let y = it.next()?.parse().ok()?;
        let m = it.next()?.parse().ok()?;
        let d = it.next()?.parse().ok()?;
        if it.next().is_some() {
            return None;
        }
        Self::new(y, m, d)
    }

    /// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
    pub fn days_since_epoch(&self) -> i64 {
        let y = if self.month <= 2 { self.year as i64 - 1 } else { self.year as i64 };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = self.month as i64;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + self.day as i64 - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The date `days` days after 1970-01-01.
    pub fn from_days_since_epoch(days: i64) -> Self {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + if month <= 2 { 1 } else { 0 }) as i32;
        Self { year, month, day }
    }

    /// Day of the year, 1 = 1 January.
    pub fn day_of_year(&self) -> u32 {
        (self.days_since_epoch() - Date { year: self.year, month: 1, day: 1 }.days_since_epoch()) as u32 + 1
    }

    /// Day of the week.
    pub fn weekday(&self) -> Weekday {
        // 1970-01-01 was a Thursday.
        match (self.days_since_epoch() + 3).rem_euclid(7) {
            0 => Weekday::Mon,
            1 => Weekday::Tue,
            2 => Weekday::Wed,
            3 => Weekday::Thu,
            4 => Weekday::Fri,
            5 => Weekday::Sat,
            _ => Weekday::Sun,
        }
    }

    /// Number of days in this date's year.
    pub fn days_in_year(&self) -> u32 {
        if is_leap(self.year) {
            366
        } else {
            365
        }
    }

    /// Unix time of local midnight at the start of this date, for a zone `utc_offset_secs` east of UTC.
    pub fn local_midnight_unix(&self, utc_offset_secs: i64) -> i64 {
        self.days_since_epoch() * 86_400 - utc_offset_secs
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// Formats unix seconds shifted by `utc_offset_secs` as `YYYY-MM-DDTHH:MM:SS` (local time, no zone).
pub fn format_local(unix: i64, utc_offset_secs: i64) -> String {
    let t = unix + utc_offset_secs;
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let d = Date::from_days_since_epoch(days);
    format!("{d}T{:02}:{:02}:{:02}", secs / 3600, (secs / 60) % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_validates() {
        assert_eq!(Date::parse("2026-06-21"), Some(Date { year: 2026, month: 6, day: 21 }));
        assert_eq!(Date::parse("2026-02-29"), None);
        assert_eq!(Date::parse("2024-02-29").map(|d| d.day_of_year()), Some(60));
        assert_eq!(Date::parse("2026-13-01"), None);
        assert_eq!(Date::parse("junk"), None);
    }

    #[test]
    fn epoch_days_round_trip_and_weekdays() {
        assert_eq!(Date::parse("1970-01-01").unwrap().days_since_epoch(), 0);
        assert_eq!(Date::parse("2000-03-01").unwrap().days_since_epoch(), 11_017);
        for days in [-1000i64, 0, 59, 60, 11_017, 20_000, 20_624] {
            assert_eq!(Date::from_days_since_epoch(days).days_since_epoch(), days);
        }
        assert_eq!(Date::parse("2026-06-21").unwrap().weekday(), Weekday::Sun);
        assert_eq!(Date::parse("2026-11-25").unwrap().weekday(), Weekday::Wed);
        assert_eq!(Date::parse("2026-12-31").unwrap().day_of_year(), 365);
    }

    #[test]
    fn local_time_formatting() {
        // 2026-06-11T12:15:00Z, as in the bridge's Tasmota sample.
        assert_eq!(format_local(1_781_180_100, 0), "2026-06-11T12:15:00");
        assert_eq!(format_local(1_781_180_100, 7200), "2026-06-11T14:15:00");
        let d = Date::parse("2026-06-11").unwrap();
        assert_eq!(d.local_midnight_unix(7200) + 14 * 3600 + 15 * 60, 1_781_180_100);
    }
}
