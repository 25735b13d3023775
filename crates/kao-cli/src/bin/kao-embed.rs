//! kao-embed: face records in; the same records with dlib ResNet embeddings out.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use arrow_array::RecordBatch;
use clap::Parser;
use kao_networks::Device;
use kao_pipeline::cli::{EmbedArgs, EmbedderArgs};
use kao_pipeline::embed::{Chips, EmbedStage, FaceEmbedder};
use kao_record::{RecordReader, RecordWriter};

/// Add face embeddings (`embedding`) and quality measures to kao face records.
///
/// Reads face records (from kao-detect: `patch`, `landmarks` and the patch's place in the
/// frame) on stdin or from FILE, cuts the embedder's aligned chip from each native-resolution
/// patch (dlib's ResNet: 150×150, 128 floats), and writes the records with `embedding` added;
/// its field metadata names the model, dimension and metric. Faces from many frames are batched
/// through the network; the output keeps the input's rows in order.
#[derive(Parser, Debug)]
#[command(
    name = "kao-embed",
    version,
    after_help = "Example: kao-decode talk.mp4 --fps 5 | kao-detect | kao-embed | kao-track | kao-match --ref refs/"
)]
struct Args {
    /// Face records to read (.arrows, .arrow, .parquet); stdin when absent or `-`.
    input: Option<PathBuf>,
    /// Write the records here (.parquet, .arrow, .arrows) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    embed: EmbedArgs,
    #[command(flatten)]
    embedder: EmbedderArgs,
    /// Where the network runs: cpu, or cuda / cuda:N in a build with `--features cuda`.
    #[arg(long, default_value = "cpu")]
    device: Device,
}

fn main() -> ExitCode {
    kao_record::cli::init_logging("kao-embed");
    kao_pipeline::memory::tune_malloc();
    kao_record::cli::exit("kao-embed", run(&Args::parse()).map(|()| 0))
}

fn run(args: &Args) -> Result<()> {
    kao_record::cli::check_stdout(args.output.as_deref())?;
    let embedder = FaceEmbedder::load(&args.embed.options(args.embedder.spec()?, args.device))?;
    let reader = RecordReader::open(args.input.as_deref())?;
    let stage = EmbedStage::new(embedder, &reader.schema(), reader.name())?;
    let mut writer = RecordWriter::create(args.output.as_deref(), stage.schema())?;

    // Reading and chip cutting run on their own thread while the network works on the last batch.
    let (tx, rx) = crossbeam_channel::bounded::<Result<Chips>>(2);
    let batch_rows = args.embed.batch as usize;
    let input = reader.schema();
    std::thread::scope(|scope| -> Result<()> {
        let stage = &stage;
        scope.spawn(move || {
            let mut pending: Vec<RecordBatch> = Vec::new();
            let mut pending_rows = 0;
            let mut row = 0u64;
            let cut = |pending: Vec<RecordBatch>, rows: usize, row: &mut u64| {
                let chips = arrow_select::concat::concat_batches(&input, &pending)
                    .map_err(anyhow::Error::from)
                    .and_then(|batch| stage.cut(batch, *row));
                *row += rows as u64;
                chips
            };
            for batch in reader {
                let batch = match batch {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = tx.send(Err(e.into()));
                        return;
                    }
                };
                pending_rows += batch.num_rows();
                pending.push(batch);
                if pending_rows >= batch_rows {
                    let chips = cut(std::mem::take(&mut pending), pending_rows, &mut row);
                    pending_rows = 0;
                    if tx.send(chips).is_err() {
                        return;
                    }
                }
            }
            if !pending.is_empty() {
                let _ = tx.send(cut(pending, pending_rows, &mut row));
            }
        });
        for chips in rx {
            writer.write(&stage.embed(chips?)?)?;
        }
        Ok(())
    })?;
    writer.finish()?;
    Ok(())
}
