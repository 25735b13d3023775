//! Reading and writing records: IPC streams on pipes, Parquet or IPC on disk.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_ipc::reader::{FileReader, StreamReader};
use arrow_ipc::writer::{FileWriter, StreamWriter};
use arrow_schema::{ArrowError, DataType, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tempfile::NamedTempFile;

use crate::RecordError;
use crate::schema::{self, Provenance, col};

/// A Parquet writer flushes a row group once this many bytes are buffered, so frames with
/// pixels never pile up in memory.
const PARQUET_ROW_GROUP_BYTES: usize = 64 << 20;

/// On-disk and on-pipe record formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Arrow IPC stream (pipes, `.arrows`).
    IpcStream,
    /// Arrow IPC file (`.arrow`).
    IpcFile,
    /// Parquet (`.parquet`).
    Parquet,
}

impl Format {
    /// The format a path asks for when writing: `.parquet` → Parquet, `.arrow` → IPC file,
    /// anything else → IPC stream.
    pub fn for_path(path: &Path) -> Format {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("parquet") | Some("pq") => Format::Parquet,
            Some("arrow") | Some("feather") => Format::IpcFile,
            _ => Format::IpcStream,
        }
    }

    /// The format of data starting with `head`, by magic bytes.
    fn sniff(head: &[u8]) -> Format {
        if head.starts_with(b"PAR1") {
            Format::Parquet
        } else if head.starts_with(b"ARROW1") {
            Format::IpcFile
        } else {
            Format::IpcStream
        }
    }
}

type Batches = Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>;

/// The end-of-stream marker of an Arrow IPC stream: a continuation and a zero length.
const END_OF_STREAM: [u8; 8] = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];

/// A reader that remembers the last bytes it read, to tell a finished stream from a cut one.
struct TailReader<R> {
    inner: R,
    tail: [u8; 8],
}

impl<R: Read> TailReader<R> {
    fn new(inner: R) -> Self {
        TailReader {
            inner,
            tail: [0; 8],
        }
    }

    /// True when the bytes read so far end with [`END_OF_STREAM`].
    fn ended(&self) -> bool {
        self.tail == END_OF_STREAM
    }
}

impl<R: Read> Read for TailReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n >= 8 {
            self.tail.copy_from_slice(&buf[n - 8..n]);
        } else if n > 0 {
            self.tail.copy_within(n.., 0);
            self.tail[8 - n..].copy_from_slice(&buf[..n]);
        }
        Ok(n)
    }
}

/// A stream that ended without its end marker (turned into [`RecordError::Cut`]).
#[derive(Debug, thiserror::Error)]
#[error("the record stream ends without its end marker")]
struct StreamCut;

/// An IPC stream's batches, then an error if the stream ended without its end marker: the
/// stage writing it died mid-stream, and what came through is not the whole result. Arrow
/// accepts such a stream as complete; kao does not.
struct Terminated<R: Read> {
    reader: StreamReader<TailReader<R>>,
    checked: bool,
}

impl<R: Read> Iterator for Terminated<R> {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.reader.next() {
            None if !self.checked => {
                self.checked = true;
                (!self.reader.get_ref().ended())
                    .then(|| Err(ArrowError::ExternalError(Box::new(StreamCut))))
            }
            other => other,
        }
    }
}

/// Reads records from stdin or a file, whatever the format (found by magic bytes).
pub struct RecordReader {
    name: String,
    schema: SchemaRef,
    batches: Batches,
}

impl RecordReader {
    /// Opens `path`, or stdin when `path` is `None` or `-`.
    pub fn open(path: Option<&Path>) -> Result<Self, RecordError> {
        match path {
            None => Self::from_stdin(),
            Some(p) if p == Path::new("-") => Self::from_stdin(),
            Some(p) => Self::from_file(p),
        }
    }

    fn from_stdin() -> Result<Self, RecordError> {
        let name = "stdin";
        let mut input = BufReader::with_capacity(1 << 20, std::io::stdin());
        let head = input.fill_buf().map_err(|e| RecordError::io(name, e))?;
        if head.is_empty() {
            return Err(RecordError::Empty {
                name: name.into(),
                what: "input",
            });
        }
        match Format::sniff(head) {
            Format::IpcStream => Self::from_stream(name, input),
            // Parquet and IPC files need seeking: spool them to a temporary file first.
            format => {
                let mut spool = tempfile::tempfile().map_err(|e| RecordError::io(name, e))?;
                std::io::copy(&mut input, &mut spool).map_err(|e| RecordError::io(name, e))?;
                spool
                    .seek(SeekFrom::Start(0))
                    .map_err(|e| RecordError::io(name, e))?;
                Self::from_seekable(name, spool, format)
            }
        }
    }

    fn from_file(path: &Path) -> Result<Self, RecordError> {
        let name = path.display().to_string();
        let mut file = File::open(path).map_err(|e| RecordError::io(&name, e))?;
        let mut head = [0u8; 6];
        let n = read_up_to(&mut file, &mut head).map_err(|e| RecordError::io(&name, e))?;
        if n == 0 {
            return Err(RecordError::Empty { name, what: "file" });
        }
        file.seek(SeekFrom::Start(0))
            .map_err(|e| RecordError::io(&name, e))?;
        match Format::sniff(&head[..n]) {
            Format::IpcStream => Self::from_stream(&name, BufReader::with_capacity(1 << 20, file)),
            format => Self::from_seekable(&name, file, format),
        }
    }

    /// Reads an Arrow IPC stream from any reader, naming it `name` in errors.
    pub fn from_stream(name: &str, input: impl Read + Send + 'static) -> Result<Self, RecordError> {
        let reader = guarded(name, || StreamReader::try_new(TailReader::new(input), None))?
            .map_err(|e| RecordError::arrow(name, e))?;
        let schema = reader.schema();
        Ok(Self::new(
            name,
            schema,
            Box::new(Terminated {
                reader,
                checked: false,
            }),
        ))
    }

    fn from_seekable(name: &str, file: File, format: Format) -> Result<Self, RecordError> {
        match format {
            Format::IpcFile => {
                let mut file = file;
                check_blocks(name, &mut file)?;
                let reader = guarded(name, || FileReader::try_new_buffered(file, None))?
                    .map_err(|e| RecordError::arrow(name, e))?;
                Ok(Self::new(name, reader.schema(), Box::new(reader)))
            }
            _ => {
                let builder = ParquetRecordBatchReaderBuilder::try_new(file)
                    .map_err(|e| RecordError::parquet(name, e))?;
                let schema = builder.schema().clone();
                // Rows with whole frames are megabytes each: read those one at a time.
                let batch_size = if schema.field_with_name(col::PIXELS).is_ok() {
                    1
                } else {
                    256
                };
                let reader = builder
                    .with_batch_size(batch_size)
                    .build()
                    .map_err(|e| RecordError::parquet(name, e))?;
                Ok(Self::new(name, schema, Box::new(reader)))
            }
        }
    }

    fn new(name: &str, schema: SchemaRef, batches: Batches) -> Self {
        RecordReader {
            name: name.to_string(),
            schema,
            batches,
        }
    }

    /// The input's name for messages (`stdin` or the path).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The records' schema, metadata included.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The provenance entries of the input, oldest first.
    pub fn provenance(&self) -> Result<Vec<Provenance>, RecordError> {
        schema::provenance(&self.schema).map_err(|e| e.at(&self.name))
    }

    /// Fails with a one-line error unless every column in `needs` is present with its type.
    pub fn require(&self, stage: &str, needs: &[(&str, DataType)]) -> Result<(), RecordError> {
        schema::require(&self.schema, &self.name, stage, needs)
    }
}

thread_local! {
    /// Set while [`guarded`] runs a reader that may panic on malformed bytes.
    static PANIC_EXPECTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// True while this thread runs a reader under [`guarded`]: a panic hook stays silent then
/// (the panic becomes an error message instead; `cli::init_logging` installs such a hook).
pub fn panic_is_expected() -> bool {
    PANIC_EXPECTED.with(std::cell::Cell::get)
}

/// Refuses an IPC file whose footer places a record batch or dictionary past the file's data:
/// arrow's reader would set aside the declared length (gigabytes, from a few damaged bytes)
/// before finding out. A footer that does not parse is left for arrow to report.
fn check_blocks(name: &str, file: &mut File) -> Result<(), RecordError> {
    let io = |e| RecordError::io(name, e);
    let len = file.metadata().map_err(io)?.len();
    let mut trailer = [0u8; 10];
    if len < 10 || file.seek(SeekFrom::End(-10)).is_err() || file.read_exact(&mut trailer).is_err()
    {
        return file.rewind().map_err(io);
    }
    let footer_len = u64::from(u32::from_le_bytes(
        trailer[..4].try_into().expect("4 bytes"),
    ));
    let Some(data_end) = len.checked_sub(10 + footer_len) else {
        return file.rewind().map_err(io);
    };
    let mut footer = vec![0u8; footer_len as usize];
    file.seek(SeekFrom::Start(data_end)).map_err(io)?;
    file.read_exact(&mut footer).map_err(io)?;
    file.rewind().map_err(io)?;
    let Ok(footer) = arrow_ipc::root_as_footer(&footer) else {
        return Ok(());
    };
    let blocks = footer.recordBatches().into_iter().flatten();
    let dictionaries = footer.dictionaries().into_iter().flatten();
    for block in blocks.chain(dictionaries) {
        let end = [block.metaDataLength().into(), block.bodyLength()]
            .into_iter()
            .try_fold(block.offset(), i64::checked_add);
        if !end.is_some_and(|end| (0..=data_end as i64).contains(&end) && block.offset() >= 0) {
            return Err(RecordError::arrow(
                name,
                ArrowError::ParseError(format!(
                    "a record batch at byte {} runs past the end of the file's data ({data_end} \
                     bytes): the file is damaged",
                    block.offset()
                )),
            ));
        }
    }
    Ok(())
}

/// Runs `f`, turning a panic into an error: arrow-ipc 60 panics on a buffer length past its
/// message body (found by the records fuzz targets; fuzz/regressions/records_ipc) instead of
/// returning an error, and malformed input must end a stage with one line, not a panic.
fn guarded<T>(name: &str, f: impl FnOnce() -> T) -> Result<T, RecordError> {
    PANIC_EXPECTED.with(|p| p.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    PANIC_EXPECTED.with(|p| p.set(false));
    result.map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the reader failed".into());
        RecordError::Arrow {
            name: name.to_string(),
            error: ArrowError::IpcError(format!("malformed record batch ({message})")),
        }
    })
}

impl Iterator for RecordReader {
    type Item = Result<RecordBatch, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        let name = &self.name;
        let next = match guarded(name, || self.batches.next()) {
            Ok(next) => next,
            Err(e) => {
                // A reader that panicked is not asked again.
                self.batches = Box::new(std::iter::empty());
                return Some(Err(e));
            }
        };
        next.map(|r| {
            r.map_err(|e| match e {
                ArrowError::ExternalError(inner) if inner.is::<StreamCut>() => {
                    RecordError::Cut { name: name.clone() }
                }
                e => RecordError::arrow(name, e),
            })
        })
    }
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

enum Sink {
    /// stdout, a device or a fifo: an IPC stream written in place, flushed per batch.
    Pipe(StreamWriter<BufWriter<Box<dyn Write + Send>>>),
    Stream(StreamWriter<BufWriter<NamedTempFile>>, PathBuf),
    File(FileWriter<BufWriter<NamedTempFile>>, PathBuf),
    Parquet(ArrowWriter<NamedTempFile>, PathBuf),
}

/// Writes records to stdout or a device (an IPC stream, flushed after every batch) or to a file whose
/// format follows its extension. A file is written under a temporary name in the same folder
/// and renamed into place by [`RecordWriter::finish`]; dropped unfinished, it leaves nothing.
pub struct RecordWriter {
    name: String,
    sink: Sink,
}

impl RecordWriter {
    /// Creates a writer for `schema` on `path`, or stdout when `path` is `None` or `-`.
    pub fn create(path: Option<&Path>, schema: &SchemaRef) -> Result<Self, RecordError> {
        match path {
            Some(p) if p != Path::new("-") => Self::to_file(p, schema),
            _ => Self::to_pipe("stdout".into(), Box::new(std::io::stdout()), schema),
        }
    }

    /// Creates a writer of an IPC stream on any writer (a child's stdin, a socket), named
    /// `name` in errors and flushed after every batch.
    pub fn stream(
        name: &str,
        out: Box<dyn Write + Send>,
        schema: &SchemaRef,
    ) -> Result<Self, RecordError> {
        Self::to_pipe(name.to_string(), out, schema)
    }

    fn to_pipe(
        name: String,
        out: Box<dyn Write + Send>,
        schema: &SchemaRef,
    ) -> Result<Self, RecordError> {
        let writer = StreamWriter::try_new(BufWriter::with_capacity(1 << 20, out), schema)
            .map_err(|e| RecordError::write(&name, e))?;
        Ok(RecordWriter {
            name,
            sink: Sink::Pipe(writer),
        })
    }

    fn to_file(path: &Path, schema: &SchemaRef) -> Result<Self, RecordError> {
        let name = path.display().to_string();
        // A device or pipe (/dev/null, /dev/stdout, a fifo) is written in place, as a stream.
        if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
            let out = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| RecordError::io(&name, e))?;
            return Self::to_pipe(name, Box::new(out), schema);
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".kao-")
            .suffix(".part")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .tempfile_in(dir)
            .map_err(|e| RecordError::io(&name, e))?;
        let target = path.to_path_buf();
        let sink = match Format::for_path(path) {
            Format::IpcStream => Sink::Stream(
                StreamWriter::try_new(BufWriter::new(tmp), schema)
                    .map_err(|e| RecordError::write(&name, e))?,
                target,
            ),
            Format::IpcFile => Sink::File(
                FileWriter::try_new(BufWriter::new(tmp), schema)
                    .map_err(|e| RecordError::write(&name, e))?,
                target,
            ),
            Format::Parquet => {
                // The schema's metadata also as the file's key-value metadata, where readers
                // that do not decode `ARROW:schema` (pyarrow's ParquetFile.read) look for it.
                let key_values = schema
                    .metadata()
                    .iter()
                    .map(|(k, v)| parquet::file::metadata::KeyValue::new(k.clone(), v.clone()))
                    .collect();
                let props = WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .set_key_value_metadata(Some(key_values))
                    .build();
                Sink::Parquet(
                    ArrowWriter::try_new(tmp, schema.clone(), Some(props))
                        .map_err(|e| RecordError::parquet(&name, e))?,
                    target,
                )
            }
        };
        Ok(RecordWriter { name, sink })
    }

    /// Writes one batch; on stdout the stream is flushed so the next stage sees it at once.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), RecordError> {
        let name = &self.name;
        match &mut self.sink {
            Sink::Pipe(w) => {
                w.write(batch).map_err(|e| RecordError::write(name, e))?;
                w.flush().map_err(|e| RecordError::write(name, e))
            }
            Sink::Stream(w, _) => w.write(batch).map_err(|e| RecordError::write(name, e)),
            Sink::File(w, _) => w.write(batch).map_err(|e| RecordError::write(name, e)),
            Sink::Parquet(w, _) => {
                w.write(batch).map_err(|e| RecordError::parquet(name, e))?;
                if w.in_progress_size() > PARQUET_ROW_GROUP_BYTES {
                    w.flush().map_err(|e| RecordError::parquet(name, e))?;
                }
                Ok(())
            }
        }
    }

    /// Ends the stream (or file) and, for a file, renames it into place.
    pub fn finish(self) -> Result<(), RecordError> {
        let name = self.name;
        let (tmp, target) = match self.sink {
            Sink::Pipe(mut w) => {
                w.finish().map_err(|e| RecordError::write(&name, e))?;
                return w.flush().map_err(|e| RecordError::write(&name, e));
            }
            Sink::Stream(mut w, target) => {
                w.finish().map_err(|e| RecordError::write(&name, e))?;
                (
                    into_file(
                        w.into_inner().map_err(|e| RecordError::write(&name, e))?,
                        &name,
                    )?,
                    target,
                )
            }
            Sink::File(mut w, target) => {
                w.finish().map_err(|e| RecordError::write(&name, e))?;
                (
                    into_file(
                        w.into_inner().map_err(|e| RecordError::write(&name, e))?,
                        &name,
                    )?,
                    target,
                )
            }
            Sink::Parquet(w, target) => (
                w.into_inner().map_err(|e| RecordError::parquet(&name, e))?,
                target,
            ),
        };
        tmp.as_file()
            .sync_all()
            .map_err(|e| RecordError::io(&name, e))?;
        tmp.persist(&target)
            .map_err(|e| RecordError::io(&name, e.error))?;
        Ok(())
    }
}

fn into_file(w: BufWriter<NamedTempFile>, name: &str) -> Result<NamedTempFile, RecordError> {
    w.into_inner()
        .map_err(|e| RecordError::io(name, e.into_error()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{FrameRow, frame_batch, frame_fields, stage_schema};
    use arrow_array::{BinaryArray, UInt64Array};

    #[test]
    fn an_ipc_file_whose_footer_points_past_its_data_is_refused_at_once() {
        // Found by the records_parquet fuzz target: 2.5 KB whose footer gives a record batch an
        // offset of 910 GB; arrow's reader took 16 GB of memory and 39 s before failing.
        let data = include_bytes!("../../../fuzz/regressions/records_parquet/block_past_end.arrow");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("damaged.arrow");
        std::fs::write(&path, data).unwrap();
        let e = RecordReader::open(Some(&path))
            .err()
            .expect("refused")
            .to_string();
        assert!(
            e.contains("runs past the end of the file's data") && e.contains("damaged"),
            "{e}"
        );
    }

    fn frames() -> (SchemaRef, Vec<RecordBatch>) {
        let entry = Provenance::new("kao-decode", "0.1.0", serde_json::json!({"every": 2}));
        let schema =
            stage_schema(&arrow_schema::Schema::empty(), &[], frame_fields(), &entry).unwrap();
        let batches = (0..3u64)
            .map(|i| {
                let row = FrameRow {
                    source: "clip.mp4".into(),
                    frame_index: i * 2,
                    pts: i as f64 / 12.5,
                    width: 2,
                    height: 1,
                    pixels: vec![i as u8; 6],
                };
                frame_batch(&schema, row).unwrap()
            })
            .collect();
        (schema, batches)
    }

    #[test]
    fn a_stream_cut_before_its_end_marker_is_an_error() {
        let (schema, batches) = frames();
        let mut bytes = Vec::new();
        {
            let mut w = StreamWriter::try_new(&mut bytes, &schema).unwrap();
            for b in &batches {
                w.write(b).unwrap();
            }
            w.finish().unwrap();
        }
        let read = |bytes: Vec<u8>| -> Vec<Result<RecordBatch, RecordError>> {
            RecordReader::from_stream("stdin", std::io::Cursor::new(bytes))
                .unwrap()
                .collect()
        };
        let whole = read(bytes.clone());
        assert_eq!(whole.len(), 3);
        assert!(whole.iter().all(Result::is_ok));
        // A writer that died after its last batch, before the end marker.
        let cut = read(bytes[..bytes.len() - END_OF_STREAM.len()].to_vec());
        assert_eq!(cut.len(), 4);
        assert!(cut[..3].iter().all(Result::is_ok));
        let e = cut[3].as_ref().unwrap_err();
        assert!(matches!(e, RecordError::Cut { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("stdin: the record stream ends without its end marker")
        );
    }

    #[test]
    fn every_file_format_round_trips_with_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let (schema, batches) = frames();
        for file in ["f.parquet", "f.arrow", "f.arrows"] {
            let path = dir.path().join(file);
            let mut w = RecordWriter::create(Some(&path), &schema).unwrap();
            for b in &batches {
                w.write(b).unwrap();
            }
            w.finish().unwrap();
            let r = RecordReader::open(Some(&path)).unwrap();
            assert_eq!(r.provenance().unwrap()[0].options["every"], 2, "{file}");
            let got: Vec<RecordBatch> = r.map(Result::unwrap).collect();
            let idx: Vec<u64> = got
                .iter()
                .flat_map(|b| {
                    let a = b
                        .column_by_name("frame_index")
                        .unwrap()
                        .as_any()
                        .downcast_ref::<UInt64Array>()
                        .unwrap();
                    a.values().to_vec()
                })
                .collect();
            assert_eq!(idx, [0, 2, 4], "{file}");
            let px = got[2]
                .column_by_name("pixels")
                .unwrap()
                .as_any()
                .downcast_ref::<BinaryArray>()
                .unwrap();
            assert_eq!(px.value(0), [2u8; 6], "{file}");
        }
        // Nothing but the three outputs: no temporary files left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
    }

    #[test]
    fn unfinished_writer_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let (schema, batches) = frames();
        let path = dir.path().join("out.parquet");
        let mut w = RecordWriter::create(Some(&path), &schema).unwrap();
        w.write(&batches[0]).unwrap();
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn garbage_and_empty_files_are_clean_errors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.arrows");
        std::fs::write(&empty, b"").unwrap();
        let err = RecordReader::open(Some(&empty)).err().unwrap();
        assert!(
            err.to_string().starts_with(&empty.display().to_string()),
            "{err}"
        );
        let junk = dir.path().join("junk.parquet");
        std::fs::write(&junk, b"PAR1 this is not parquet").unwrap();
        assert!(RecordReader::open(Some(&junk)).is_err());
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, b"hello, these are not records\n").unwrap();
        assert!(RecordReader::open(Some(&text)).is_err());
        let missing = dir.path().join("missing.arrows");
        let err = RecordReader::open(Some(&missing)).err().unwrap();
        assert!(err.to_string().contains("missing.arrows"), "{err}");
    }

    #[test]
    fn truncated_stream_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let (schema, batches) = frames();
        let path = dir.path().join("f.arrows");
        let mut w = RecordWriter::create(Some(&path), &schema).unwrap();
        for b in &batches {
            w.write(b).unwrap();
        }
        w.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        // The last 8 bytes are the end-of-stream marker; any earlier cut loses a batch.
        for cut in (1..bytes.len() - 8).step_by(7) {
            let short = dir.path().join("short.arrows");
            std::fs::write(&short, &bytes[..cut]).unwrap();
            let complete = match RecordReader::open(Some(&short)) {
                Err(_) => 0,
                Ok(reader) => reader.take(10).take_while(Result::is_ok).count(),
            };
            assert!(
                complete < batches.len(),
                "cut at {cut} still read every batch"
            );
        }
    }
}
