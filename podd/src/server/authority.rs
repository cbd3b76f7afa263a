//! Rewrites a malformed HTTP/2 `:authority` on accepted connections.
//!
//! grpc-go before 1.52-ish (crictl 1.26, critest) dials a unix socket with the passthrough
//! resolver and sends the socket path as `:authority` (e.g. `/run/podd/podd.sock`). hyperium/h2
//! rejects that as a malformed authority and resets the stream with PROTOCOL_ERROR, so every
//! call fails. [`AuthorityFix`] wraps an accepted connection and edits the client→server bytes:
//! every header block (HEADERS plus its CONTINUATIONs) is HPACK-decoded with the client's
//! dynamic table, an invalid `:authority` becomes `localhost`, and the block is re-encoded with
//! an encoder whose dynamic table the server's decoder mirrors, then re-framed. Every other
//! frame, and everything server→client, passes through untouched; non-header frames are handed
//! to the server straight from the read into its buffer, without a copy.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use loona_hpack::{Decoder, Encoder};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// What replaces an `:authority` that h2 would reject.
const REPLACEMENT: &[u8] = b"localhost";
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
/// The server's SETTINGS_MAX_FRAME_SIZE: h2's default, which podd does not change.
const MAX_FRAME_SIZE: usize = 16_384;
/// The server's SETTINGS_HEADER_TABLE_SIZE: h2's default, which podd does not change. It bounds
/// both the client's encoder (so our decoder) and our encoder (so the server's decoder).
const HEADER_TABLE_SIZE: usize = 4_096;
/// Bounds on one header block, encoded and decoded (name + value + 32 per field, as HPACK
/// counts). hyper refuses lists above 16 KiB anyway; these only stop a client from making us
/// buffer or expand without limit.
const MAX_BLOCK: usize = 1 << 20;
const MAX_LIST: usize = 1 << 20;

const TYPE_HEADERS: u8 = 0x1;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;

/// An accepted connection whose client→server header blocks get a valid `:authority`.
pub struct AuthorityFix<T> {
    inner: T,
    rewriter: Rewriter,
    /// Rewritten frames waiting to be read; always handed out before `stash`.
    out: Vec<u8>,
    out_pos: usize,
    /// Bytes read from `inner` that the rewriter has not looked at yet.
    stash: Vec<u8>,
    stash_pos: usize,
}

impl<T> AuthorityFix<T> {
    pub fn new(inner: T) -> Self {
        AuthorityFix {
            inner,
            rewriter: Rewriter::new(),
            out: Vec::new(),
            out_pos: 0,
            stash: Vec::new(),
            stash_pos: 0,
        }
    }
}

impl<T: Connected> Connected for AuthorityFix<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for AuthorityFix<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let entry = buf.filled().len();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.out_pos < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.out_pos);
                buf.put_slice(&this.out[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == this.out.len() {
                    this.out.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.stash_pos < this.stash.len() {
                // What passes must fit: the rewriter counts it as handed on.
                let input = &this.stash[this.stash_pos..];
                let input = &input[..input.len().min(buf.remaining())];
                match this.rewriter.step(input, &mut this.out)? {
                    Step::Pass(n) => {
                        buf.put_slice(&input[..n]);
                        this.stash_pos += n;
                    }
                    Step::Consumed(n) => this.stash_pos += n,
                }
                if this.stash_pos == this.stash.len() {
                    this.stash.clear();
                    this.stash_pos = 0;
                }
                if buf.filled().len() == entry {
                    continue;
                }
                return Poll::Ready(Ok(()));
            }

            // Read straight into the caller's buffer, then keep the longest prefix that
            // passes unchanged; the rest goes to the rewriter through `stash`.
            let start = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            let end = buf.filled().len();
            let mut pos = start;
            while pos < end {
                let step = match this.rewriter.step(&buf.filled()[pos..end], &mut this.out) {
                    Ok(step) => step,
                    Err(e) => {
                        // A failed read hands out nothing.
                        buf.set_filled(start);
                        return Poll::Ready(Err(e));
                    }
                };
                match step {
                    Step::Pass(n) => pos += n,
                    Step::Consumed(n) => {
                        this.stash.extend_from_slice(&buf.filled()[pos + n..end]);
                        buf.set_filled(pos);
                        break;
                    }
                }
            }
            // Nothing read is end of file; nothing kept means the rewriter has it.
            if end == start || buf.filled().len() > start {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// What the rewriter did with the front of its input (always at least one byte).
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// These bytes go to the server unchanged.
    Pass(usize),
    /// These bytes were taken in; what they become, if anything yet, was appended to `out`.
    Consumed(usize),
}

enum State {
    /// Matching the client's connection preface; anything else is not HTTP/2 and passes.
    Preface(usize),
    Passthrough,
    /// Between frames, with this much of a frame header held.
    FrameHeader([u8; FRAME_HEADER_LEN], usize),
    /// Inside a frame that passes; this much of its payload is left.
    Payload(usize),
    /// Inside a HEADERS or CONTINUATION frame, collecting its payload into `frame`.
    HeaderPayload {
        ty: u8,
        flags: u8,
        stream: u32,
        len: usize,
    },
}

/// The header block being collected, from its HEADERS frame on.
struct Pending {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
}

/// The client→server HTTP/2 frame parser and header block rewriter, fed in arbitrary chunks.
struct Rewriter {
    state: State,
    decoder: Decoder<'static>,
    encoder: Encoder<'static>,
    /// The current HEADERS/CONTINUATION payload.
    frame: Vec<u8>,
    /// The header block fragments so far, and what the HEADERS frame said.
    block: Vec<u8>,
    pending: Option<Pending>,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Whether h2 would accept this `:authority` (it parses it exactly so).
fn valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

fn put_frame_header(out: &mut Vec<u8>, len: usize, ty: u8, flags: u8, stream: u32) {
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.push(ty);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
}

impl Rewriter {
    fn new() -> Self {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        let mut encoder = Encoder::new();
        encoder.set_max_table_size(HEADER_TABLE_SIZE);
        Rewriter {
            state: State::Preface(0),
            decoder,
            encoder,
            frame: Vec::new(),
            block: Vec::new(),
            pending: None,
        }
    }

    /// Takes in the front of `input` (which is not empty).
    fn step(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<Step> {
        debug_assert!(!input.is_empty());
        match &mut self.state {
            State::Passthrough => Ok(Step::Pass(input.len())),
            State::Preface(seen) => {
                let n = input.len().min(PREFACE.len() - *seen);
                if input[..n] != PREFACE[*seen..*seen + n] {
                    self.state = State::Passthrough;
                    return Ok(Step::Pass(input.len()));
                }
                *seen += n;
                if *seen == PREFACE.len() {
                    self.state = State::FrameHeader([0; FRAME_HEADER_LEN], 0);
                }
                Ok(Step::Pass(n))
            }
            State::Payload(left) => {
                let n = input.len().min(*left);
                *left -= n;
                if *left == 0 {
                    self.state = State::FrameHeader([0; FRAME_HEADER_LEN], 0);
                }
                Ok(Step::Pass(n))
            }
            State::FrameHeader(held, have) => {
                if *have == 0 && input.len() >= FRAME_HEADER_LEN {
                    // The whole header is here: a frame that passes need not be held.
                    let header: [u8; FRAME_HEADER_LEN] =
                        input[..FRAME_HEADER_LEN].try_into().expect("9 bytes");
                    if self.start_frame(&header)? {
                        return Ok(Step::Pass(FRAME_HEADER_LEN));
                    }
                    self.after_header(out)?;
                    return Ok(Step::Consumed(FRAME_HEADER_LEN));
                }
                let n = input.len().min(FRAME_HEADER_LEN - *have);
                held[*have..*have + n].copy_from_slice(&input[..n]);
                *have += n;
                if *have == FRAME_HEADER_LEN {
                    let header = *held;
                    if self.start_frame(&header)? {
                        out.extend_from_slice(&header);
                    } else {
                        self.after_header(out)?;
                    }
                }
                Ok(Step::Consumed(n))
            }
            State::HeaderPayload { len, .. } => {
                let n = input.len().min(*len - self.frame.len());
                self.frame.extend_from_slice(&input[..n]);
                if self.frame.len() == *len {
                    self.finish_frame(out)?;
                }
                Ok(Step::Consumed(n))
            }
        }
    }

    /// Sets the state for a frame with this header; true if the frame passes unchanged.
    fn start_frame(&mut self, header: &[u8; FRAME_HEADER_LEN]) -> io::Result<bool> {
        let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let ty = header[3];
        let flags = header[4];
        let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
        if ty == TYPE_HEADERS || ty == TYPE_CONTINUATION {
            if self.block.len() + len > MAX_BLOCK {
                return Err(invalid(format!("header block over {MAX_BLOCK} bytes")));
            }
            self.frame.clear();
            self.state = State::HeaderPayload {
                ty,
                flags,
                stream,
                len,
            };
            return Ok(false);
        }
        if self.pending.is_some() {
            return Err(invalid(format!(
                "HTTP/2 frame of type {ty:#x} inside a header block"
            )));
        }
        self.state = if len == 0 {
            State::FrameHeader([0; FRAME_HEADER_LEN], 0)
        } else {
            State::Payload(len)
        };
        Ok(true)
    }

    /// A HEADERS or CONTINUATION frame with no payload is complete at its header.
    fn after_header(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        if matches!(self.state, State::HeaderPayload { len: 0, .. }) {
            self.finish_frame(out)?;
        }
        Ok(())
    }

    /// The HEADERS or CONTINUATION frame in `frame` is complete.
    fn finish_frame(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        let State::HeaderPayload {
            ty, flags, stream, ..
        } = self.state
        else {
            unreachable!("finish_frame outside a header frame");
        };
        self.state = State::FrameHeader([0; FRAME_HEADER_LEN], 0);
        let payload = std::mem::take(&mut self.frame);
        if ty == TYPE_HEADERS {
            if self.pending.is_some() {
                return Err(invalid("HEADERS inside a header block".into()));
            }
            let mut at = 0;
            let mut pad = 0;
            if flags & FLAG_PADDED != 0 {
                pad = *payload
                    .first()
                    .ok_or_else(|| invalid("PADDED HEADERS without a pad length".into()))?
                    as usize;
                at = 1;
            }
            let mut priority = None;
            if flags & FLAG_PRIORITY != 0 {
                let p = payload
                    .get(at..at + 5)
                    .ok_or_else(|| invalid("PRIORITY HEADERS too short".into()))?;
                priority = Some(p.try_into().expect("5 bytes"));
                at += 5;
            }
            if at + pad > payload.len() {
                return Err(invalid("HEADERS padding exceeds the frame".into()));
            }
            self.block.clear();
            self.block
                .extend_from_slice(&payload[at..payload.len() - pad]);
            self.pending = Some(Pending {
                stream,
                end_stream: flags & FLAG_END_STREAM != 0,
                priority,
            });
        } else {
            match &self.pending {
                Some(p) if p.stream == stream => self.block.extend_from_slice(&payload),
                _ => return Err(invalid("CONTINUATION outside a header block".into())),
            }
        }
        self.frame = payload;
        self.frame.clear();
        if flags & FLAG_END_HEADERS != 0 {
            self.emit_block(out)?;
        }
        Ok(())
    }

    /// Decodes the collected block, fixes `:authority`, re-encodes and frames it into `out`.
    fn emit_block(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        let pending = self.pending.take().expect("a header block is pending");
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut size = 0usize;
        self.decoder
            .decode_with_cb(&self.block, |name, value| {
                size += name.len() + value.len() + 32;
                if size > MAX_LIST {
                    return;
                }
                if &*name == b":authority" && !valid_authority(&value) {
                    fields.push((name.into_owned(), REPLACEMENT.to_vec()));
                } else {
                    fields.push((name.into_owned(), value.into_owned()));
                }
            })
            .map_err(|e| invalid(format!("HPACK decoding a header block: {e:?}")))?;
        if size > MAX_LIST {
            return Err(invalid(format!("header list over {MAX_LIST} bytes")));
        }
        self.block.clear();
        self.encoder
            .encode_into(
                fields.iter().map(|(n, v)| (&n[..], &v[..])),
                &mut self.block,
            )
            .expect("encoding into a Vec");

        let prio_len = if pending.priority.is_some() { 5 } else { 0 };
        let first = self.block.len().min(MAX_FRAME_SIZE - prio_len);
        let mut flags = 0;
        if pending.end_stream {
            flags |= FLAG_END_STREAM;
        }
        if pending.priority.is_some() {
            flags |= FLAG_PRIORITY;
        }
        if first == self.block.len() {
            flags |= FLAG_END_HEADERS;
        }
        put_frame_header(out, prio_len + first, TYPE_HEADERS, flags, pending.stream);
        if let Some(p) = pending.priority {
            out.extend_from_slice(&p);
        }
        out.extend_from_slice(&self.block[..first]);
        let mut at = first;
        while at < self.block.len() {
            let n = (self.block.len() - at).min(MAX_FRAME_SIZE);
            let flags = if at + n == self.block.len() {
                FLAG_END_HEADERS
            } else {
                0
            };
            put_frame_header(out, n, TYPE_CONTINUATION, flags, pending.stream);
            out.extend_from_slice(&self.block[at..at + n]);
            at += n;
        }
        self.block.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    type Fields = Vec<(Vec<u8>, Vec<u8>)>;
    /// A frame as (type, flags, stream, payload).
    type Frame = (u8, u8, u32, Vec<u8>);
    /// A decoded header block as (stream, HEADERS flags, fields).
    type Block = (u32, u8, Fields);

    fn fields(list: &[(&str, &str)]) -> Fields {
        list.iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    fn request(authority: &str) -> Fields {
        fields(&[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/runtime.v1.RuntimeService/Version"),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("user-agent", "grpc-go/1.50.1"),
            ("te", "trailers"),
            ("grpc-timeout", "1999m"),
        ])
    }

    fn encode(enc: &mut Encoder<'static>, f: &Fields) -> Vec<u8> {
        enc.encode(f.iter().map(|(n, v)| (&n[..], &v[..])))
    }

    fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        put_frame_header(&mut v, payload.len(), ty, flags, stream);
        v.extend_from_slice(payload);
        v
    }

    /// A client's HEADERS: padded, with priority, the block split into a CONTINUATION.
    fn fancy_headers(block: &[u8], stream: u32) -> Vec<u8> {
        let split = block.len() / 2;
        let mut payload = vec![3u8]; // pad length
        payload.extend_from_slice(&[0, 0, 0, 0, 15]); // priority: depends on 0, weight 16
        payload.extend_from_slice(&block[..split]);
        payload.extend_from_slice(&[0, 0, 0]);
        let mut v = frame(
            TYPE_HEADERS,
            FLAG_PADDED | FLAG_PRIORITY | FLAG_END_STREAM,
            stream,
            &payload,
        );
        v.extend(frame(
            TYPE_CONTINUATION,
            FLAG_END_HEADERS,
            stream,
            &block[split..],
        ));
        v
    }

    struct Parsed {
        frames: Vec<Frame>,
    }

    /// Splits the server-side bytes (after the preface) into frames.
    fn parse(bytes: &[u8]) -> Parsed {
        assert_eq!(&bytes[..24], PREFACE);
        let mut at = 24;
        let mut frames = Vec::new();
        while at < bytes.len() {
            let h = &bytes[at..at + 9];
            let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
            let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]);
            frames.push((h[3], h[4], stream, bytes[at + 9..at + 9 + len].to_vec()));
            at += 9 + len;
        }
        assert_eq!(at, bytes.len(), "trailing partial frame");
        Parsed { frames }
    }

    /// Decodes every header block (as the server would) and returns the non-header frames too.
    fn server_view(bytes: &[u8]) -> (Vec<Block>, Vec<Frame>) {
        let mut dec = Decoder::new();
        let mut blocks = Vec::new();
        let mut others = Vec::new();
        let mut cur: Option<(u32, u8, Vec<u8>)> = None;
        for (ty, flags, stream, payload) in parse(bytes).frames {
            match ty {
                TYPE_HEADERS => {
                    assert!(cur.is_none());
                    assert_eq!(flags & FLAG_PADDED, 0);
                    assert!(payload.len() <= MAX_FRAME_SIZE);
                    let at = if flags & FLAG_PRIORITY != 0 { 5 } else { 0 };
                    cur = Some((stream, flags, payload[at..].to_vec()));
                    if flags & FLAG_END_HEADERS != 0 {
                        let (s, f, b) = cur.take().unwrap();
                        blocks.push((s, f, dec.decode(&b).unwrap()));
                    }
                }
                TYPE_CONTINUATION => {
                    assert!(payload.len() <= MAX_FRAME_SIZE);
                    let c = cur.as_mut().expect("CONTINUATION after HEADERS");
                    assert_eq!(c.0, stream);
                    c.2.extend_from_slice(&payload);
                    if flags & FLAG_END_HEADERS != 0 {
                        let (s, f, b) = cur.take().unwrap();
                        blocks.push((s, f, dec.decode(&b).unwrap()));
                    }
                }
                _ => {
                    assert!(cur.is_none());
                    others.push((ty, flags, stream, payload));
                }
            }
        }
        assert!(cur.is_none());
        (blocks, others)
    }

    /// Runs `input` through the rewriter in chunks of `chunk` bytes, as reads would deliver it.
    async fn through(input: &[u8], chunk: usize, read_size: usize) -> Vec<u8> {
        let (client, server) = tokio::net::UnixStream::pair().unwrap();
        let input = input.to_vec();
        let writer = tokio::spawn(async move {
            let mut client = client;
            for c in input.chunks(chunk) {
                client.write_all(c).await.unwrap();
                client.flush().await.unwrap();
                if chunk < 16 {
                    tokio::task::yield_now().await;
                }
            }
            client.shutdown().await.unwrap();
        });
        let mut fix = AuthorityFix::new(server);
        let mut got = Vec::new();
        let mut buf = vec![0u8; read_size];
        for i in 0.. {
            // Alternate big and small reads so bytes held back must come out in pieces.
            let size = if i % 2 == 0 {
                read_size
            } else {
                3.min(read_size)
            };
            let n = fix.read(&mut buf[..size]).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        writer.await.unwrap();
        got
    }

    fn settings_and_data() -> (Vec<u8>, Vec<u8>) {
        let settings = frame(0x4, 0, 0, &[0, 4, 0, 0x40, 0, 0]);
        let data = frame(0x0, FLAG_END_STREAM, 1, &vec![0xab; 40_000]);
        (settings, data)
    }

    /// A connection: preface, SETTINGS, two requests (the second reuses the dynamic table), DATA.
    fn connection(authority: &str) -> (Vec<u8>, Vec<Fields>) {
        let mut enc = Encoder::new();
        let (settings, data) = settings_and_data();
        let r1 = request(authority);
        let mut r2 = request(authority);
        r2.push((b"x-big".to_vec(), vec![b'v'; 20_000])); // forces a split on re-encoding
        let mut bytes = PREFACE.to_vec();
        bytes.extend(&settings);
        bytes.extend(fancy_headers(&encode(&mut enc, &r1), 1));
        bytes.extend(&data);
        let b2 = encode(&mut enc, &r2);
        bytes.extend(frame(TYPE_HEADERS, 0, 3, &b2[..100]));
        bytes.extend(frame(TYPE_CONTINUATION, 0, 3, &b2[100..10_000]));
        bytes.extend(frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 3, &b2[10_000..]));
        bytes.extend(frame(0x8, 0, 0, &[0, 1, 0, 0])); // WINDOW_UPDATE
        (bytes, vec![r1, r2])
    }

    fn check(out: &[u8], authority: &str, expect_authority: &str) {
        let (_, want) = connection(authority);
        let (blocks, others) = server_view(out);
        assert_eq!(blocks.len(), 2);
        for ((stream, flags, got), want) in blocks.iter().zip(want) {
            let want: Fields = want
                .into_iter()
                .map(|(n, v)| {
                    if n == b":authority" {
                        (n, expect_authority.as_bytes().to_vec())
                    } else {
                        (n, v)
                    }
                })
                .collect();
            assert_eq!(got, &want);
            if *stream == 1 {
                assert_eq!(flags & FLAG_END_STREAM, FLAG_END_STREAM);
                assert_eq!(flags & FLAG_PRIORITY, FLAG_PRIORITY);
            }
        }
        // Priority fields are kept, other frames are byte-identical.
        let (ty, _, _, payload) = &parse(out).frames[1];
        assert_eq!(*ty, TYPE_HEADERS);
        assert_eq!(&payload[..5], &[0, 0, 0, 0, 15]);
        let (settings, data) = settings_and_data();
        let mut expected_others = Vec::new();
        for f in [settings, data, frame(0x8, 0, 0, &[0, 1, 0, 0])] {
            let p = parse(&[PREFACE.to_vec(), f].concat());
            expected_others.extend(p.frames);
        }
        assert_eq!(others, expected_others);
    }

    #[tokio::test]
    async fn authority_path_becomes_localhost() {
        let (bytes, _) = connection("/run/podd/podd.sock");
        let out = through(&bytes, 64 << 10, 64 << 10).await;
        check(&out, "/run/podd/podd.sock", "localhost");
    }

    #[tokio::test]
    async fn empty_authority_becomes_localhost() {
        let (bytes, _) = connection("");
        let out = through(&bytes, 64 << 10, 64 << 10).await;
        check(&out, "", "localhost");
    }

    #[tokio::test]
    async fn valid_authority_is_kept() {
        for a in ["localhost", "podd.sock:0", "127.0.0.1:10010"] {
            let (bytes, _) = connection(a);
            let out = through(&bytes, 64 << 10, 64 << 10).await;
            check(&out, a, a);
        }
    }

    #[tokio::test]
    async fn byte_at_a_time_and_small_reads() {
        let (bytes, _) = connection("/run/podd/podd.sock");
        let out = through(&bytes, 1, 7).await;
        check(&out, "/run/podd/podd.sock", "localhost");
        let out = through(&bytes, 13, 1).await;
        check(&out, "/run/podd/podd.sock", "localhost");
        let out = through(&bytes, 64 << 10, 1000).await;
        check(&out, "/run/podd/podd.sock", "localhost");
    }

    #[test]
    fn rewriter_fed_one_byte_at_a_time() {
        let (bytes, _) = connection("/tmp/x.sock");
        let mut rw = Rewriter::new();
        let mut out = Vec::new();
        for b in &bytes {
            let mut extra = Vec::new();
            match rw.step(std::slice::from_ref(b), &mut extra).unwrap() {
                Step::Pass(n) => {
                    assert_eq!(n, 1);
                    out.push(*b);
                }
                Step::Consumed(n) => assert_eq!(n, 1),
            }
            out.extend(extra);
        }
        check(&out, "/tmp/x.sock", "localhost");
    }

    #[tokio::test]
    async fn not_http2_passes_through() {
        let bytes = b"GET / HTTP/1.1\r\nHost: /x\r\n\r\n".to_vec();
        assert_eq!(through(&bytes, 5, 1024).await, bytes);
    }

    #[tokio::test]
    async fn frame_inside_header_block_is_an_error() {
        let mut enc = Encoder::new();
        let block = encode(&mut enc, &request("/x"));
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(TYPE_HEADERS, 0, 1, &block));
        bytes.extend(frame(0x8, 0, 0, &[0, 1, 0, 0]));
        let (client, server) = tokio::net::UnixStream::pair().unwrap();
        let mut client = client;
        client.write_all(&bytes).await.unwrap();
        client.shutdown().await.unwrap();
        let mut fix = AuthorityFix::new(server);
        let mut sink = Vec::new();
        let err = fix.read_to_end(&mut sink).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
