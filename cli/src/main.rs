//! `respool`: runs commands in parallel, learning what each kind of command
//! needs, and never runs the machine out of memory.

use clap::Parser;

use respool_cli::args::{Cli, Command};
use respool_cli::schedule::USAGE;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors.
            let status = if e.use_stderr() { USAGE } else { 0 };
            let _ = e.print();
            std::process::exit(status);
        }
    };
    let status = match cli.command {
        Command::Run(args) => respool_cli::schedule::run(args),
        Command::Profiles(args) => respool_cli::profiles::run(args),
        Command::Demo(args) => respool_cli::demo::run(args),
    };
    std::process::exit(status);
}
