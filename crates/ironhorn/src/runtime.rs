//! Running a server subcommand: a tokio runtime, and a shutdown token cancelled on SIGINT or
//! SIGTERM.

use std::future::Future;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

pub fn run_until_signal<F, Fut>(body: F) -> Result<()>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let shutdown = CancellationToken::new();
    let result = runtime.block_on(async {
        let on_signal = shutdown.clone();
        tokio::spawn(async move {
            let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            on_signal.cancel();
        });
        body(shutdown).await
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    result
}
