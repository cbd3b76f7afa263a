//! Showing a pull's progress as podd streams it: one bar per blob (bytes,
//! rate, status) on a terminal, plain lines anywhere else (one per status
//! change of each blob, no carriage returns, no escape codes), so logs and
//! pipes stay readable.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use podd_proto::podd::v1::PullProgress;

/// Where a pull's progress goes.
pub enum Progress {
    Plain(Plain),
    Bars(Bars),
}

impl Progress {
    /// Progress of pulling `reference`, on stderr (stdout keeps the result):
    /// bars when stderr is a terminal, plain lines otherwise.
    pub fn stderr(reference: &str) -> Progress {
        if std::io::stderr().is_terminal() {
            let bars = Bars::new(reference, ProgressDrawTarget::stderr());
            // The spinner moves while podd resolves, before any bytes come.
            bars.header.enable_steady_tick(Duration::from_millis(120));
            Progress::Bars(bars)
        } else {
            Progress::Plain(Plain::new(reference, Box::new(std::io::stderr())))
        }
    }

    pub fn update(&mut self, msg: &PullProgress) {
        match self {
            Progress::Plain(p) => p.update(msg),
            Progress::Bars(b) => b.update(msg),
        }
    }

    /// The pull finished: bars are completed and the spinner goes.
    pub fn finish(&mut self) {
        if let Progress::Bars(b) = self {
            b.finish();
        }
    }

    /// The pull failed: blob bars stay as they were, to show how far it got.
    pub fn abandon(&mut self) {
        if let Progress::Bars(b) = self {
            b.abandon();
        }
    }
}

/// `sha256:0123456789abcdef...` -> `0123456789ab`, as docker shows layers.
fn short_digest(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    hex.get(..12).unwrap_or(hex)
}

/// The reference podd names (normalised), else the one asked for.
fn msg_reference<'a>(msg: &'a PullProgress, asked: &'a str) -> &'a str {
    if msg.reference.is_empty() {
        asked
    } else {
        &msg.reference
    }
}

/// What a blob line starts with: `layer 0123456789ab`.
fn blob_label(msg: &PullProgress) -> String {
    let kind = if msg.kind.is_empty() {
        "blob"
    } else {
        &msg.kind
    };
    format!("{kind} {}", short_digest(&msg.digest))
}

/// Plain lines: `REF: resolving` for the whole pull, then
/// `layer 0123456789ab: downloading (2.5MB)` each time a blob's status
/// changes. Byte counts within a status are not printed: a log gets a few
/// lines per blob, not thousands.
pub struct Plain {
    out: Box<dyn Write + Send>,
    reference: String,
    /// Last status printed, per digest ("" for the whole pull).
    last: HashMap<String, String>,
}

impl Plain {
    pub fn new(reference: &str, out: Box<dyn Write + Send>) -> Plain {
        Plain {
            out,
            reference: reference.to_string(),
            last: HashMap::new(),
        }
    }

    pub fn update(&mut self, msg: &PullProgress) {
        if msg.done || msg.status.is_empty() {
            return;
        }
        if self.last.get(&msg.digest) == Some(&msg.status) {
            return;
        }
        self.last.insert(msg.digest.clone(), msg.status.clone());
        let line = if msg.digest.is_empty() {
            format!("{}: {}", msg_reference(msg, &self.reference), msg.status)
        } else if msg.total > 0 {
            format!(
                "{}: {} ({})",
                blob_label(msg),
                msg.status,
                crate::output::human_size(msg.total)
            )
        } else {
            format!("{}: {}", blob_label(msg), msg.status)
        };
        // Progress is a courtesy: a closed stderr must not fail the pull.
        let _ = writeln!(self.out, "{line}");
    }
}

// `wide_bar` takes what the terminal width leaves, so a line never wraps.
const BAR_TEMPLATE: &str = "{prefix:<21} {msg:<11} [{wide_bar}] {decimal_bytes:>9}/{decimal_total_bytes:<9} {decimal_bytes_per_sec:>11}";
// A finished blob shows no rate: for one already stored it would be a jump
// from 0 to the total in no time.
const FINISHED_TEMPLATE: &str =
    "{prefix:<21} {msg:<11} [{wide_bar}] {decimal_bytes:>9}/{decimal_total_bytes:<9}";
const SIZELESS_TEMPLATE: &str = "{prefix:<21} {msg:<11} {spinner}";
const HEADER_TEMPLATE: &str = "{spinner} {msg}";

/// One bar per blob under a spinner line for the whole pull, drawn with
/// indicatif's multi-progress.
pub struct Bars {
    multi: MultiProgress,
    header: ProgressBar,
    reference: String,
    blobs: HashMap<String, ProgressBar>,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("the templates are valid")
        .progress_chars("=> ")
}

/// Fills `bar` and ends it with `status`.
fn complete(bar: &ProgressBar, status: &str) {
    if let Some(total) = bar.length().filter(|t| *t > 0) {
        bar.set_style(style(FINISHED_TEMPLATE));
        bar.set_position(total);
    }
    bar.finish_with_message(status.to_string());
}

impl Bars {
    pub fn new(reference: &str, target: ProgressDrawTarget) -> Bars {
        let multi = MultiProgress::with_draw_target(target);
        let header = multi.add(
            ProgressBar::new_spinner()
                .with_style(style(HEADER_TEMPLATE))
                .with_message(format!("{reference}: resolving")),
        );
        Bars {
            multi,
            header,
            reference: reference.to_string(),
            blobs: HashMap::new(),
        }
    }

    pub fn update(&mut self, msg: &PullProgress) {
        if msg.done || msg.status.is_empty() {
            return;
        }
        if msg.digest.is_empty() {
            self.header.set_message(format!(
                "{}: {}",
                msg_reference(msg, &self.reference),
                msg.status
            ));
            return;
        }
        let bar = self.blobs.entry(msg.digest.clone()).or_insert_with(|| {
            let bar = ProgressBar::new(msg.total).with_prefix(blob_label(msg));
            bar.set_style(style(if msg.total > 0 {
                BAR_TEMPLATE
            } else {
                SIZELESS_TEMPLATE
            }));
            self.multi.add(bar)
        });
        if bar.is_finished() {
            return;
        }
        if msg.total > 0 && bar.length() != Some(msg.total) {
            bar.set_length(msg.total);
            bar.set_style(style(BAR_TEMPLATE));
        }
        bar.set_position(msg.current);
        match msg.status.as_str() {
            "done" | "exists" => complete(bar, &msg.status),
            status => bar.set_message(status.to_string()),
        }
        let finished = self.blobs.values().filter(|b| b.is_finished()).count();
        self.header.set_message(format!(
            "{}: pulling, {finished} of {} blobs done",
            msg_reference(msg, &self.reference),
            self.blobs.len()
        ));
    }

    fn finish(&mut self) {
        for bar in self.blobs.values().filter(|b| !b.is_finished()) {
            complete(bar, "done");
        }
        self.header.finish_and_clear();
    }

    fn abandon(&mut self) {
        for bar in self.blobs.values().filter(|b| !b.is_finished()) {
            bar.abandon();
        }
        // The error printed next says what failed; a stale "resolving" above
        // it would only confuse.
        self.header.finish_and_clear();
    }

    #[cfg(test)]
    pub fn blob(&self, digest: &str) -> Option<&ProgressBar> {
        self.blobs.get(digest)
    }

    #[cfg(test)]
    pub fn header(&self) -> &ProgressBar {
        &self.header
    }
}
