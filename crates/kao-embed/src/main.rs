//! kao-embed: face records in; the same records with dlib ResNet embeddings out.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use arrow_array::{Array, ArrayRef, BinaryArray, FixedSizeListArray, Float32Array, Int32Array, RecordBatch, UInt32Array};
use clap::Parser;
use kao_dlib::{Jitter, RgbImage, RgbView, get_face_chip};
use kao_nn::{Device, EMBEDDING_LEN, Embedder};
use kao_record::schema::{DataType, Field, ModelRef, col, fixed_f32_list, pass_through, stage_schema};
use kao_record::{Provenance, RecordReader, RecordWriter};

/// Side of the chip the ResNet reads, and dlib's padding around the 5-point template.
const CHIP_SIZE: usize = 150;
const CHIP_PADDING: f64 = 0.25;

/// Add dlib ResNet face embeddings (128 floats, `embedding`) to kao face records.
///
/// Reads face records (from kao-detect: `patch`, `landmarks` and the patch's place in the
/// frame) on stdin or from FILE, cuts dlib's 150×150 aligned chip from each native-resolution
/// patch, and writes the records with `embedding` added. Faces from many frames are batched
/// through the network; the output keeps the input's rows in order.
#[derive(Parser, Debug)]
#[command(name = "kao-embed", version, after_help = "Example: kao-decode talk.mp4 --fps 5 | kao-detect | kao-embed | kao-match --ref refs/")]
struct Args {
    /// Face records to read (.arrows, .arrow, .parquet); stdin when absent or `-`.
    input: Option<PathBuf>,
    /// Write the records here (.parquet, .arrow, .arrows) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Average the embeddings of N jittered copies of each chip, like dlib's num_jitters
    /// (slower by N×; worth it for reference photos). 0 or 1: the plain chip.
    #[arg(long, value_name = "N", default_value_t = 1)]
    jitters: u32,
    /// Seed of the jitter generator (same seed, same embeddings).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Faces per network batch.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    batch: u32,
    /// Where the network runs: cpu, or cuda / cuda:N in a build with `--features cuda`.
    #[arg(long, default_value = "cpu")]
    device: Device,
}


fn main() -> ExitCode {
    kao_record::cli::exit("kao-embed", run(&Args::parse()).map(|()| 0))
}


/// A batch of input rows with the chips (one per row, or `jitters` per row) to embed.
struct Work {
    batch: RecordBatch,
    chips: Vec<RgbImage>,
}

fn run(args: &Args) -> Result<()> {
    kao_record::cli::check_stdout(args.output.as_deref())?;
    let device = args.device;
    let model = kao_models::locate("dlib-resnet")?;
    let embedder = Embedder::load(&model.path, device).with_context(|| format!("loading {}", model.path.display()))?;
    let reader = RecordReader::open(args.input.as_deref())?;
    reader.require(
        "kao-embed",
        &[
            (col::PATCH, DataType::Binary),
            (col::PATCH_X, DataType::Int32),
            (col::PATCH_Y, DataType::Int32),
            (col::PATCH_W, DataType::UInt32),
            (col::PATCH_H, DataType::UInt32),
            (col::LANDMARKS, fixed_f32_list(10)),
        ],
    )?;
    let copies = args.jitters.max(1) as usize;
    let mut entry = Provenance::new(
        "kao-embed",
        env!("CARGO_PKG_VERSION"),
        serde_json::json!({ "jitters": copies, "seed": args.seed, "batch": args.batch, "chip_size": CHIP_SIZE, "chip_padding": CHIP_PADDING }),
    );
    entry.model = Some(ModelRef { name: model.spec.name.into(), sha256: model.spec.sha256.into() });
    let embedding = Field::new(col::EMBEDDING, fixed_f32_list(EMBEDDING_LEN as i32), false);
    let schema = stage_schema(&reader.schema(), &[], vec![embedding], &entry).map_err(|e| anyhow!("{}: {e}", reader.name()))?;
    let mut writer = RecordWriter::create(args.output.as_deref(), &schema)?;

    // Reading and chip cutting run on their own thread while the network works on the last batch.
    let (tx, rx) = crossbeam_channel::bounded::<Result<Work>>(2);
    let batch_rows = args.batch as usize;
    let seed = args.seed;
    std::thread::scope(|scope| -> Result<()> {
        scope.spawn(move || {
            let mut cutter = ChipCutter { name: reader.name().to_string(), copies, seed, row: 0 };
            let mut pending: Vec<RecordBatch> = Vec::new();
            let mut pending_rows = 0;
            let schema = reader.schema();
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
                    let work = cutter.cut(&schema, std::mem::take(&mut pending));
                    pending_rows = 0;
                    if tx.send(work).is_err() {
                        return;
                    }
                }
            }
            if !pending.is_empty() {
                let _ = tx.send(cutter.cut(&schema, pending));
            }
        });
        for work in rx {
            let work = work?;
            let views: Vec<RgbView<'_>> = work.chips.iter().map(RgbImage::view).collect();
            let vectors = embedder.embed(&views)?;
            let mut values = Vec::with_capacity(work.batch.num_rows() * EMBEDDING_LEN);
            for group in vectors.chunks(copies) {
                for k in 0..EMBEDDING_LEN {
                    values.push(group.iter().map(|v| v[k]).sum::<f32>() / group.len() as f32);
                }
            }
            let item = Arc::new(Field::new("item", DataType::Float32, false));
            let column: ArrayRef = Arc::new(FixedSizeListArray::try_new(
                item,
                EMBEDDING_LEN as i32,
                Arc::new(Float32Array::from(values)),
                None,
            )?);
            writer.write(&pass_through(&work.batch, &schema, vec![column])?)?;
        }
        Ok(())
    })?;
    writer.finish()?;
    Ok(())
}

/// Cuts the aligned chips of face rows from their patches.
struct ChipCutter {
    name: String,
    copies: usize,
    seed: u64,
    /// Index of the next input row, for messages and per-face jitter seeds.
    row: u64,
}

impl ChipCutter {
    fn cut(&mut self, schema: &kao_record::schema::SchemaRef, batches: Vec<RecordBatch>) -> Result<Work> {
        let batch = arrow_select::concat::concat_batches(schema, &batches)?;
        let patch = typed::<BinaryArray>(&batch, col::PATCH)?;
        let px = typed::<Int32Array>(&batch, col::PATCH_X)?;
        let py = typed::<Int32Array>(&batch, col::PATCH_Y)?;
        let pw = typed::<UInt32Array>(&batch, col::PATCH_W)?;
        let ph = typed::<UInt32Array>(&batch, col::PATCH_H)?;
        let landmarks = typed::<FixedSizeListArray>(&batch, col::LANDMARKS)?;
        let mut chips = Vec::with_capacity(batch.num_rows() * self.copies);
        for i in 0..batch.num_rows() {
            let row = self.row + i as u64;
            let bytes = patch.value(i);
            let (w, h) = (pw.value(i) as usize, ph.value(i) as usize);
            let view = RgbView::new(w, h, bytes).ok_or_else(|| {
                anyhow!("{}: row {row}: patch has {} bytes, expected {w}×{h}×3", self.name, bytes.len())
            })?;
            let offset = (px.value(i) as f32, py.value(i) as f32);
            let row_marks = landmarks.value(i);
            let points = row_marks
                .as_any()
                .downcast_ref::<Float32Array>()
                .ok_or_else(|| anyhow!("{}: landmarks are not float32", self.name))?;
            let marks: Vec<(f32, f32)> =
                (0..5).map(|k| (points.value(2 * k) - offset.0, points.value(2 * k + 1) - offset.1)).collect();
            let chip = get_face_chip(&view, &marks, CHIP_SIZE, CHIP_PADDING)
                .map_err(|e| anyhow!("{}: row {row}: {e}", self.name))?;
            if self.copies == 1 {
                chips.push(chip);
            } else {
                let mut jitter = Jitter::new(self.seed ^ row.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                for _ in 0..self.copies {
                    chips.push(jitter.jitter(&chip.view()).expect("a 150×150 chip is square"));
                }
            }
        }
        self.row += batch.num_rows() as u64;
        Ok(Work { batch, chips })
    }
}

/// Column `name` of `batch` as array type `A` (the schema was checked on open).
fn typed<'a, A: Array + 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a A> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<A>())
        .ok_or_else(|| anyhow!("column `{name}` is missing or has the wrong type"))
}
