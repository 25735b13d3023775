//! What every stage binary does the same way: log warnings to stderr, refuse to spill records
//! on a terminal, and turn the outcome into an exit status (a closed pipe ends quietly).

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use crate::RecordError;

/// Sends the libraries' log events to stderr as `STAGE: warning: message` lines: warnings and
/// errors by default; `KAO_LOG` takes `tracing` filter directives (`KAO_LOG=debug`,
/// `KAO_LOG=kao_pipeline=debug`) for more. ONNX Runtime's own log stays at errors unless asked.
pub fn init_logging(stage: &'static str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("KAO_LOG").unwrap_or_else(|_| EnvFilter::new("warn,ort=error"));
    // A reader's panic on malformed bytes becomes a one-line error (io::guarded): keep the
    // default hook's report for every other panic only.
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !crate::io::panic_is_expected() {
                default(info)
            }
        }));
    });
    // A second call (a test) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .event_format(StageLine(stage))
        .try_init();
}

/// One log line: `STAGE: level: message key=value…`.
struct StageLine(&'static str);

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for StageLine
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            tracing::Level::INFO => "info",
            tracing::Level::DEBUG => "debug",
            tracing::Level::TRACE => "trace",
        };
        write!(writer, "{}: {level}: ", self.0)?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

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
            eprintln!("{stage}: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes as one line: `context: cause: cause`, leaving out a cause whose
/// text the line already holds (an error that shows its source in its own message), and
/// joining any multi-line message.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("model: {0}")]
    struct Shows(#[from] std::io::Error);

    #[test]
    fn causes_shown_by_their_parent_are_not_repeated() {
        let inner = std::io::Error::other("bad\nbytes");
        let e = anyhow::Error::from(Shows(inner)).context("net.dat");
        assert_eq!(one_line(&e), "net.dat: model: bad bytes");
    }
}
