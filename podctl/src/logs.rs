//! Reading CRI container logs: lines of `<RFC3339Nano time> <stream> <tags> <content>`,
//! where the first tag is `P` (partial: the line goes on in the next record of
//! the same stream) or `F` (full: the line ends here).

use std::collections::VecDeque;
use std::io::{self, Read, Write};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line the container wrote, without its newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub stream: Stream,
    pub text: Vec<u8>,
}

/// One parsed record of the log file.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub stream: Stream,
    pub partial: bool,
    pub content: &'a [u8],
}

/// Parses one record (one line of the file, without its newline).
pub fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let _time = parts.next().filter(|t| !t.is_empty())?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let tags = parts.next()?;
    let partial = match tags.split(|b| *b == b':').next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    Some(Record {
        stream,
        partial,
        content: parts.next().unwrap_or(b""),
    })
}

/// Joins partial records into lines, one pending line per stream. Feed it
/// the file's bytes in any chunks.
#[derive(Default)]
pub struct LogReader {
    /// Bytes after the last newline seen: a record still being written.
    unterminated: Vec<u8>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl LogReader {
    /// Appends to `out` every line completed by `bytes`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<LogLine>) {
        let mut rest = bytes;
        while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
            if self.unterminated.is_empty() {
                self.record(&rest[..nl], out);
            } else {
                let mut line = std::mem::take(&mut self.unterminated);
                line.extend_from_slice(&rest[..nl]);
                self.record(&line, out);
            }
            rest = &rest[nl + 1..];
        }
        self.unterminated.extend_from_slice(rest);
    }

    /// At the end of the log: an unterminated record and partial lines are
    /// all there will be of them, so they are emitted as they are.
    pub fn finish(&mut self, out: &mut Vec<LogLine>) {
        if !self.unterminated.is_empty() {
            let line = std::mem::take(&mut self.unterminated);
            self.record(&line, out);
        }
        for stream in [Stream::Stdout, Stream::Stderr] {
            let buf = self.pending(stream);
            if !buf.is_empty() {
                let text = std::mem::take(buf);
                out.push(LogLine { stream, text });
            }
        }
    }

    fn pending(&mut self, stream: Stream) -> &mut Vec<u8> {
        match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        }
    }

    fn record(&mut self, line: &[u8], out: &mut Vec<LogLine>) {
        let Some(r) = parse_record(line) else {
            // Not CRI format: show it rather than lose it.
            out.push(LogLine {
                stream: Stream::Stdout,
                text: line.to_vec(),
            });
            return;
        };
        let buf = self.pending(r.stream);
        buf.extend_from_slice(r.content);
        if !r.partial {
            let text = std::mem::take(buf);
            out.push(LogLine {
                stream: r.stream,
                text,
            });
        }
    }
}

/// Reads all of `file` as lines; the last `tail` of them when given.
pub fn read_all(
    file: &mut impl Read,
    tail: Option<usize>,
    finish: bool,
) -> io::Result<(LogReader, Vec<LogLine>)> {
    let mut reader = LogReader::default();
    let mut kept: VecDeque<LogLine> = VecDeque::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut lines = Vec::new();
    loop {
        let n = file.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        reader.feed(&chunk[..n], &mut lines);
        keep(&mut kept, &mut lines, tail);
    }
    if finish {
        reader.finish(&mut lines);
        keep(&mut kept, &mut lines, tail);
    }
    Ok((reader, kept.into()))
}

fn keep(kept: &mut VecDeque<LogLine>, lines: &mut Vec<LogLine>, tail: Option<usize>) {
    kept.extend(lines.drain(..));
    if let Some(n) = tail {
        while kept.len() > n {
            kept.pop_front();
        }
    }
}

/// Writes lines to stdout or stderr by the stream they came from.
pub fn write_lines(
    lines: &[LogLine],
    stdout: &mut impl Write,
    stderr: &mut impl Write,
) -> io::Result<()> {
    for l in lines {
        let w: &mut dyn Write = match l.stream {
            Stream::Stdout => stdout,
            Stream::Stderr => stderr,
        };
        w.write_all(&l.text)?;
        w.write_all(b"\n")?;
    }
    stdout.flush()?;
    stderr.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(s: &str) -> LogLine {
        LogLine {
            stream: Stream::Stdout,
            text: s.as_bytes().to_vec(),
        }
    }

    fn err(s: &str) -> LogLine {
        LogLine {
            stream: Stream::Stderr,
            text: s.as_bytes().to_vec(),
        }
    }

    #[test]
    fn records() {
        let r = parse_record(b"2016-10-06T00:17:09.669794202Z stdout F hello world").unwrap();
        assert_eq!(
            r,
            Record {
                stream: Stream::Stdout,
                partial: false,
                content: b"hello world"
            }
        );
        let r = parse_record(b"2016-10-06T00:17:09.669794202Z stderr P  two  spaces").unwrap();
        assert_eq!(
            (r.stream, r.partial, r.content),
            (Stream::Stderr, true, &b" two  spaces"[..])
        );
        // An empty line, with and without the separator after the tag.
        assert_eq!(parse_record(b"t stdout F ").unwrap().content, b"");
        assert_eq!(parse_record(b"t stdout F").unwrap().content, b"");
        // Further tags after ':' are allowed.
        assert!(!parse_record(b"t stdout F:x y").unwrap().partial);
        assert_eq!(parse_record(b"t stdin F x"), None);
        assert_eq!(parse_record(b"t stdout X x"), None);
        assert_eq!(parse_record(b"garbage"), None);
    }

    #[test]
    fn partials_are_joined_per_stream() {
        let mut r = LogReader::default();
        let mut lines = Vec::new();
        r.feed(
            b"t1 stdout P hel\nt2 stderr P oo\nt3 stdout P lo \nt4 stderr F ps\nt5 stdout F world\n",
            &mut lines,
        );
        assert_eq!(lines, vec![err("oops"), out("hello world")]);
    }

    #[test]
    fn records_split_across_reads() {
        let mut r = LogReader::default();
        let mut lines = Vec::new();
        r.feed(b"t stdout F a\nt std", &mut lines);
        assert_eq!(lines, vec![out("a")]);
        r.feed(b"out F b", &mut lines);
        assert_eq!(lines.len(), 1);
        r.feed(b"\n", &mut lines);
        assert_eq!(lines, vec![out("a"), out("b")]);
    }

    #[test]
    fn finish_flushes_partials_and_unterminated() {
        let mut r = LogReader::default();
        let mut lines = Vec::new();
        r.feed(b"t stdout P half\nt stderr F last", &mut lines);
        assert!(lines.is_empty());
        r.finish(&mut lines);
        assert_eq!(lines, vec![err("last"), out("half")]);
    }

    #[test]
    fn tail_keeps_last_lines() {
        let data = b"t stdout F 1\nt stderr F 2\nt stdout P 3\nt stdout F 3\nt stdout F 4\n";
        let (_, lines) = read_all(&mut &data[..], Some(2), true).unwrap();
        assert_eq!(lines, vec![out("33"), out("4")]);
        let (_, lines) = read_all(&mut &data[..], Some(0), true).unwrap();
        assert!(lines.is_empty());
        let (_, lines) = read_all(&mut &data[..], None, true).unwrap();
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn lines_go_to_their_stream() {
        let (mut o, mut e) = (Vec::new(), Vec::new());
        write_lines(&[out("a"), err("b"), out("")], &mut o, &mut e).unwrap();
        assert_eq!((o.as_slice(), e.as_slice()), (&b"a\n\n"[..], &b"b\n"[..]));
    }
}
