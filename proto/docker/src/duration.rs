//! Durations as docker writes them: 500ms, 5s, 1m30s, 1h; and `--since` times.

use std::time::Duration;

pub fn parse(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!("invalid duration {s:?}: use a number with a unit, such as 500ms, 5s, 1m30s or 1h")
    };
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += Duration::from_secs_f64(value * scale);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// `--since` as docker reads it: a duration back from `now` (10m), an RFC 3339 time, a
/// date (2026-12-07, UTC), or seconds since the epoch; as unix nanoseconds.
pub fn parse_since(s: &str, now: i64) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(d) = parse(s) {
        return Ok(now - d.as_nanos() as i64);
    }
    if let Some(t) = shoal_proto::time::parse_rfc3339(s)
        .or_else(|| shoal_proto::time::parse_rfc3339(&format!("{s}T00:00:00Z")))
    {
        return Ok(t);
    }
    if let Some(t) = shoal_proto::time::parse_epoch_seconds(s) {
        return Ok(t);
    }
    Err(format!(
        "invalid since {s:?}: give a duration (10m), a time (2026-12-07T10:00:00Z), a date or seconds since the epoch"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_what_docker_takes() {
        let now = 1_700_000_000_000_000_000;
        assert_eq!(parse_since("10m", now).unwrap(), now - 600_000_000_000);
        assert_eq!(parse_since("2023-11-14T22:13:20Z", 0).unwrap(), now);
        assert_eq!(
            parse_since("2023-11-14", 0).unwrap(),
            now - 80_000_000_000_000
        );
        assert_eq!(parse_since("1700000000.5", 0).unwrap(), now + 500_000_000);
        assert!(
            parse_since("yesterday", now)
                .unwrap_err()
                .contains("invalid since")
        );
    }

    #[test]
    fn parses_docker_durations() {
        assert_eq!(parse("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
        assert!(parse("5").unwrap_err().contains("unit"));
        assert!(parse("").is_err());
        assert!(parse("3x").is_err());
    }
}
