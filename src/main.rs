//! The `rowguard` binary: the runtime, logging and allocator set up, then the command line
//! (`cli/`), whose default command is `serve`.

mod cli;

use std::io::IsTerminal;

use clap::Parser;
use rowguard::config::Config;
use rowguard::startup::{self, DatabaseSetup};

fn main() -> std::process::ExitCode {
    limit_allocator_retention();
    let cli = cli::Cli::parse();
    let log_guard = init_logging(&cli.config);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.config.worker_threads.filter(|n| *n > 0) {
        runtime.worker_threads(n);
    }
    let runtime = match runtime.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // The database is located on this (the main) thread: an embedded server is tied to the
    // thread that started it, and this one lives as long as the process.
    let command = cli.command.unwrap_or(cli::Command::Serve);
    // An auditor's proof check needs no database: none is located, started or created for it.
    if let Some(outcome) = cli::run_without_database(&command) {
        drop(log_guard);
        return match outcome {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let result = DatabaseSetup::locate(&cli.config).and_then(|mut setup| {
        let result = runtime.block_on(cli::run(command, &cli.config, &mut setup));
        if let Some(cluster) = setup.cluster.as_mut() {
            cluster.stop();
        }
        result
    });
    // Queued log lines first, then the outcome.
    drop(log_guard);
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// argon2id allocates 19 MiB per hash on whichever blocking thread runs it. glibc raises its
/// mmap threshold after such a block is freed and then keeps later ones in per-thread arenas,
/// so RSS grew to hundreds of MiB under a login flood. A fixed threshold sends every large
/// block straight back to the kernel when it is freed.
fn limit_allocator_retention() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator tuning; called before any other thread exists.
    unsafe {
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// The global logger, writing through the batching writer (`log_writer`); the guard writes
/// what is pending when it is dropped, so `main` holds it to the end. Without a thread for
/// it, lines go to stderr directly.
fn init_logging(config: &Config) -> Option<rowguard::log_writer::FlushGuard> {
    let ansi = std::io::stderr().is_terminal();
    let (subscriber, guard) = match rowguard::log_writer::BatchedStderr::start() {
        Ok((writer, guard)) => (startup::log_subscriber(&config.log, &config.log_format, writer, ansi), Some(guard)),
        Err(_) => (startup::log_subscriber(&config.log, &config.log_format, std::io::stderr, ansi), None),
    };
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        eprintln!("rowguard: a logger was already installed");
    }
    guard
}
