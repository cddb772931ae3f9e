//! Times as docker writes them: RFC 3339 in UTC with nanoseconds, and back.

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix nanoseconds as RFC 3339 UTC with nine fraction digits.
pub fn rfc3339(nanos: i64) -> String {
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        tod / 3600,
        (tod % 3600) / 60,
        tod % 60
    )
}

/// `2026-12-07T16:51:49.123Z` or `...+01:00` as unix nanoseconds; None if it is not one.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[13] != b':' || b[16] != b':' || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac = 0i64;
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let kept = &r[..digits.min(9)];
        frac = kept.parse::<i64>().ok()? * 10i64.pow(9 - kept.len() as u32);
        rest = &r[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && matches!(&rest[..1], "+" | "-") && &rest[3..4] == ":" => {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (rest[1..3].parse::<i64>().ok()? * 3600 + rest[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec - offset;
    Some(secs * 1_000_000_000 + frac)
}

/// Seconds since the epoch as docker sends them (`1700000000` or `1700000000.5`), as
/// unix nanoseconds, exactly; None if it is not one.
pub fn parse_epoch_seconds(t: &str) -> Option<i64> {
    let (secs, frac) = t.split_once('.').unwrap_or((t, ""));
    let secs: i64 = secs.parse().ok()?;
    let frac: i64 = if frac.is_empty() {
        0
    } else if frac.len() <= 9 && frac.bytes().all(|b| b.is_ascii_digit()) {
        format!("{frac:0<9}").parse().ok()?
    } else {
        return None;
    };
    Some(secs * 1_000_000_000 + frac)
}

/// A log line as runtimes keep it: its RFC 3339 time, a space, the output; a line
/// without a time (written before times were kept) is all output, at time 0.
pub fn split_time(line: &[u8]) -> (i64, &[u8]) {
    let Some(space) = line.iter().position(|b| *b == b' ') else {
        return (0, line);
    };
    match std::str::from_utf8(&line[..space])
        .ok()
        .and_then(parse_rfc3339)
    {
        Some(t) => (t, &line[space + 1..]),
        None => (0, line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_lose_their_time_to_the_field() {
        assert_eq!(
            split_time(b"2023-11-14T22:13:20.5Z hello world"),
            (1_700_000_000_500_000_000, &b"hello world"[..])
        );
        assert_eq!(split_time(b"hello world"), (0, &b"hello world"[..]));
        assert_eq!(
            split_time(b"2023-11-14T22:13:20Z "),
            (1_700_000_000_000_000_000, &b""[..])
        );
        assert_eq!(split_time(b""), (0, &b""[..]));
    }

    #[test]
    fn epoch_seconds_are_read_exactly() {
        assert_eq!(
            parse_epoch_seconds("1700000000"),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(
            parse_epoch_seconds("1700000000.000000007"),
            Some(1_700_000_000_000_000_007)
        );
        assert_eq!(parse_epoch_seconds("yesterday"), None);
        assert_eq!(parse_epoch_seconds("1.x"), None);
    }

    #[test]
    fn times_go_there_and_back() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        for nanos in [
            0,
            1_700_000_000_500_000_000,
            1_796_748_709_123_456_789,
            -86_400_000_000_000,
        ] {
            assert_eq!(parse_rfc3339(&rfc3339(nanos)), Some(nanos));
        }
        // dockerd trims trailing zeros; offsets count.
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20.5Z"),
            Some(1_700_000_000_500_000_000)
        );
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20+01:00"),
            Some(1_700_000_000_000_000_000)
        );
        for bad in [
            "",
            "yesterday",
            "2023-11-14 22:13:20Z",
            "2023-13-14T22:13:20Z",
            "2023-11-14T22:13:20",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
