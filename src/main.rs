//! The `tocsin` binary: parse the command line, run one command, map its outcome to an exit
//! code (0 ok, 1 a check or test failed, 2 usage or I/O error). The commands are in `cli/`; the
//! daemon itself is the library's `daemon` module. `anyhow` lives at this edge only.

mod cli;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use cli::{Cli, Command, Outcome};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::CheckFailed) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<Outcome> {
    match cli.command {
        Command::Run {
            config,
            dry_run,
            allow_open_writes,
        } => {
            cli::run::tune_malloc();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_stack_size(tocsin::daemon::THREAD_STACK_BYTES)
                .build()
                .context("cannot start the async runtime")?;
            rt.block_on(cli::run::daemon(
                config,
                cli.log_format,
                dry_run,
                allow_open_writes,
            ))?;
            Ok(Outcome::Ok)
        }
        Command::Check { paths } => cli::check::check(paths),
        Command::Import { file } => cli::import::import(&file),
        Command::Silence {
            action,
            url,
            config,
        } => cli::silence::silence(action, url, config),
        Command::Test {
            files,
            run,
            junit,
            promql_compat,
            watch,
        } => cli::test::test(&files, run.as_deref(), junit, promql_compat, watch),
        Command::Scrape {
            url,
            timeout,
            body_limit,
            fields,
        } => cli::scrape::scrape(&url, timeout, body_limit, &fields),
        Command::Probe(args) => cli::probe::probe(args),
        Command::RouteTest {
            labels,
            config,
            verify_receivers,
        } => cli::route_test::route_test(&labels, config, verify_receivers.as_deref()),
        Command::Query(args) => cli::query::query(args),
        Command::ConfigReference => cli::config_reference(),
        Command::Schema {
            kind_flag,
            kind,
            out_dir,
        } => cli::schema::schema(kind.or(kind_flag), out_dir.as_deref()),
        Command::Replay(args) => cli::replay::replay(args),
    }
}
