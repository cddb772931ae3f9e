//! The time of each output line, as dockerd keeps it: a process task's output goes
//! through a small stamper process (the shoal binary's hidden `__stamp-log`), which
//! outlives an agent restart as the task does, into the task's log file.

use std::io::{BufRead, BufReader, Read, Write};

/// dockerd cuts lines longer than this into pieces; so does shoal.
const MAX_LINE: u64 = 16 * 1024;

/// Copies `input` to `out` line by line, each led by `now()` (unix nanoseconds) as
/// RFC 3339 and a space; one write per line, so lines never interleave in the file.
pub fn stamp_lines(
    input: impl Read,
    mut out: impl Write,
    now: impl Fn() -> i64,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(input);
    let mut line = Vec::new();
    loop {
        line.clear();
        if (&mut reader).take(MAX_LINE).read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let mut record = shoal_proto::time::rfc3339(now()).into_bytes();
        record.push(b' ');
        record.extend_from_slice(&line);
        if !line.ends_with(b"\n") {
            record.push(b'\n');
        }
        out.write_all(&record)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_gets_the_time_it_was_read() {
        let long = "x".repeat(MAX_LINE as usize + 10);
        let input = format!("one\ntwo\n{long}\nlast");
        let mut out = Vec::new();
        stamp_lines(input.as_bytes(), &mut out, || 1_700_000_000_000_000_000).unwrap();
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        let stamp = "2023-11-14T22:13:20.000000000Z ";
        assert_eq!(lines[0], format!("{stamp}one"));
        assert_eq!(lines[1], format!("{stamp}two"));
        // A long line comes in pieces, each stamped; an unfinished last line is ended.
        assert_eq!(lines[2].len(), stamp.len() + MAX_LINE as usize);
        assert_eq!(lines[3], format!("{stamp}xxxxxxxxxx"));
        assert_eq!(lines[4], format!("{stamp}last"));
        assert_eq!(lines.len(), 5);
    }
}
