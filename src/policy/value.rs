//! Typed condition values: exact decimals, instants, booleans, IP ranges and
//! base64 bytes, parsed once from policy text and, without allocating, from
//! request text.
//!
//! Numbers follow `-?\d+(\.\d+)?` and compare exactly (no floating point).
//! Dates are W3C date/time profiles or epoch seconds and compare as instants,
//! which are exact decimals of seconds since the epoch.

use std::cmp::Ordering;
use std::net::IpAddr;

use base64::Engine as _;
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use ipnet::IpNet;

/// An exact decimal borrowed from text: sign, integer magnitude, fraction
/// digits without trailing zeros. Zero is never negative.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decimal<'a> {
    neg: bool,
    int: u128,
    frac: &'a str,
}

impl<'a> Decimal<'a> {
    /// Parse `-?\d+(\.\d+)?`. `None` if the text has another shape or the
    /// integer part exceeds 38 digits.
    pub(crate) fn parse(text: &'a str) -> Option<Self> {
        let (neg, body) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (int_text, frac_text) = match body.split_once('.') {
            Some((i, f)) => {
                if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                (i, f)
            }
            None => (body, ""),
        };
        if int_text.is_empty() || !int_text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let trimmed = int_text.trim_start_matches('0');
        if trimmed.len() > 38 {
            return None;
        }
        let int = if trimmed.is_empty() {
            0
        } else {
            trimmed.parse::<u128>().ok()?
        };
        Some(Self::new(neg, int, frac_text))
    }

    fn new(neg: bool, int: u128, frac: &'a str) -> Self {
        let frac = frac.trim_end_matches('0');
        let neg = neg && (int != 0 || !frac.is_empty());
        Self { neg, int, frac }
    }

    fn cmp_magnitude(&self, other: &Self) -> Ordering {
        // Fraction digit strings without trailing zeros order lexicographically.
        self.int
            .cmp(&other.int)
            .then_with(|| self.frac.cmp(other.frac))
    }
}

impl std::fmt::Display for Decimal<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.neg {
            f.write_str("-")?;
        }
        write!(f, "{}", self.int)?;
        if !self.frac.is_empty() {
            write!(f, ".{}", self.frac)?;
        }
        Ok(())
    }
}

impl Ord for Decimal<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.neg, other.neg) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

impl PartialOrd for Decimal<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// An owned exact decimal, as stored in a compiled policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OwnedDecimal {
    neg: bool,
    int: u128,
    frac: Box<str>,
}

impl OwnedDecimal {
    /// The value as text, and values just below and above it (for trying
    /// both sides of a comparison): one less and one more, or, where that
    /// would cross zero, a value on the far side of zero.
    pub(crate) fn around(&self) -> [String; 3] {
        let frac = if self.frac.is_empty() {
            String::new()
        } else {
            format!(".{}", self.frac)
        };
        let sign = if self.neg { "-" } else { "" };
        let at = format!("{sign}{}{frac}", self.int);
        let further = format!("{sign}{}{frac}", self.int.saturating_add(1));
        let nearer = if self.int >= 1 {
            format!("{sign}{}{frac}", self.int - 1)
        } else if self.neg {
            "1".to_owned()
        } else {
            "-1".to_owned()
        };
        if self.neg {
            [at, further, nearer]
        } else {
            [at, nearer, further]
        }
    }

    /// Borrow as a [`Decimal`].
    pub(crate) fn as_decimal(&self) -> Decimal<'_> {
        Decimal {
            neg: self.neg,
            int: self.int,
            frac: &self.frac,
        }
    }
}

impl From<Decimal<'_>> for OwnedDecimal {
    fn from(d: Decimal<'_>) -> Self {
        Self {
            neg: d.neg,
            int: d.int,
            frac: d.frac.into(),
        }
    }
}

/// Parse a number condition value.
pub fn parse_number(text: &str) -> Option<Decimal<'_>> {
    Decimal::parse(text)
}

/// Parse a date condition value into an instant (seconds since the epoch).
///
/// Accepted: epoch seconds `-?\d+(\.\d+)?`, and the W3C profiles `YYYY`,
/// `YYYY-MM`, `YYYY-MM-DD`, `YYYY-MM-DDThh:mm[:ss[.s+]]` with `Z`, `±hh:mm`
/// or no zone (UTC).
pub fn parse_date(text: &str) -> Option<Decimal<'_>> {
    if let Some(d) = Decimal::parse(text) {
        // Four bare digits are a year, not epoch seconds.
        if !(text.len() == 4 && text.bytes().all(|b| b.is_ascii_digit())) {
            return Some(d);
        }
    }
    let (secs, frac) = parse_w3c(text)?;
    Some(Decimal::new(
        secs < 0,
        u128::from(secs.unsigned_abs()),
        frac,
    ))
}

fn parse_w3c(text: &str) -> Option<(i64, &str)> {
    let bytes = text.as_bytes();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let year_text = text.get(0..4)?;
    if !digits(year_text) {
        return None;
    }
    let year: i32 = year_text.parse().ok()?;
    let midnight = NaiveTime::from_hms_opt(0, 0, 0)?;
    match bytes.len() {
        4 => {
            let date = NaiveDate::from_ymd_opt(year, 1, 1)?;
            return Some((NaiveDateTime::new(date, midnight).and_utc().timestamp(), ""));
        }
        7 => {
            if bytes.get(4) != Some(&b'-') || !digits(text.get(5..7)?) {
                return None;
            }
            let month: u32 = text.get(5..7)?.parse().ok()?;
            let date = NaiveDate::from_ymd_opt(year, month, 1)?;
            return Some((NaiveDateTime::new(date, midnight).and_utc().timestamp(), ""));
        }
        _ => {}
    }
    let date_text = text.get(0..10)?;
    let date = NaiveDate::parse_from_str(date_text, "%Y-%m-%d").ok()?;
    if !digits(text.get(5..7)?) || !digits(text.get(8..10)?) || bytes.get(4) != Some(&b'-') {
        return None;
    }
    if bytes.len() == 10 {
        return Some((NaiveDateTime::new(date, midnight).and_utc().timestamp(), ""));
    }
    if bytes.get(10) != Some(&b'T') {
        return None;
    }
    let rest = text.get(11..)?;
    // Split off the zone designator.
    let (clock, offset_secs) = if let Some(c) = rest.strip_suffix('Z') {
        (c, 0i64)
    } else if rest.len() > 6
        && matches!(rest.as_bytes().get(rest.len() - 6), Some(b'+' | b'-'))
        && rest.as_bytes().get(rest.len() - 3) == Some(&b':')
    {
        let zone = rest.get(rest.len() - 6..)?;
        let hh = zone.get(1..3)?;
        let mm = zone.get(4..6)?;
        if !digits(hh) || !digits(mm) {
            return None;
        }
        let (h, m): (i64, i64) = (hh.parse().ok()?, mm.parse().ok()?);
        if h > 23 || m > 59 {
            return None;
        }
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        (rest.get(..rest.len() - 6)?, sign * (h * 3600 + m * 60))
    } else {
        (rest, 0)
    };
    let (hms, frac) = match clock.split_once('.') {
        Some((hms, f)) => {
            if !digits(f) {
                return None;
            }
            (hms, f)
        }
        None => (clock, ""),
    };
    let time = match hms.len() {
        5 => {
            if !frac.is_empty() {
                return None;
            }
            parse_clock(hms, false)?
        }
        8 => parse_clock(hms, true)?,
        _ => return None,
    };
    let secs = NaiveDateTime::new(date, time).and_utc().timestamp() - offset_secs;
    if secs < 0 && !frac.trim_end_matches('0').is_empty() {
        // Pre-1970 instants with a fraction cannot borrow their fraction digits
        // (floor arithmetic would change them); refuse rather than misorder.
        return None;
    }
    Some((secs, frac))
}

fn parse_clock(text: &str, with_seconds: bool) -> Option<NaiveTime> {
    let b = text.as_bytes();
    let two = |i: usize| -> Option<u32> {
        let s = text.get(i..i + 2)?;
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    if b.get(2) != Some(&b':') {
        return None;
    }
    let h = two(0)?;
    let m = two(3)?;
    let s = if with_seconds {
        if b.get(5) != Some(&b':') {
            return None;
        }
        two(6)?
    } else {
        0
    };
    NaiveTime::from_hms_opt(h, m, s)
}

/// Parse `true`/`false`, case-insensitively.
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Parse a policy IP value: a CIDR or a bare address (`/32`, `/128`); host
/// bits are masked off.
pub fn parse_ip_net(text: &str) -> Option<IpNet> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Some(net.trunc());
    }
    text.parse::<IpAddr>().ok().map(IpNet::from)
}

/// Parse a request IP address; IPv4-mapped IPv6 compares as IPv4.
pub(crate) fn parse_ip_addr(text: &str) -> Option<IpAddr> {
    match text.parse::<IpAddr>().ok()? {
        IpAddr::V6(v6) => Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)),
        v4 => Some(v4),
    }
}

/// Whether `addr` lies in `net`.
pub(crate) fn ip_in(net: &IpNet, addr: IpAddr) -> bool {
    net.contains(&addr)
}

/// Decode standard base64 (padding required).
pub fn parse_base64(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal<'_> {
        Decimal::parse(s).unwrap()
    }

    #[test]
    fn decimals_compare_exactly() {
        assert_eq!(d("1.10"), d("1.1"));
        assert_eq!(d("-0"), d("0.000"));
        assert!(d("0.05") < d("0.5"));
        assert!(d("-1.5") < d("-1.25"));
        assert!(d("10") > d("9.999999999999999999999999"));
        assert!(
            d("10000000000000000000000000000000000001")
                > d("10000000000000000000000000000000000000")
        );
        assert!(Decimal::parse("100000000000000000000000000000000000000").is_none());
        for bad in ["", "-", "1.", ".5", "+1", "1e5", "0x10", " 1", "1 "] {
            assert!(Decimal::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn dates() {
        let t = |s| parse_date(s).unwrap();
        assert_eq!(t("2020"), t("2020-01-01T00:00:00Z"));
        assert_eq!(t("2020-02"), t("2020-02-01"));
        assert_eq!(t("2020-02-01"), t("1580515200"));
        assert_eq!(t("2020-02-01T01:00+01:00"), t("2020-02-01T00:00:00Z"));
        assert_eq!(t("2020-02-01T00:00:00"), t("2020-02-01T00:00:00Z"));
        assert!(t("2020-02-01T00:00:00.5Z") > t("2020-02-01T00:00:00Z"));
        assert_eq!(t("2020-02-01T00:00:00.500Z"), t("1580515200.5"));
        for bad in [
            "2020-13",
            "2020-02-30",
            "2020-02-01T25:00Z",
            "2020-02-01 00:00Z",
            "20-01-01",
            "2020-1-01",
            "yesterday",
        ] {
            assert!(parse_date(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn ips() {
        let net = parse_ip_net("203.0.113.7/24").unwrap();
        assert_eq!(net.to_string(), "203.0.113.0/24");
        assert!(ip_in(&net, parse_ip_addr("203.0.113.200").unwrap()));
        assert!(ip_in(&net, parse_ip_addr("::ffff:203.0.113.9").unwrap()));
        assert_eq!(parse_ip_net("2001:db8::1").unwrap().prefix_len(), 128);
        assert_eq!(parse_ip_net("10.0.0.1").unwrap().prefix_len(), 32);
        assert!(parse_ip_net("10.0.0.1/33").is_none());
    }

    #[test]
    fn bools_and_base64() {
        assert_eq!(parse_bool("TRUE"), Some(true));
        assert_eq!(parse_bool("no"), None);
        assert_eq!(parse_base64("aGk="), Some(b"hi".to_vec()));
        assert_eq!(parse_base64("aGk"), None);
    }
}
