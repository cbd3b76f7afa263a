//! One module per group of verbs; `dispatch` connects and runs one.

mod container;
mod image;
mod pod;
mod run;
mod version;

use anyhow::Result;

use crate::client::{self, Clients};
use crate::{Cli, Command, ImageCommand};

async fn connect(cli: &Cli) -> Result<Clients> {
    let socket = client::resolve_socket(
        cli.socket.as_deref(),
        std::env::var("PODD_SOCKET").ok().as_deref(),
        std::env::var("CONTAINER_RUNTIME_ENDPOINT").ok().as_deref(),
    )?;
    client::connect(&socket).await
}

/// Runs the command; the result is the process exit code.
pub async fn dispatch(cli: Cli) -> Result<u8> {
    if let Command::Run { manifest } = &cli.command {
        // The manifest is checked before podd is even contacted.
        let pod = run::load(manifest)?;
        let clients = connect(&cli).await?;
        return run::run(&clients, &pod, &cli.volumes_dir).await;
    }
    if let Command::Pull { opts }
    | Command::Image {
        command: ImageCommand::Pull { opts },
    } = &cli.command
    {
        // Credentials are checked (and stdin read) before podd is contacted.
        let auth = image::pull_auth(opts)?;
        let clients = connect(&cli).await?;
        return image::pull(&clients, opts, auth).await;
    }
    let clients = connect(&cli).await?;
    match &cli.command {
        Command::Run { .. }
        | Command::Pull { .. }
        | Command::Image {
            command: ImageCommand::Pull { .. },
        } => unreachable!("handled above"),
        Command::Pods { list } => pod::pods(&clients, list).await,
        Command::Ps { all, pod, list } => container::ps(&clients, *all, pod.as_deref(), list).await,
        Command::Logs {
            follow,
            tail,
            container,
        } => container::logs(&clients, container, *follow, *tail).await,
        Command::Exec {
            timeout,
            container,
            command,
        } => container::exec(&clients, container, command, *timeout).await,
        Command::Stop {
            timeout,
            containers,
        } => container::stop(&clients, containers, *timeout).await,
        Command::Rm { force, containers } => container::rm(&clients, containers, *force).await,
        Command::Stopp { pods } => pod::stopp(&clients, pods).await,
        Command::Rmp { force, pods } => pod::rmp(&clients, pods, *force, &cli.volumes_dir).await,
        Command::Inspect { opts, container } => container::inspect(&clients, container, opts).await,
        Command::Inspectp { opts, pod } => pod::inspectp(&clients, pod, opts).await,
        Command::Images { list, filter } => image::images(&clients, list, filter.as_deref()).await,
        Command::Rmi { all, images } => image::rmi(&clients, images, *all).await,
        Command::Image {
            command: ImageCommand::Import { path, name },
        } => image::import(&clients, path, name.as_deref()).await,
        Command::Image {
            command: ImageCommand::Inspect { opts, image },
        } => image::inspect(&clients, image, opts).await,
        Command::Version => version::version(&clients).await,
    }
}

/// Runs `f` for each of `items`, reporting each failure on stderr and going
/// on; fails at the end if any did (as crictl does for multi-id verbs).
async fn each<F, Fut>(items: &[String], mut f: F) -> Result<u8>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<String>>,
{
    let mut failed = 0;
    for item in items {
        match f(item.clone()).await {
            Ok(done) => println!("{done}"),
            Err(e) => {
                eprintln!("podctl: {e:#}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} failed", items.len());
    }
    Ok(0)
}
