//! Pull-and-unpack time of podd beside `skopeo copy` + `umoci unpack` (the reference), from
//! the local registry (`hack/registry start`, 127.0.0.1:5000) in the same run. Run it through
//! `hack/bench-pull` (or `hack/bench`).
//!
//! The image: N layers (default 5), each a 20 MiB pseudo-random file (incompressible) and
//! 4 MiB of text in 64 files, made deterministically (same digests every run), gzipped: about
//! 105 MB of blobs, 120 MiB unpacked. Each run: podd with a fresh store, CRI PullImage timed
//! (podd verifies and unpacks every layer before it answers); the reference into a fresh dir,
//! `skopeo copy docker://... oci:DIR` then `umoci unpack`, timed together. The two alternate,
//! and medians are reported.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use e2e::oci::{Entry, Layer, Layout, RunConfig};
use e2e::registry::Registry;
use e2e::Podd;

const RANDOM_MIB: usize = 20;
const TEXT_FILES: usize = 64;
const TEXT_FILE_KIB: usize = 64;

fn usage() -> ! {
    eprintln!("usage: podd-pull-bench [--runs N (>= 3, default 5)] [--layers N (default 5)]");
    std::process::exit(2);
}

/// xorshift64*: fast, deterministic bytes that gzip cannot shrink.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn text_bytes(layer: usize, file: usize, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 128);
    let mut line = 0usize;
    while out.len() < len {
        out.extend_from_slice(
            format!(
                "layer {layer} file {file} line {line}: the quick brown fox jumps over {} lazy dogs\n",
                (line * 7919 + file * 104_729 + layer) % 100_003
            )
            .as_bytes(),
        );
        line += 1;
    }
    out.truncate(len);
    out
}

fn bench_layer(i: usize) -> Result<Layer> {
    let dir = format!("bench/layer-{i}");
    let mut entries = vec![
        Entry::dir("bench"),
        Entry::dir(&dir),
        Entry::file(
            &format!("{dir}/random.bin"),
            random_bytes(i as u64 + 1, RANDOM_MIB << 20),
        ),
    ];
    for f in 0..TEXT_FILES {
        entries.push(Entry::file(
            &format!("{dir}/text-{f:02}.txt"),
            text_bytes(i, f, TEXT_FILE_KIB << 10),
        ));
    }
    Layer::from_entries(&entries)
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// One reference pull: skopeo copy to an OCI layout, then umoci unpack. Returns (copy, unpack).
fn reference_pull(image: &str) -> Result<(Duration, Duration)> {
    let tmp = tempfile::Builder::new()
        .prefix("podd-pull-bench-ref-")
        .tempdir_in("/var/tmp")?;
    let layout = tmp.path().join("layout");
    let t0 = Instant::now();
    run(
        Command::new("skopeo")
            .args(["copy", "--quiet", "--src-tls-verify=false"])
            .arg(format!("docker://{image}"))
            .arg(format!("oci:{}:bench", layout.display())),
        "skopeo copy",
    )?;
    let copy = t0.elapsed();
    let t1 = Instant::now();
    run(
        Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:bench", layout.display()))
            .arg(tmp.path().join("bundle")),
        "umoci unpack",
    )?;
    Ok((copy, t1.elapsed()))
}

/// Files named `name` under `dir` (not following symlinks).
fn count_named(dir: &Path, name: &str) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            if e.file_name() == name {
                n += 1;
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    n
}

/// One podd pull with a fresh store. Returns the PullImage time.
async fn podd_pull(image: &str, layers: usize) -> Result<Duration> {
    let podd = Podd::start().await?;
    let t0 = Instant::now();
    podd.pull_ok(image).await?;
    let took = t0.elapsed();
    // The figure must include unpacking: every layer's big file is on disk when PullImage returns.
    let unpacked = count_named(podd.root_dir(), "random.bin");
    if unpacked < layers {
        bail!(
            "after PullImage, {unpacked} of {layers} layers are unpacked under {}: the figure would \
             not include unpacking",
            podd.root_dir().display()
        );
    }
    Ok(took)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let mut runs = 5usize;
    let mut layers = 5usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = || {
            args.next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| usage())
        };
        match a.as_str() {
            "--runs" => runs = num(),
            "--layers" => layers = num(),
            _ => usage(),
        }
    }
    if runs < 3 || layers == 0 {
        usage();
    }
    let reg = Registry::plain()?;

    let t0 = Instant::now();
    let mut blobs = Vec::new();
    for i in 0..layers {
        blobs.push(bench_layer(i)?);
    }
    let blob_bytes: usize = blobs.iter().map(|l| l.blob.len()).sum();
    let tmp = tempfile::Builder::new()
        .prefix("podd-pull-bench-")
        .tempdir_in("/var/tmp")?;
    let layout = Layout::write(
        &tmp.path().join("layout"),
        "latest",
        &blobs,
        &RunConfig::shell(),
    )?;
    drop(blobs);
    let pushed = reg.push(&layout, "podd-bench/pull", &format!("{layers}x"), false)?;
    drop(tmp);
    eprintln!(
        "podd-pull-bench: {} ({layers} layers, {:.1} MB of blobs, {} MiB unpacked) built and pushed in {:.1?}",
        pushed.reference,
        blob_bytes as f64 / 1e6,
        layers * (RANDOM_MIB + TEXT_FILES * TEXT_FILE_KIB / 1024),
        t0.elapsed()
    );

    // One warm-up of each, not counted: the registry's blobs into the page cache, first-use costs.
    podd_pull(&pushed.reference, layers)
        .await
        .context("podd warm-up pull")?;
    reference_pull(&pushed.reference).context("reference warm-up pull")?;

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut copies = Vec::new();
    let mut unpacks = Vec::new();
    for i in 0..runs {
        // Alternate who goes first, so neither always gets the warmer cache.
        let (p, (c, u)) = if i % 2 == 0 {
            let p = podd_pull(&pushed.reference, layers).await?;
            (p, reference_pull(&pushed.reference)?)
        } else {
            let r = reference_pull(&pushed.reference)?;
            (podd_pull(&pushed.reference, layers).await?, r)
        };
        eprintln!(
            "run {}: podd {:.2?}, skopeo copy {:.2?} + umoci unpack {:.2?} = {:.2?}",
            i + 1,
            p,
            c,
            u,
            c + u
        );
        ours.push(p);
        theirs.push(c + u);
        copies.push(c);
        unpacks.push(u);
    }

    let (p, r) = (median(&ours), median(&theirs));
    println!(
        "pull + unpack of {} ({layers} layers, {:.1} MB), fresh store each time, median of {runs}",
        pushed.reference,
        blob_bytes as f64 / 1e6
    );
    println!();
    println!("{:<34} {:>10}", "", "median s");
    println!("{:<34} {:>10.3}", "podd PullImage", p.as_secs_f64());
    println!(
        "{:<34} {:>10.3}   (copy {:.3} + unpack {:.3})",
        "skopeo copy + umoci unpack",
        r.as_secs_f64(),
        median(&copies).as_secs_f64(),
        median(&unpacks).as_secs_f64()
    );
    println!();
    println!(
        "podd / reference: {:.3}x",
        p.as_secs_f64() / r.as_secs_f64()
    );
    Ok(())
}
