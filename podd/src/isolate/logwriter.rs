//! The CRI log format: `<RFC3339Nano UTC> <stdout|stderr> <F|P> <text>\n`.
//!
//! [`LineSplitter`] is the pure part: bytes in, (text, partial) records out. A record is a
//! complete line without its `\n` (and without the `\r` of a `\r\n`, as the kubelet's reader
//! expects) tagged F, or a 16 KiB piece of a longer line tagged P; the last piece of such a
//! line is F. At EOF an unterminated remainder is F.

use std::fs::File;
use std::io::Write;

/// Longest text of one record; longer lines are split into P pieces.
pub const MAX_RECORD: usize = 16 * 1024;

/// Splits a byte stream into CRI log records.
#[derive(Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
    max: usize,
}

impl LineSplitter {
    pub fn new() -> LineSplitter {
        LineSplitter::with_max(MAX_RECORD)
    }

    pub fn with_max(max: usize) -> LineSplitter {
        LineSplitter {
            pending: Vec::new(),
            max: max.max(1),
        }
    }

    /// Feed bytes; `emit(text, partial)` is called for every record they complete.
    pub fn push(&mut self, mut data: &[u8], emit: &mut dyn FnMut(&[u8], bool)) {
        while let Some(nl) = data.iter().position(|&b| b == b'\n') {
            let mut line = &data[..nl];
            data = &data[nl + 1..];
            if self.pending.is_empty() {
                if let Some(stripped) = line.strip_suffix(b"\r") {
                    line = stripped;
                }
                emit_line(line, self.max, emit);
            } else {
                let mut full = std::mem::take(&mut self.pending);
                full.extend_from_slice(line);
                if full.last() == Some(&b'\r') {
                    full.pop();
                }
                emit_line(&full, self.max, emit);
                full.clear();
                self.pending = full; // keep the allocation
            }
        }
        self.pending.extend_from_slice(data);
        // Only flush P pieces once the line is known to be longer than `max`.
        while self.pending.len() > self.max {
            emit(&self.pending[..self.max], true);
            self.pending.drain(..self.max);
        }
    }

    /// End of stream: an unterminated remainder becomes one F record.
    pub fn finish(&mut self, emit: &mut dyn FnMut(&[u8], bool)) {
        if !self.pending.is_empty() {
            emit(&self.pending, false);
            self.pending.clear();
        }
    }
}

/// A complete line: P pieces of `max` while more than `max` remains, then the rest as F.
fn emit_line(mut line: &[u8], max: usize, emit: &mut dyn FnMut(&[u8], bool)) {
    while line.len() > max {
        emit(&line[..max], true);
        line = &line[max..];
    }
    emit(line, false);
}

/// Length of an [`rfc3339_nano`] timestamp.
pub const TIMESTAMP_LEN: usize = 30;

/// RFC 3339 UTC with nanoseconds, e.g. `2026-12-03T13:41:25.123456789Z` (years 0..=9999).
/// Hand-formatted: the monitor calls it for every read, and core::fmt is a lot of code to keep
/// paged in for a process that should stay small.
pub fn rfc3339_nano(secs: i64, nanos: u32) -> [u8; TIMESTAMP_LEN] {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out = *b"0000-00-00T00:00:00.000000000Z";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y.clamp(0, 9999) as u64);
    put(5, 2, u64::from(m));
    put(8, 2, u64::from(d));
    put(11, 2, (rem / 3600) as u64);
    put(14, 2, (rem % 3600 / 60) as u64);
    put(17, 2, (rem % 60) as u64);
    put(20, 9, u64::from(nanos.min(999_999_999)));
    out
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Wall-clock now as (seconds, nanoseconds) since the epoch.
pub fn now() -> (i64, u32) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d.subsec_nanos())
}

/// Wall-clock now in nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    let (secs, nanos) = now();
    secs * 1_000_000_000 + i64::from(nanos)
}

/// Appends CRI records for one stream to the log file.
pub struct LogWriter<'a> {
    pub file: &'a File,
    pub stream: &'static str,
}

impl LogWriter<'_> {
    /// Write one record. A failed write is dropped (nowhere to report it; the workload must
    /// not block on a full disk).
    pub fn record(&self, timestamp: &[u8], text: &[u8], partial: bool, buf: &mut Vec<u8>) {
        buf.clear();
        buf.extend_from_slice(timestamp);
        buf.push(b' ');
        buf.extend_from_slice(self.stream.as_bytes());
        buf.extend_from_slice(if partial { b" P " } else { b" F " });
        buf.extend_from_slice(text);
        buf.push(b'\n');
        let _ = (&mut &*self.file).write_all(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max: usize, chunks: &[&[u8]]) -> Vec<(String, char)> {
        let mut s = LineSplitter::with_max(max);
        let mut out = Vec::new();
        let mut emit = |t: &[u8], p: bool| {
            out.push((
                String::from_utf8_lossy(t).into_owned(),
                if p { 'P' } else { 'F' },
            ))
        };
        for c in chunks {
            s.push(c, &mut emit);
        }
        s.finish(&mut emit);
        out
    }

    fn rec(t: &str, tag: char) -> (String, char) {
        (t.to_string(), tag)
    }

    #[test]
    fn complete_lines_across_chunks() {
        assert_eq!(
            split(16, &[b"hel", b"lo\nwor", b"ld\n"]),
            vec![rec("hello", 'F'), rec("world", 'F')]
        );
    }

    #[test]
    fn empty_lines_are_records() {
        assert_eq!(
            split(16, &[b"\n\na\n"]),
            vec![rec("", 'F'), rec("", 'F'), rec("a", 'F')]
        );
    }

    #[test]
    fn unterminated_tail_is_full_at_eof() {
        assert_eq!(split(16, &[b"a\nb"]), vec![rec("a", 'F'), rec("b", 'F')]);
        assert_eq!(split(16, &[]), vec![]);
    }

    #[test]
    fn long_line_is_split_into_partials() {
        assert_eq!(
            split(4, &[b"abcdefghij\n"]),
            vec![rec("abcd", 'P'), rec("efgh", 'P'), rec("ij", 'F')]
        );
        // Streamed byte by byte, same records.
        let bytes: Vec<&[u8]> = b"abcdefghij\n".chunks(1).collect();
        assert_eq!(
            split(4, &bytes),
            vec![rec("abcd", 'P'), rec("efgh", 'P'), rec("ij", 'F')]
        );
    }

    #[test]
    fn line_of_exactly_max_is_one_full_record() {
        assert_eq!(split(4, &[b"abcd", b"\n"]), vec![rec("abcd", 'F')]);
        assert_eq!(
            split(4, &[b"abcdefgh\n"]),
            vec![rec("abcd", 'P'), rec("efgh", 'F')]
        );
    }

    #[test]
    fn long_unterminated_line_at_eof() {
        assert_eq!(
            split(4, &[b"abcdefg"]),
            vec![rec("abcd", 'P'), rec("efg", 'F')]
        );
    }

    #[test]
    fn carriage_returns() {
        // \r\n ends a line like \n; a lone \r is kept as text.
        assert_eq!(
            split(16, &[b"a\r\nb\rc\n", b"d\r", b"\n"]),
            vec![rec("a", 'F'), rec("b\rc", 'F'), rec("d", 'F')]
        );
    }

    #[test]
    fn default_max_is_16k() {
        let line = vec![b'x'; MAX_RECORD * 2 + 5];
        let mut data = line.clone();
        data.push(b'\n');
        let out = split(MAX_RECORD, &[&data]);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].0.len(), MAX_RECORD);
        assert_eq!((out[1].1, out[2].1), ('P', 'F'));
        assert_eq!(out[2].0.len(), 5);
    }

    #[test]
    fn timestamps() {
        let ts = |s, n| String::from_utf8(rfc3339_nano(s, n).to_vec()).unwrap();
        assert_eq!(ts(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            ts(1_796_305_285, 123_456_789),
            "2026-12-03T13:41:25.123456789Z"
        );
        // Leap day, and agreement with chrono over a range of dates.
        assert_eq!(ts(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        for secs in (0..4_102_444_800i64).step_by(7_777_777) {
            let c = chrono::DateTime::from_timestamp(secs, 987_654_321).unwrap();
            assert_eq!(
                ts(secs, 987_654_321),
                c.format("%Y-%m-%dT%H:%M:%S.%9fZ").to_string()
            );
        }
    }
}
