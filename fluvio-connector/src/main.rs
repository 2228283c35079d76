//! `fluvio-connector`: runs one built-in connector in the foreground, from a
//! config in Fluvio's connector format. The cluster starts connectors this
//! way; `fluvio connector run` does the same for development. The command
//! line is [`fluvio_connector::app::Args`].

use std::process::ExitCode;

fn main() -> ExitCode {
    fluvio_connector::app::main_with(fluvio_connector::check, |config, options| async move {
        fluvio_connector::run(&config, options).await
    })
}
