//! The `dreamvid` command line: parses the arguments ([`cli`]) and runs the command
//! ([`commands`]); errors go to standard error with exit status 1.

mod cli;
mod commands;

use clap::Parser;

use cli::{Cli, Command};

fn main() {
    dreamvid::runtime::configure();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Image(args)) => commands::image(args),
        Some(Command::Zoom(args)) => commands::zoom(args),
        Some(Command::Layers(args)) => commands::layers(args),
        Some(Command::Atlas(args)) => commands::atlas(args),
        Some(Command::Studio(args)) => commands::studio(args),
        Some(Command::Presets) => commands::presets(),
        Some(Command::Weights(args)) => commands::weights(args),
        Some(Command::Settings) => {
            print!("{}", dreamvid::settings::reference());
            Ok(())
        }
        Some(Command::Completions(args)) => commands::completions(args),
        Some(Command::Man(args)) => commands::man(args),
        Some(Command::Compare(args)) => commands::compare(args),
        Some(Command::Stability(args)) => commands::stability(args),
        Some(Command::Plan(args)) => commands::plan(args),
        Some(Command::Render(args)) => commands::render(args),
        Some(Command::Assemble(args)) => commands::assemble(args),
        Some(Command::Status(args)) => commands::status(args),
        None => commands::video(cli.video),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
