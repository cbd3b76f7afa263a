//! Reader for the CRI container log format:
//! `<RFC3339Nano timestamp> <stdout|stderr> <P|F> <text>\n`, where `P` marks a partial line that
//! continues in the next entry of the same stream and `F` the end of a line.

use anyhow::{bail, Context, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One entry of a CRI log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub time: chrono::DateTime<chrono::FixedOffset>,
    pub stream: Stream,
    /// `P` (true) or `F` (false).
    pub partial: bool,
    pub text: String,
}

/// Parses a whole log file strictly: every line must be a well-formed entry and the file must
/// end with a newline.
pub fn parse(content: &str) -> Result<Vec<LogEntry>> {
    let mut entries = Vec::new();
    if content.is_empty() {
        return Ok(entries);
    }
    let Some(body) = content.strip_suffix('\n') else {
        bail!(
            "CRI log does not end with a newline: ...{:?}",
            tail(content)
        );
    };
    for (i, line) in body.split('\n').enumerate() {
        entries.push(parse_line(line).with_context(|| format!("CRI log line {}", i + 1))?);
    }
    Ok(entries)
}

/// Parses one entry (without its newline).
pub fn parse_line(line: &str) -> Result<LogEntry> {
    let mut parts = line.splitn(4, ' ');
    let (Some(ts), Some(stream), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
        bail!("not `<time> <stream> <P|F> <text>`: {:?}", short(line));
    };
    let text = parts.next().unwrap_or("");
    // RFC3339Nano: 2016-10-06T00:17:09.669794202Z (fraction without trailing zeros; may be
    // absent when it is zero) or with a numeric offset.
    let time = chrono::DateTime::parse_from_rfc3339(ts)
        .with_context(|| format!("bad RFC3339Nano timestamp {ts:?} in {:?}", short(line)))?;
    if !ts.contains('T') {
        bail!("timestamp {ts:?} lacks the RFC3339 'T'");
    }
    let stream = match stream {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        s => bail!("bad stream {s:?} in {:?}", short(line)),
    };
    let partial = match tag {
        "P" => true,
        "F" => false,
        t => bail!("bad tag {t:?} (want P or F) in {:?}", short(line)),
    };
    Ok(LogEntry {
        time,
        stream,
        partial,
        text: text.to_string(),
    })
}

/// The complete lines of one stream, `P` parts joined with the `F` entry that ends them. A
/// trailing unterminated run of `P` parts is returned as a last line too.
pub fn lines(entries: &[LogEntry], stream: Stream) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for e in entries.iter().filter(|e| e.stream == stream) {
        let s = cur.get_or_insert_with(String::new);
        s.push_str(&e.text);
        if !e.partial {
            out.push(cur.take().unwrap_or_default());
        }
    }
    out.extend(cur);
    out
}

fn short(s: &str) -> &str {
    let mut end = s.len().min(120);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn tail(s: &str) -> &str {
    let mut start = s.len().saturating_sub(80);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_joins() {
        let log = "2024-01-02T03:04:05.123456789Z stdout P ab\n\
                   2024-01-02T03:04:05.2Z stderr F err\n\
                   2024-01-02T03:04:05.3+00:00 stdout F c\n\
                   2024-01-02T03:04:06Z stdout F \n";
        let e = parse(log).unwrap();
        assert_eq!(e.len(), 4);
        assert_eq!(lines(&e, Stream::Stdout), vec!["abc", ""]);
        assert_eq!(lines(&e, Stream::Stderr), vec!["err"]);
    }

    #[test]
    fn rejects_malformed() {
        assert!(parse("2024-01-02T03:04:05Z stdout F x").is_err()); // no newline
        assert!(parse("2024-01-02 03:04:05 stdout F x\n").is_err());
        assert!(parse("2024-01-02T03:04:05Z out F x\n").is_err());
        assert!(parse("2024-01-02T03:04:05Z stdout X x\n").is_err());
        assert!(parse("just text\n").is_err());
    }
}
