//! Decision ids: a UUIDv7 per decision (per call, and per item of a
//! batch), in the response, the span and the decision log, so that a
//! caller's record and verdict's can be joined. Time-ordered (the first 48
//! bits are the Unix time in milliseconds) and unique (74 random bits from
//! a thread-local generator seeded by the operating system; no lock, no
//! system call per id).

use std::time::{Duration, SystemTime};

/// One decision's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DecisionId(uuid::Uuid);

/// The length of an id as text (`8-4-4-4-12` hex digits).
pub const DECISION_ID_LEN: usize = 36;

impl DecisionId {
    /// A new id for a decision made at `at`.
    pub fn new(at: SystemTime) -> Self {
        let millis = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis();
        let mut random = [0u8; 10];
        fastrand::fill(&mut random);
        let millis = u64::try_from(millis).unwrap_or(u64::MAX);
        Self(uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid())
    }

    /// The id as lower-case hyphenated text, in `buf`.
    pub fn encode<'b>(&self, buf: &'b mut [u8; DECISION_ID_LEN]) -> &'b str {
        self.0.hyphenated().encode_lower(buf)
    }
}

impl std::fmt::Display for DecisionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_version_7_time_ordered_and_distinct() {
        let now = SystemTime::now();
        let a = DecisionId::new(now);
        let b = DecisionId::new(now + Duration::from_millis(2));
        assert_eq!(a.0.get_version_num(), 7);
        assert!(a.0 < b.0, "later ids sort after earlier ones");
        let ids: std::collections::HashSet<_> = (0..10_000).map(|_| DecisionId::new(now)).collect();
        assert_eq!(ids.len(), 10_000);
        let mut buf = [0u8; DECISION_ID_LEN];
        assert_eq!(a.encode(&mut buf), a.to_string());
    }
}
