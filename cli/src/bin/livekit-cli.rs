//! `livekit-cli`: access tokens, room administration, joining rooms with media, and load
//! tests for a LiveKit-compatible server, with the command and flag names of LiveKit's `lk`.
//!
//! Output goes to stdout (text, or JSON with `--json`); errors go to stderr as
//! `error: <reason>` (a Twirp error reads `error: <code>: <msg>`) and the exit status is 1.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use lkr_cli::admin::command::{Action, Cli, JoinForm};
use lkr_cli::admin::connection::{Credentials, ServerUrl};
use lkr_cli::admin::twirp::RoomClient;
use lkr_cli::admin::{self, Report, rooms, token};
use lkr_cli::media::{janus, join, loadtest, relay, relay_load};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.global.json;
    match run(cli) {
        Ok(Some(report)) => {
            print!("{}", report.render(json));
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(err) => {
            print_error(&err, json);
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<Option<Report>> {
    let url = ServerUrl::parse(&cli.global.url)?;
    let global = cli.global;
    let creds = || Credentials::from_environment(&global);
    match cli.command.into_action() {
        Action::CreateToken(args) => Ok(Some(token::create(&args, &creds()?, &url)?.report())),
        Action::Room(command) => {
            let client = RoomClient::new(&url, creds()?)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("could not start the async runtime")?;
            Ok(Some(runtime.block_on(rooms::run(&client, command))?))
        }
        Action::Join(form) => {
            let plan = match form {
                JoinForm::Room(args) => {
                    join::JoinPlan::for_room(args, &creds()?, &url, global.json)?
                }
                JoinForm::Legacy(args) => join::JoinPlan::for_token(args, &url, global.json),
            };
            media_runtime()?.block_on(join::run(plan))?;
            Ok(None)
        }
        Action::LoadTest(args) => {
            let creds = creds()?;
            let report = load_test_runtime()?.block_on(loadtest::run(&url, &creds, &args))?;
            Ok(Some(report))
        }
        Action::JanusLoadTest(args) => {
            let report = load_test_runtime()?.block_on(janus::run(&args))?;
            Ok(Some(report))
        }
        // One thread: the relay's socket loop and its signal handlers.
        Action::UdpRelay(args) => Ok(Some(load_test_runtime()?.block_on(relay::run(&args))?)),
        Action::RelayLoadTest(args) => {
            let report = load_test_runtime()?.block_on(relay_load::run(&args))?;
            Ok(Some(report))
        }
    }
}

/// The participants of a load test run on its own worker threads; this runtime only paces
/// the joins and gathers the results.
fn load_test_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")
}

fn media_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")
}

fn print_error(err: &anyhow::Error, json: bool) {
    if !json {
        eprintln!("error: {err:#}");
        return;
    }
    let mut value = serde_json::json!({ "error": format!("{err:#}") });
    if let Some(admin::Error::Server { status, code, msg }) = err.downcast_ref::<admin::Error>() {
        value["code"] = code.as_str().into();
        value["msg"] = msg.as_str().into();
        value["status"] = (*status).into();
    }
    eprintln!("{value}");
}
