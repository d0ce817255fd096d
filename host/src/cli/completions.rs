//! `weir completions bash|zsh|fish`: the shell's completion script for every command and
//! flag, generated from the same definition that parses them, so it never drifts.

use std::process::ExitCode;

use clap::CommandFactory as _;

use super::{Cli, SetupError, setup};

/// The shells weir writes completions for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    /// Bash: `weir completions bash > ~/.local/share/bash-completion/completions/weir`.
    Bash,
    /// Zsh: `weir completions zsh > "${fpath[1]}/_weir"`.
    Zsh,
    /// Fish: `weir completions fish > ~/.config/fish/completions/weir.fish`.
    Fish,
}

/// The completion script for `shell`.
pub fn script(shell: Shell) -> Vec<u8> {
    let mut command = Cli::command();
    let mut out = Vec::new();
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(generator, &mut command, "weir", &mut out);
    out
}

/// Prints the completion script for `shell` on stdout.
pub(super) fn completions(shell: Shell) -> Result<ExitCode, SetupError> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    // A reader that closed stdout (`| head`) asked for no more.
    match out.write_all(&script(shell)).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        other => setup(other.map_err(|e| anyhow::anyhow!("cannot write the completions: {e}")))
            .map(|()| ExitCode::SUCCESS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_shells_script_names_every_subcommand() {
        let subcommands: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_owned())
            .collect();
        assert!(subcommands.len() >= 10, "{subcommands:?}");
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let text = String::from_utf8(script(shell)).expect("UTF-8");
            assert!(!text.is_empty(), "{shell:?}");
            for name in &subcommands {
                assert!(text.contains(name.as_str()), "{shell:?} lacks {name}");
            }
            assert!(text.contains("--manifest"), "{shell:?} lacks the flags");
        }
    }
}
