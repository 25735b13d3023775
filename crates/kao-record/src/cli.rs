//! What every stage binary does the same way: refuse to spill records on a terminal, and turn
//! the outcome into an exit status (a closed pipe ends quietly).

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use crate::RecordError;

/// Fails when records would go to stdout and stdout is a terminal.
pub fn check_stdout(output: Option<&Path>) -> anyhow::Result<()> {
    let to_stdout = output.is_none_or(|p| p == Path::new("-"));
    if to_stdout && std::io::stdout().is_terminal() {
        anyhow::bail!(
            "stdout is a terminal: pipe the records into the next stage, or use --output FILE"
        );
    }
    Ok(())
}

/// The exit status for a stage's result: `Ok(code)` as is; a closed output pipe is success
/// (`kao-decode x.mp4 | head`); any other error is printed as one line `STAGE: message`, status 1.
pub fn exit(stage: &str, result: anyhow::Result<u8>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{stage}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// True when the error (or one it wraps) is a write to a closed pipe.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<RecordError>()
            .is_some_and(RecordError::is_broken_pipe)
            || c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
