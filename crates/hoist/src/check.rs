//! `hoistd check`: verifies a data root offline and prints what is wrong. The verification is
//! the store's; this only chooses the data root, prints the report and picks the exit status.

use std::process::ExitCode;

use hoist_store::{Store, StoreError};

use crate::cli::Cli;
use crate::config::Settings;

/// Problems were found.
const PROBLEMS: u8 = 1;
/// The check could not run: bad flags or configuration, the data root in use or unreadable.
const CANNOT_CHECK: u8 = 2;

pub fn run(cli: Cli) -> ExitCode {
    let settings = match Settings::load(cli) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("hoistd check: {e:#}");
            return ExitCode::from(CANNOT_CHECK);
        }
    };
    let root = &settings.engine.data_root;
    let report = match Store::verify(root) {
        Ok(report) => report,
        Err(e @ StoreError::Locked { .. }) => {
            eprintln!("hoistd check: {e}: stop the daemon before checking its data root");
            return ExitCode::from(CANNOT_CHECK);
        }
        Err(e) => {
            eprintln!("hoistd check: cannot check {}: {e}", root.display());
            return ExitCode::from(CANNOT_CHECK);
        }
    };
    for problem in &report.problems {
        println!("{problem}");
    }
    let verdict = match report.problems.len() {
        0 => "no problems".to_owned(),
        1 => "1 problem".to_owned(),
        n => format!("{n} problems"),
    };
    println!(
        "checked {} blobs ({} bytes) and {} images in {}: {verdict}",
        report.blobs,
        report.bytes,
        report.images,
        root.display()
    );
    if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(PROBLEMS)
    }
}
