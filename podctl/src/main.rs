//! podctl: the command line for podd. Runs Kubernetes `v1/Pod` manifests
//! through the CRI calls a kubelet makes, and inspects pods and containers.

mod client;
mod commands;
mod logs;
mod manifest;
mod output;
mod pull;
mod resolve;
mod run;
#[cfg(test)]
mod testing;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::output::Format;

#[derive(Parser)]
#[command(
    name = "podctl",
    version,
    about = "Run Kubernetes Pod manifests on podd and manage its pods and containers"
)]
pub struct Cli {
    /// podd's socket [default: $PODD_SOCKET, then $CONTAINER_RUNTIME_ENDPOINT, then /run/podd/podd.sock]
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<String>,

    /// Where `run` makes emptyDir volumes (one directory per pod uid)
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "PODCTL_VOLUMES_DIR",
        default_value = "/var/lib/podctl/volumes"
    )]
    pub volumes_dir: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args)]
pub struct ListOpts {
    /// Output format
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Print ids only
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args)]
pub struct InspectOpts {
    /// Output format (json or yaml)
    #[arg(short, long, value_enum, default_value_t = Format::Json)]
    pub output: Format,
}

/// `podctl pull` and `podctl image pull`.
#[derive(Args)]
pub struct PullOpts {
    /// Image reference, e.g. busybox, 127.0.0.1:5000/team/app:1 or NAME@sha256:...
    pub image: String,
    /// Registry credentials USER:PASS (other users can see command lines; prefer --password-stdin)
    #[arg(long, value_name = "USER:PASS", conflicts_with_all = ["username", "password_stdin"])]
    pub creds: Option<String>,
    /// Registry user name; the password is read from stdin
    #[arg(long, value_name = "USER", requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the registry password from stdin (with --username)
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// Print the result as json or yaml instead of a line
    #[arg(short, long, value_enum, value_name = "FORMAT")]
    pub output: Option<Format>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a pod from a Kubernetes v1 Pod manifest; prints the pod id
    Run {
        /// The manifest (YAML)
        manifest: PathBuf,
    },
    /// List pods
    Pods {
        #[command(flatten)]
        list: ListOpts,
    },
    /// List containers (running ones unless -a)
    Ps {
        /// Show all containers, not only running ones
        #[arg(short, long)]
        all: bool,
        /// Only containers of this pod (id, id prefix or name)
        #[arg(long, value_name = "POD")]
        pod: Option<String>,
        #[command(flatten)]
        list: ListOpts,
    },
    /// Print a container's logs
    Logs {
        /// Follow the log until the container exits
        #[arg(short, long)]
        follow: bool,
        /// Print only the last N lines
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
        /// Container id, id prefix, name or POD/NAME
        container: String,
    },
    /// Run a command in a running container and exit with its exit code
    Exec {
        /// Seconds before the command is killed (0: no timeout)
        #[arg(long, value_name = "SECS", default_value_t = 0)]
        timeout: i64,
        /// Container id, id prefix, name or POD/NAME
        container: String,
        /// The command and its arguments (after `--`)
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Stop containers
    Stop {
        /// Seconds to wait for a graceful stop before killing
        #[arg(short = 't', long, value_name = "SECS", default_value_t = 10)]
        timeout: i64,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove containers
    Rm {
        /// Stop running containers first
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop pods (and all their containers)
    Stopp {
        #[arg(required = true)]
        pods: Vec<String>,
    },
    /// Remove pods, their containers and podctl's emptyDir volumes
    Rmp {
        /// Stop ready pods first
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        pods: Vec<String>,
    },
    /// Show a container's status
    Inspect {
        #[command(flatten)]
        opts: InspectOpts,
        container: String,
    },
    /// Show a pod's status
    Inspectp {
        #[command(flatten)]
        opts: InspectOpts,
        pod: String,
    },
    /// List images
    Images {
        #[command(flatten)]
        list: ListOpts,
        /// Only the image this reference or id names
        #[arg(value_name = "REF")]
        filter: Option<String>,
    },
    /// Pull an image from a registry, with progress
    Pull {
        #[command(flatten)]
        opts: PullOpts,
    },
    /// Remove images (by id, id prefix, tag or digest reference); a tag only
    /// untags an image that has other tags
    Rmi {
        /// Remove every image
        #[arg(short, long, conflicts_with = "images")]
        all: bool,
        #[arg(value_name = "REF", required_unless_present = "all")]
        images: Vec<String>,
    },
    /// Manage images
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Show podd's runtime and CRI versions
    Version,
}

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Import an OCI image layout directory or OCI archive (.tar) into podd
    Import {
        /// Path of the layout or archive (on podd's host)
        path: PathBuf,
        /// Tag the imported image with this reference
        #[arg(long, value_name = "REF")]
        name: Option<String>,
    },
    /// Pull an image from a registry (as `podctl pull`)
    Pull {
        #[command(flatten)]
        opts: PullOpts,
    },
    /// Show an image's status and podd's verbose information about it
    Inspect {
        #[command(flatten)]
        opts: InspectOpts,
        /// Id, id prefix, tag or digest reference
        #[arg(value_name = "REF")]
        image: String,
    },
}

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`podctl logs x | head`), as CLIs do.
    // SAFETY: setting a signal disposition before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("podctl: start tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            for line in format!("{e:#}").lines() {
                eprintln!("podctl: {line}");
            }
            ExitCode::FAILURE
        }
    }
}
