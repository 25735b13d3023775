//! kao-cat: copy kao records between stdin/stdout and files, or summarise them.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use arrow_array::{Array, StringArray};
use clap::Parser;
use kao_record::{RecordReader, RecordWriter};

/// Copy kao records from a file or stdin to a file or stdout, converting between Arrow IPC
/// streams, IPC files and Parquet; or print a summary (rows, columns, provenance, sources).
#[derive(Parser, Debug)]
#[command(
    name = "kao-cat",
    version,
    after_help = "Examples:\n  kao-decode clip.mp4 | kao-cat -o frames.parquet\n  kao-cat frames.parquet --summary\n  kao-cat faces.parquet | kao-embed | …"
)]
struct Args {
    /// Records to read (.parquet, .arrow, .arrows); stdin when absent or `-`.
    input: Option<PathBuf>,
    /// Write here (.parquet, .arrow, .arrows) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Print a summary on stdout instead of copying the records.
    #[arg(long, conflicts_with = "output")]
    summary: bool,
}

fn main() -> ExitCode {
    kao_record::cli::init_logging("kao-cat");
    kao_record::cli::exit("kao-cat", run(&Args::parse()).map(|()| 0))
}

fn run(args: &Args) -> Result<()> {
    let reader = RecordReader::open(args.input.as_deref())?;
    if args.summary {
        return summarise(reader);
    }
    kao_record::cli::check_stdout(args.output.as_deref())?;
    let mut writer = RecordWriter::create(args.output.as_deref(), &reader.schema())?;
    for batch in reader {
        writer.write(&batch?)?;
    }
    writer.finish()?;
    Ok(())
}

fn summarise(reader: RecordReader) -> Result<()> {
    let schema = reader.schema();
    let provenance = reader.provenance()?;
    let name = reader.name().to_string();
    let mut rows = 0usize;
    let mut per_source: BTreeMap<String, usize> = BTreeMap::new();
    for batch in reader {
        let batch = batch?;
        rows += batch.num_rows();
        if let Some(sources) = batch
            .column_by_name("source")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        {
            for i in 0..sources.len() {
                *per_source.entry(sources.value(i).to_string()).or_default() += 1;
            }
        }
    }
    let mut out = String::new();
    writeln!(out, "{name}")?;
    writeln!(out, "rows: {rows}")?;
    writeln!(out, "columns:")?;
    for field in schema.fields() {
        writeln!(
            out,
            "  {}: {}{}",
            field.name(),
            field.data_type(),
            if field.is_nullable() {
                " (nullable)"
            } else {
                ""
            }
        )?;
    }
    writeln!(out, "provenance:")?;
    for entry in &provenance {
        let model = entry.model.as_ref().map(|m| {
            format!(
                "model {} sha256 {} ",
                m.name,
                &m.sha256[..m.sha256.len().min(12)]
            )
        });
        writeln!(
            out,
            "  {} {} {}{}",
            entry.stage,
            entry.version,
            model.unwrap_or_default(),
            entry.options
        )?;
    }
    if !per_source.is_empty() {
        writeln!(out, "sources:")?;
        for (source, n) in per_source {
            writeln!(out, "  {n}\t{source}")?;
        }
    }
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(())
}
