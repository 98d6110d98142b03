//! `livekit-cli`: access tokens and room administration for a LiveKit-compatible server,
//! with the command and flag names of LiveKit's `lk`.
//!
//! Output goes to stdout (text, or JSON with `--json`); errors go to stderr as
//! `error: <reason>` (a Twirp error reads `error: <code>: <msg>`) and the exit status is 1.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use lkr_cli::admin::command::{Action, Cli};
use lkr_cli::admin::connection::{Credentials, ServerUrl};
use lkr_cli::admin::twirp::RoomClient;
use lkr_cli::admin::{self, Report, rooms, token};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.global.json;
    match run(cli) {
        Ok(report) => {
            print!("{}", report.render(json));
            ExitCode::SUCCESS
        }
        Err(err) => {
            print_error(&err, json);
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<Report> {
    let url = ServerUrl::parse(&cli.global.url)?;
    let creds = Credentials::from_environment(&cli.global)?;
    match cli.command.into_action() {
        Action::CreateToken(args) => Ok(token::create(&args, &creds, &url)?.report()),
        Action::Room(command) => {
            let client = RoomClient::new(&url, creds)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("could not start the async runtime")?;
            Ok(runtime.block_on(rooms::run(&client, command))?)
        }
    }
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
