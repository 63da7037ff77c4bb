//! Fitting the shell: `dreamvid completions SHELL` and `dreamvid man`, both generated from the
//! command line's definitions.

use std::io::Write;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs, ManArgs};

/// Standard output, written in full; a reader that stops early (`| head`) is no error.
fn print(write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match write(&mut out).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => Ok(result?),
    }
}

/// `dreamvid completions SHELL`: the completion script on standard output.
pub fn completions(args: CompletionsArgs) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "dreamvid", &mut script);
    print(|out| out.write_all(&script))
}

/// `dreamvid man [--dir DIR]`: the manual page on standard output, or every page in `DIR`.
pub fn man(args: ManArgs) -> anyhow::Result<()> {
    match args.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), &dir)
                .with_context(|| format!("cannot write the manual pages into {}", dir.display()))?;
            eprintln!("wrote the manual pages into {}", dir.display());
            Ok(())
        }
        None => print(|out| clap_mangen::Man::new(Cli::command()).render(out)),
    }
}
