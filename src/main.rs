//! The `shipdeck` binary: parse arguments, install color-eyre, send logs to a file under the
//! data dir (never the terminal), run a subcommand.

use clap::Parser;
use shipdeck::cli::{self, Cli};
use shipdeck::config::paths;

fn main() -> color_eyre::Result<()> {
    color_eyre::install()?;
    let cli = Cli::parse();
    init_logging(&paths::data_dir(cli.data_dir.as_deref()));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let code = runtime.block_on(cli::run(cli));
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    std::process::exit(code);
}

/// Logs go to `<data dir>/logs/shipdeck.log`; `RUST_LOG` sets the level (default `info`).
fn init_logging(data_dir: &std::path::Path) {
    let dir = paths::log_dir(data_dir);
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let Ok(file) = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("shipdeck.log")) else { return };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
}
