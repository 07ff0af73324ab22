//! Mail dates: public-inbox's `2026-04-12 13:54 UTC` and RFC 5322's
//! `Sun, 12 Apr 2026 13:54:34 +0200`, rendered back as RFC 5322.

use serde::{Deserialize, Serialize};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// A point in time as a mail header states it (local time plus offset).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailDate {
    pub year: i32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// Offset from UTC in minutes (`+0200` is 120).
    pub offset_minutes: i32,
    /// False when the source only gave minutes (public-inbox digests).
    pub has_seconds: bool,
}

impl MailDate {
    /// `2026-04-11  0:12 UTC` (digest form; the hour may be space-padded).
    pub fn parse_digest(text: &str) -> Option<MailDate> {
        let mut parts = text.split_whitespace();
        let ymd = parts.next()?;
        let hm = parts.next()?;
        let zone = parts.next()?;
        if zone != "UTC" || parts.next().is_some() {
            return None;
        }
        let mut d = ymd.split('-');
        let year = d.next()?.parse().ok()?;
        let month = d.next()?.parse().ok()?;
        let day = d.next()?.parse().ok()?;
        if d.next().is_some() {
            return None;
        }
        let mut t = hm.split(':');
        let hour = t.next()?.parse().ok()?;
        let minute = t.next()?.parse().ok()?;
        let (second, has_seconds) = match t.next() {
            Some(s) => (s.parse().ok()?, true),
            None => (0, false),
        };
        Self::checked(MailDate {
            year,
            month,
            day,
            hour,
            minute,
            second,
            offset_minutes: 0,
            has_seconds,
        })
    }

    /// RFC 5322: `[Day, ]DD Mon YYYY HH:MM[:SS] +ZZZZ` (also `GMT`/`UT`,
    /// and a trailing comment such as `(UTC)`).
    pub fn parse_rfc5322(text: &str) -> Option<MailDate> {
        let text = match text.find('(') {
            Some(i) => &text[..i],
            None => text,
        };
        let text = match text.split_once(',') {
            Some((_, rest)) => rest,
            None => text,
        };
        let mut parts = text.split_whitespace();
        let day = parts.next()?.parse().ok()?;
        let mon = parts.next()?;
        let month = MONTHS
            .iter()
            .position(|m| m.eq_ignore_ascii_case(mon))
            .map(|i| i as u32 + 1)?;
        let year = parts.next()?.parse().ok()?;
        let hms = parts.next()?;
        let mut t = hms.split(':');
        let hour = t.next()?.parse().ok()?;
        let minute = t.next()?.parse().ok()?;
        let (second, has_seconds) = match t.next() {
            Some(s) => (s.parse().ok()?, true),
            None => (0, false),
        };
        let zone = parts.next().unwrap_or("+0000");
        let offset_minutes = match zone {
            "GMT" | "UT" | "UTC" | "Z" => 0,
            z if z.len() == 5 && (z.starts_with('+') || z.starts_with('-')) => {
                let sign = if z.starts_with('-') { -1 } else { 1 };
                let h: i32 = z[1..3].parse().ok()?;
                let m: i32 = z[3..5].parse().ok()?;
                sign * (h * 60 + m)
            }
            _ => return None,
        };
        Self::checked(MailDate {
            year,
            month,
            day,
            hour,
            minute,
            second,
            offset_minutes,
            has_seconds,
        })
    }

    fn checked(d: MailDate) -> Option<MailDate> {
        let ok = (1..=12).contains(&d.month)
            && d.day >= 1
            && d.day <= days_in_month(d.year, d.month)
            && d.hour < 24
            && d.minute < 60
            && d.second < 61;
        ok.then_some(d)
    }

    /// Days since 1970-01-01 of the local date (proleptic Gregorian).
    fn days_from_civil(&self) -> i64 {
        // Howard Hinnant's algorithm: shift the year to start in March so
        // the leap day is the last day of the year.
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = if y >= 0 { y } else { y - 399 } / 400;
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146097 + doe - 719468
    }

    pub fn weekday(&self) -> &'static str {
        // 1970-01-01 was a Thursday (index 3 with Monday = 0).
        let idx = (self.days_from_civil() + 3).rem_euclid(7) as usize;
        WEEKDAYS[idx]
    }

    /// Seconds since the epoch (UTC), for ordering.
    pub fn unix_seconds(&self) -> i64 {
        self.days_from_civil() * 86400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - i64::from(self.offset_minutes) * 60
    }

    /// `Sun, 12 Apr 2026 13:54:00 +0000`.
    pub fn to_rfc5322(&self) -> String {
        let sign = if self.offset_minutes < 0 { '-' } else { '+' };
        let off = self.offset_minutes.unsigned_abs();
        format!(
            "{}, {} {} {} {:02}:{:02}:{:02} {}{:02}{:02}",
            self.weekday(),
            self.day,
            MONTHS[self.month as usize - 1],
            self.year,
            self.hour,
            self.minute,
            self.second,
            sign,
            off / 60,
            off % 60
        )
    }

    /// `2026-04-12T13:54:00+00:00`.
    pub fn to_iso8601(&self) -> String {
        let sign = if self.offset_minutes < 0 { '-' } else { '+' };
        let off = self.offset_minutes.unsigned_abs();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}{:02}:{:02}",
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            sign,
            off / 60,
            off % 60
        )
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_dates_with_padded_hours() {
        let d = MailDate::parse_digest("2026-04-11  0:12 UTC").unwrap();
        assert_eq!(
            (d.year, d.month, d.day, d.hour, d.minute),
            (2026, 4, 11, 0, 12)
        );
        assert!(!d.has_seconds);
        assert_eq!(d.to_rfc5322(), "Sat, 11 Apr 2026 00:12:00 +0000");
        assert!(MailDate::parse_digest("2026-13-01 10:00 UTC").is_none());
        assert!(MailDate::parse_digest("2026-04-11 10:00 CEST").is_none());
        assert!(MailDate::parse_digest("2026-02-30 10:00 UTC").is_none());
    }

    #[test]
    fn rfc5322_round_trip_and_ordering() {
        let d = MailDate::parse_rfc5322("Mon, 6 Apr 2026 18:51:20 +0200").unwrap();
        assert_eq!(d.weekday(), "Mon");
        assert_eq!(d.to_rfc5322(), "Mon, 6 Apr 2026 18:51:20 +0200");
        assert_eq!(d.to_iso8601(), "2026-04-06T18:51:20+02:00");
        let utc = MailDate::parse_digest("2026-04-06 16:51 UTC").unwrap();
        assert_eq!(d.unix_seconds() - utc.unix_seconds(), 20);
        let gmt = MailDate::parse_rfc5322("6 Apr 2026 16:51:20 GMT (UTC)").unwrap();
        assert_eq!(gmt.unix_seconds(), d.unix_seconds());
        assert!(MailDate::parse_rfc5322("yesterday").is_none());
    }

    #[test]
    fn weekdays_across_leap_years() {
        for (text, wd) in [
            ("1970-01-01 00:00 UTC", "Thu"),
            ("2000-02-29 00:00 UTC", "Tue"),
            ("2024-12-31 23:59 UTC", "Tue"),
            ("2026-04-12 13:54 UTC", "Sun"),
        ] {
            assert_eq!(
                MailDate::parse_digest(text).unwrap().weekday(),
                wd,
                "{text}"
            );
        }
    }
}
