//! The decoder: open an input, decode its best video stream, select frames, convert to RGB.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::{Once, OnceLock};
use std::time::Duration;

use crossbeam_channel::{Sender, bounded};
use ff::software::scaling;
use ffmpeg_next as ff;

use crate::deinterlace::deinterlace;
use crate::hdr::{ToneMap, Transfer, max_content_light};
use crate::orient::Orientation;
use crate::select::{Selector, Verdict};

/// How to decode one input.
#[derive(Clone, Debug)]
pub struct DecodeOptions {
    /// Keep every Nth frame of the selected range (1 keeps all).
    pub every: u64,
    /// Keep at most this many frames per second of presentation time.
    pub fps: Option<f64>,
    /// Skip frames before this time (seconds); seeks where the container allows.
    pub start: Option<f64>,
    /// Stop before this time (seconds).
    pub end: Option<f64>,
    /// Stop after this many kept frames.
    pub max_frames: Option<u64>,
    /// Decoder threads (0: FFmpeg's choice).
    pub threads: usize,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            every: 1,
            fps: None,
            start: None,
            end: None,
            max_frames: None,
            threads: 0,
        }
    }
}

/// One decoded frame in RGB24, turned the way players show it (the stream's or the image's
/// display matrix, see [`Orientation`]).
#[derive(Debug)]
pub struct Frame {
    /// 0-based index of the frame in the input, counting frames that were not kept.
    pub index: u64,
    /// Presentation time in seconds.
    pub pts: f64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Pixels, row-major RGB24, `width * height * 3` bytes.
    pub rgb: Vec<u8>,
    /// The decoder flagged the frame as damaged (missing or invalid data concealed).
    pub damaged: bool,
}

/// What a finished decode did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Frames handed to the sink.
    pub emitted: u64,
    /// True when the sink asked to stop before the input ended.
    pub stopped: bool,
}

/// Why an input could not be decoded. Every message starts with the input's name.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The input could not be opened or is not a media file.
    #[error("{input}: {message}")]
    Open {
        /// The input as given.
        input: String,
        /// What went wrong.
        message: String,
    },
    /// The input has no video stream.
    #[error("{input}: no video stream (not a video or image)")]
    NoVideo {
        /// The input as given.
        input: String,
    },
    /// FFmpeg has no decoder for the stream's codec.
    #[error("{input}: unsupported video codec `{codec}`")]
    Codec {
        /// The input as given.
        input: String,
        /// Codec name.
        codec: String,
    },
    /// The input is damaged from about `frame_index` on; every frame that decoded was emitted.
    #[error(
        "{input}: damaged at frame {frame_index} ({message}); every frame that decoded was kept"
    )]
    Corrupt {
        /// The input as given.
        input: String,
        /// Index of the first frame that could not be decoded.
        frame_index: u64,
        /// FFmpeg's reason.
        message: String,
    },
}

static INIT: Once = Once::new();

pub(crate) fn init() {
    INIT.call_once(|| {
        // Initialisation only fails on FFmpeg builds without any formats; opening fails then too.
        let _ = ff::init();
        ff::log::set_level(ff::log::Level::Quiet);
    });
}

/// Sets how much FFmpeg itself says on stderr (kao reports errors on its own).
pub fn set_ffmpeg_log_level(level: ff::log::Level) {
    init();
    ff::log::set_level(level);
}

/// The input name that reads a video from standard input (a pipe or a redirected file).
pub const STDIN: &str = "-";

/// A URL (`scheme://…`) rather than a path.
fn is_url(input: &str) -> bool {
    input.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+')
    })
}

/// A video4linux2 capture device.
fn is_device(input: &str) -> bool {
    input.starts_with("/dev/video")
}

fn open_error(input: &str, e: ff::Error) -> DecodeError {
    let message = match e {
        ff::Error::InvalidData => "not a video or image FFmpeg can read".to_string(),
        ff::Error::ProtocolNotFound => "unsupported URL scheme".to_string(),
        e => e.to_string(),
    };
    DecodeError::Open {
        input: input.into(),
        message,
    }
}

fn open(input: &str) -> Result<ff::format::context::Input, DecodeError> {
    init();
    // FFmpeg takes C strings, and ffmpeg-next panics on a NUL byte (a list file or a config
    // value can hold one; found by the `video_list` fuzz target).
    if input.contains('\0') {
        return Err(DecodeError::Open {
            input: input.into(),
            message: "the name contains a NUL byte".into(),
        });
    }
    if is_device(input) {
        let format = v4l2_format().map_err(|message| DecodeError::Open {
            input: input.into(),
            message,
        })?;
        let ctx = ff::format::open_with(input, &ff::Format::Input(format), ff::Dictionary::new())
            .map_err(|e| open_error(input, e))?;
        return Ok(ctx.input());
    }
    if input == STDIN {
        use std::io::IsTerminal;
        if std::io::stdin().is_terminal() {
            return Err(DecodeError::Open {
                input: input.into(),
                message: "reads a video from standard input, which is a terminal (pipe one in)"
                    .into(),
            });
        }
        // Through the file protocol, so a redirected file (`< talk.mp4`) can seek (an MP4
        // whose index is at its end needs to); a pipe is read as a stream.
        return readable(input, ff::format::input(Path::new("/dev/stdin")));
    }
    if is_url(input) {
        let mut options = ff::Dictionary::new();
        // Give up on a silent server after 15 s instead of hanging (RTSP's own socket
        // timeout as well as the protocols' read/write timeout).
        options.set("rw_timeout", "15000000");
        if input.starts_with("rtsp") {
            options.set("timeout", "15000000");
        }
        return ff::format::input_with_dictionary(input, options).map_err(|e| open_error(input, e));
    }
    match std::fs::metadata(input) {
        Err(e) => {
            return Err(DecodeError::Open {
                input: input.into(),
                message: io_message(&e),
            });
        }
        Ok(m) if m.is_dir() => {
            return Err(DecodeError::Open {
                input: input.into(),
                message: "is a folder, not a video".into(),
            });
        }
        Ok(m) if m.len() == 0 => {
            return Err(DecodeError::Open {
                input: input.into(),
                message: "empty file".into(),
            });
        }
        Ok(_) => {}
    }
    readable(input, ff::format::input(Path::new(input)))
}

/// The input FFmpeg opened, or why it could not.
fn readable(
    input: &str,
    opened: Result<ff::format::context::Input, ff::Error>,
) -> Result<ff::format::context::Input, DecodeError> {
    let ctx = opened.map_err(|e| open_error(input, e))?;
    // FFmpeg would render a text file as ANSI art; that is never what a user meant.
    if ctx.format().name() == "tty" {
        return Err(DecodeError::Open {
            input: input.into(),
            message: "not a video or image FFmpeg can read".into(),
        });
    }
    Ok(ctx)
}

fn io_message(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Where the decoder starts and how it numbers the first frame.
enum Numbering {
    /// Decoding from the start: count frames.
    Count,
    /// After a seek in a constant-rate stream: the first frame's index is its time × rate.
    FromPts { origin: f64, rate: f64 },
}

struct Stream {
    index: usize,
    time_base: f64,
    rate: f64,
    /// Packets the container's index announces (0: unknown or not exact).
    packets: i64,
}

struct Decoded {
    frame: ff::frame::Video,
    index: u64,
    pts: f64,
}

/// Decodes `input` and calls `sink` with every selected frame, in order, until the input ends
/// or `sink` returns `Break`. On a truncated or corrupt input every frame that decoded is
/// handed to `sink` first, then [`DecodeError::Corrupt`] names where decoding stopped.
pub fn decode(
    input: &str,
    options: &DecodeOptions,
    mut sink: impl FnMut(Frame) -> ControlFlow<()>,
) -> Result<Summary, DecodeError> {
    let mut ictx = open(input)?;
    // Only the MP4/MOV index counts every packet exactly; AVI and others may not.
    let exact_index = ictx.format().name().starts_with("mov,mp4");
    let piped_mp4 = exact_index && input == STDIN;
    // A still image (FFmpeg's image2 demuxer, or a probed `*_pipe` one): image viewers ignore a
    // JFIF pixel aspect, so kao does too.
    let still = ictx.format().name() == "image2" || ictx.format().name().ends_with("_pipe");
    let (stream, decoder, orientation, aspect) = {
        let st =
            ictx.streams()
                .best(ff::media::Type::Video)
                .ok_or_else(|| DecodeError::NoVideo {
                    input: input.into(),
                })?;
        let tb = st.time_base();
        let avg = st.avg_frame_rate();
        let stream = Stream {
            index: st.index(),
            time_base: if tb.denominator() != 0 {
                f64::from(tb)
            } else {
                0.0
            },
            rate: if avg.numerator() > 0 && avg.denominator() > 0 {
                f64::from(avg)
            } else {
                0.0
            },
            packets: if exact_index { st.frames().max(0) } else { 0 },
        };
        let orientation = st
            .side_data()
            .find(|d| d.kind() == ff::codec::packet::side_data::Type::DisplayMatrix)
            .and_then(|d| Orientation::from_side_data(d.data()))
            .map_or(Orientation::UPRIGHT, |o| stream_orientation(input, o));
        let params = st.parameters();
        let codec = params.id();
        let mut ctx = ff::codec::context::Context::from_parameters(params).map_err(|e| {
            DecodeError::Open {
                input: input.into(),
                message: e.to_string(),
            }
        })?;
        ctx.set_threading(ff::codec::threading::Config {
            kind: ff::codec::threading::Type::Frame,
            count: options.threads,
            ..Default::default()
        });
        let decoder = ctx.decoder().video().map_err(|e| match e {
            ff::Error::DecoderNotFound => DecodeError::Codec {
                input: input.into(),
                codec: if codec == ff::codec::Id::None {
                    "unknown".into()
                } else {
                    codec.name().into()
                },
            },
            e => DecodeError::Open {
                input: input.into(),
                message: e.to_string(),
            },
        })?;
        (stream, decoder, orientation, container_aspect(&st))
    };
    let numbering = seek_to_start(&mut ictx, &stream, input, options);
    let selector = Selector::new(
        options.every,
        options.fps,
        options.start,
        options.end,
        options.max_frames,
    );

    let (tx, rx) = bounded::<Decoded>(4);
    std::thread::scope(|scope| {
        let worker = scope
            .spawn(move || run_decoder(input, ictx, decoder, &stream, numbering, selector, tx));
        let mut summary = Summary::default();
        let mut converter = Converter::new(input, orientation, still, aspect);
        for decoded in rx {
            let frame = match converter.convert(&decoded) {
                Ok(f) => f,
                Err(e) => {
                    return Err(DecodeError::Corrupt {
                        input: input.into(),
                        frame_index: decoded.index,
                        message: e.to_string(),
                    });
                }
            };
            summary.emitted += 1;
            if sink(frame).is_break() {
                summary.stopped = true;
                break;
            }
        }
        // Dropping the receiver (above) stops the decoder at its next frame.
        match worker.join() {
            Ok(Err(DecodeError::Corrupt { .. }))
                if piped_mp4 && summary.emitted == 0 && is_pipe_stdin() =>
            {
                Err(DecodeError::Open {
                    input: input.into(),
                    message: "an MP4 whose index follows its data cannot be read from a pipe: \
                              redirect the file (`< talk.mp4`) or remux it with \
                              `ffmpeg -i talk.mp4 -c copy -movflags +faststart out.mp4`"
                        .into(),
                })
            }
            Ok(result) => result.map(|()| summary),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// True when standard input is a pipe (not a file it was redirected from).
fn is_pipe_stdin() -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata("/dev/stdin").is_ok_and(|m| m.file_type().is_fifo())
}

/// The orientation a stream's display matrix asks for; a turn that is no quarter turn is
/// named in the log and the frames stay as stored.
fn stream_orientation(input: &str, orientation: Option<Orientation>) -> Orientation {
    orientation.unwrap_or_else(|| {
        tracing::warn!(
            "{input}: the display matrix turns frames by an angle that is no quarter turn; \
             frames are kept as stored"
        );
        Orientation::UPRIGHT
    })
}

/// Seeks to `--start` when that keeps frame indices exact (a constant-rate, seekable input).
fn seek_to_start(
    ictx: &mut ff::format::context::Input,
    stream: &Stream,
    input: &str,
    options: &DecodeOptions,
) -> Numbering {
    let Some(start) = options.start.filter(|s| *s > 0.0) else {
        return Numbering::Count;
    };
    let (avg, real) = {
        let st = ictx
            .stream(stream.index)
            .expect("stream index came from this input");
        (st.avg_frame_rate(), st.rate())
    };
    let constant_rate = stream.rate > 0.0 && avg == real;
    if !constant_rate || is_device(input) {
        tracing::debug!(
            "{input}: variable frame rate; decoding from the start to keep frame indices exact"
        );
        return Numbering::Count;
    }
    let origin = {
        let st = ictx
            .stream(stream.index)
            .expect("stream index came from this input");
        if st.start_time() == ff::ffi::AV_NOPTS_VALUE {
            0.0
        } else {
            st.start_time() as f64 * stream.time_base
        }
    };
    let target = (start * f64::from(ff::ffi::AV_TIME_BASE)) as i64;
    match ictx.seek(target, ..target) {
        Ok(()) => Numbering::FromPts {
            origin,
            rate: stream.rate,
        },
        Err(e) => {
            tracing::debug!("{input}: cannot seek ({e}); decoding from the start");
            Numbering::Count
        }
    }
}

/// Reads packets, decodes, numbers and selects frames, and sends them to the converter.
fn run_decoder(
    input: &str,
    mut ictx: ff::format::context::Input,
    mut decoder: ff::decoder::Video,
    stream: &Stream,
    numbering: Numbering,
    selector: Selector,
    tx: Sender<Decoded>,
) -> Result<(), DecodeError> {
    let seek_start = matches!(numbering, Numbering::FromPts { .. });
    let mut out = Output {
        stream,
        state: Numberer {
            numbering,
            seek_start,
            next: 0,
            first_pts: None,
            last_pts: None,
            frame_duration: frame_duration(stream),
        },
        selector,
        skipper: Skipper::default(),
        tx,
        failure: None,
    };
    // A network stream that announces its length (a file served over RTSP or HTTP) and ends
    // well before it lost its connection; a live stream announces none.
    let announced = (is_url(input) && ictx.duration() > 0)
        .then(|| ictx.duration() as f64 / f64::from(ff::ffi::AV_TIME_BASE));
    let mut packets: i64 = 0;
    // Packets read but not yet given to the decoder: with `--every`, a packet's index is known
    // only once every packet shown before it has been read (see [`Skipper`]).
    let read_ahead = if out.selector.every() > 1 {
        READ_AHEAD
    } else {
        0
    };
    let mut waiting: VecDeque<ff::Packet> = VecDeque::new();
    // Whether reading reached the end of the input (rather than an error).
    let ended = loop {
        // A fresh packet for every read: `av_read_frame` fills the packet it is given without
        // unreferencing what it held, so one packet reused leaked every packet's data (the
        // whole file over a run; found by the `image` fuzz target's leak check).
        let mut packet = ff::Packet::empty();
        match packet.read(&mut ictx) {
            Ok(()) => {
                if packet.stream() != stream.index {
                    continue;
                }
                packets += 1;
                if packet.is_corrupt() {
                    out.failure
                        .get_or_insert((out.state.next, "corrupt packet (truncated file?)".into()));
                }
                out.skipper.read(packet.pts());
                waiting.push_back(packet);
                while waiting.len() > read_ahead
                    && let Some(packet) = waiting.pop_front()
                {
                    if out.decode(&mut decoder, &packet).is_break() {
                        return Ok(());
                    }
                }
            }
            Err(ff::Error::Eof) => break true,
            Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => {
                out.failure.get_or_insert((out.state.next, e.to_string()));
                break false;
            }
        }
    };
    for packet in waiting {
        if out.decode(&mut decoder, &packet).is_break() {
            return Ok(());
        }
    }
    // Checked once the packets read ahead are decoded: they read the last frame's time.
    if ended {
        if let (Some(length), Some(first), Some(last)) =
            (announced, out.state.first_pts, out.state.last_pts)
        {
            let tolerance = (2.0 * out.state.frame_duration).max(0.5);
            if !out.state.seeked() && last - first + tolerance < length {
                out.failure.get_or_insert((
                    out.state.next,
                    format!(
                        "the stream ended after {:.1} s of {length:.1} s (connection lost?)",
                        last - first + out.state.frame_duration
                    ),
                ));
            }
        }
        // The container's index promised more packets than the file holds.
        if stream.packets > 0 && packets < stream.packets && !out.state.seeked() {
            out.failure.get_or_insert((
                out.state.next,
                format!(
                    "file ends after {packets} of {} packets (truncated?)",
                    stream.packets
                ),
            ));
        }
    }
    // Flush the frames the decoder still holds, whatever ended the reading: take what is
    // ready (the end marker is refused while output waits), then signal the end and take the
    // rest.
    for _ in 0..2 {
        if out.drain(&mut decoder).is_break() {
            return Ok(());
        }
        if decoder.send_eof().is_ok() {
            break;
        }
    }
    if out.drain(&mut decoder).is_break() {
        return Ok(());
    }
    let left = out.skipper.left_at_end();
    if out.number_left(left).is_break() {
        return Ok(());
    }
    match out.failure {
        None => Ok(()),
        Some((frame_index, message)) => Err(DecodeError::Corrupt {
            input: input.into(),
            frame_index,
            message,
        }),
    }
}

fn frame_duration(stream: &Stream) -> f64 {
    if stream.rate > 0.0 {
        1.0 / stream.rate
    } else {
        0.0
    }
}

/// Leaves undecoded the non-reference frames (those no other frame is predicted from, such as
/// most B-frames) that the selection drops anyway: before `--start`, with `--fps` every
/// frame after the first of its slot ([`Selector::before_start`], [`Selector::slot`]), and with
/// `--every` the frames between the kept ones ([`Selector::every_drops`]). FFmpeg's
/// decoder is given leave to skip a packet's frame when it is a non-reference one
/// (`skip_frame`); a frame left undecoded is counted where it would have come out (by its
/// timestamp, before the first later frame), so every index is the one decoding every frame
/// gives. A packet may be left for `--fps` only when another packet of its slot came earlier
/// in time, so the first frame of a slot, the one kept, is always decoded. For `--every` a
/// packet's index must be known before it is decoded: it is the number of frames out so far
/// plus the packets read whose frames have not come out and that are shown before it, which
/// holds once every packet shown before it has been read, hence the decoder gets packets
/// [`READ_AHEAD`] behind the reading. Should a frame left undecoded still turn out to be
/// one the selection keeps, decoding reports damage at it rather than a wrong frame.
#[derive(Default)]
struct Skipper {
    /// Off for good: a packet without a timestamp, two packets at one time, an interlaced
    /// frame (two field packets may make one frame), or frames coming out of time order.
    off: bool,
    /// Whether a frame came out yet (until then nothing is left).
    started: bool,
    /// The earliest timestamp of each recent `--fps` slot.
    earliest: BTreeMap<i64, i64>,
    /// Timestamps of packets given leave to skip whose frame has not come out (yet).
    pending: BTreeSet<i64>,
    /// The timestamp of the latest frame out.
    last_out: Option<i64>,
    /// Timestamps of the packets read whose frames have not come out or been counted (each
    /// with how many packets carry it).
    unnumbered: BTreeMap<i64, u32>,
}

/// Packets read ahead of the decoder with `--every` (see [`Skipper`]): H.264 and HEVC show a
/// frame at most 16 frames after it is decoded, MPEG-2 and MPEG-4 one, VP9 and AV1 none.
const READ_AHEAD: usize = 32;

/// `--fps` slots kept in [`Skipper::earliest`] behind the newest: far more than decoders
/// reorder.
const SLOTS_KEPT: i64 = 8;

impl Skipper {
    /// Notes a packet read at timestamp `ts`.
    fn read(&mut self, ts: Option<i64>) {
        let Some(ts) = ts.filter(|_| !self.off) else {
            // Off, nothing is left any more: nothing to count.
            self.off = true;
            self.unnumbered.clear();
            return;
        };
        let packets = self.unnumbered.entry(ts).or_insert(0);
        *packets += 1;
        if *packets > 1 {
            self.off = true;
        }
    }

    /// Whether the packet at timestamp `ts` may be left undecoded if it is a non-reference
    /// frame; `next` is the index the next frame out gets.
    fn may_leave(
        &mut self,
        ts: Option<i64>,
        time_base: f64,
        selector: &Selector,
        next: u64,
    ) -> bool {
        let Some(ts) = ts else {
            self.off = true;
            return false;
        };
        let pts = ts as f64 * time_base;
        let slot = selector.slot(pts);
        let after_first = slot.is_some_and(|s| self.earliest.get(&s).is_some_and(|e| *e < ts));
        if let Some(s) = slot {
            let earliest = self.earliest.entry(s).or_insert(ts);
            *earliest = (*earliest).min(ts);
            self.earliest = self.earliest.split_off(&(s - SLOTS_KEPT));
        }
        let dropped = || {
            selector.before_start(pts)
                || after_first
                || (selector.every() > 1 && selector.every_drops(self.index_of(ts, next)))
        };
        let leave = !self.off && self.started && dropped();
        if leave {
            self.pending.insert(ts);
        }
        leave
    }

    /// Notes a frame out at timestamp `ts` and returns, in time order, the timestamps of the
    /// frames left undecoded that would have come out before it, after the previous frame out.
    /// One left at or before the previous frame's time would not have come out in time order
    /// (a frame the decoder drops, such as a leading frame of an open GOP after a seek): it is
    /// not counted, as decoding it would not have counted it.
    fn came_out(&mut self, ts: Option<i64>, interlaced: bool) -> Vec<i64> {
        self.started = true;
        let Some(ts) = ts else {
            self.off = true;
            return Vec::new();
        };
        let last = self.last_out.replace(ts);
        if interlaced || last.is_some_and(|last| ts <= last) {
            self.off = true;
        }
        // Frames shown up to this one that have not come out never will.
        let mut unnumbered = self.unnumbered.split_off(&ts);
        unnumbered.remove(&ts);
        self.unnumbered = unnumbered;
        self.pending.remove(&ts);
        let later = self.pending.split_off(&ts);
        std::mem::replace(&mut self.pending, later)
            .into_iter()
            .filter(|left| last.is_none_or(|last| *left > last))
            .collect()
    }

    /// The timestamps of the frames left undecoded after the last frame out.
    fn left_at_end(&mut self) -> Vec<i64> {
        self.unnumbered.clear();
        std::mem::take(&mut self.pending).into_iter().collect()
    }

    /// The index of the frame of a packet read at timestamp `ts` when the next frame out is
    /// numbered `next`, once every packet shown before it has been read.
    fn index_of(&self, ts: i64, next: u64) -> u64 {
        next + self
            .unnumbered
            .range(..ts)
            .map(|(_, packets)| u64::from(*packets))
            .sum::<u64>()
    }
}

/// Gives each decoded frame its index and time.
struct Numberer {
    numbering: Numbering,
    seek_start: bool,
    next: u64,
    first_pts: Option<f64>,
    last_pts: Option<f64>,
    frame_duration: f64,
}

impl Numberer {
    /// True when decoding began at a seek point rather than the first frame.
    fn seeked(&self) -> bool {
        self.seek_start
    }

    fn number(&mut self, timestamp: Option<i64>, time_base: f64) -> (u64, f64) {
        let pts = match timestamp {
            Some(ts) => ts as f64 * time_base,
            None => self.last_pts.map_or(0.0, |p| p + self.frame_duration),
        };
        let index = match self.numbering {
            Numbering::Count => self.next,
            Numbering::FromPts { origin, rate } => {
                self.numbering = Numbering::Count;
                ((pts - origin) * rate).round().max(0.0) as u64
            }
        };
        self.next = index + 1;
        self.first_pts.get_or_insert(pts);
        self.last_pts = Some(pts);
        (index, pts)
    }
}

/// Errors `receive_frame` may return in a row before [`Output::drain`] stops asking.
const MAX_DECODE_ERRORS_IN_A_ROW: u32 = 64;

/// Where decoded frames go: numbered, selected and sent to the converter; the first decoding
/// error is kept for the end.
struct Output<'a> {
    stream: &'a Stream,
    state: Numberer,
    selector: Selector,
    skipper: Skipper,
    tx: Sender<Decoded>,
    /// The first error, with the index of the frame it came at.
    failure: Option<(u64, String)>,
}

impl Output<'_> {
    /// Gives `packet` to the decoder, with leave to skip its frame when [`Skipper`] allows,
    /// and takes the frames it has ready.
    fn decode(&mut self, decoder: &mut ff::decoder::Video, packet: &ff::Packet) -> ControlFlow<()> {
        let leave = self.skipper.may_leave(
            packet.pts(),
            self.stream.time_base,
            &self.selector,
            self.state.next,
        );
        decoder.skip_frame(if leave {
            ff::Discard::NonReference
        } else {
            ff::Discard::Default
        });
        let mut sent = decoder.send_packet(packet);
        if matches!(sent, Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN) {
            // The decoder's output is full: take its frames, then the packet.
            self.drain(decoder)?;
            sent = decoder.send_packet(packet);
        }
        if let Err(e) = sent {
            self.failure.get_or_insert((self.state.next, e.to_string()));
        }
        self.drain(decoder)
    }

    /// Receives every frame the decoder has ready, numbers and selects them, and sends the
    /// kept ones on; decoding errors go to `failure`.
    fn drain(&mut self, decoder: &mut ff::decoder::Video) -> ControlFlow<()> {
        let mut frame = ff::frame::Video::empty();
        // With frame threads, a frame that failed to decode is reported by `receive_frame` while
        // the frames after it wait behind it: note the error and go on receiving. A decoder that
        // keeps failing without producing anything is given up on.
        let mut errors_in_a_row = 0;
        loop {
            match decoder.receive_frame(&mut frame) {
                Ok(()) => errors_in_a_row = 0,
                Err(ff::Error::Eof) => break,
                Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => break,
                Err(e) => {
                    self.failure.get_or_insert((self.state.next, e.to_string()));
                    errors_in_a_row += 1;
                    if errors_in_a_row > MAX_DECODE_ERRORS_IN_A_ROW {
                        break;
                    }
                    continue;
                }
            }
            // The frame's pts is its packet's; the best-effort timestamp may be a guess.
            let left = self.skipper.came_out(frame.pts(), frame.is_interlaced());
            if self.number_left(left).is_break() {
                return ControlFlow::Break(());
            }
            let (index, pts) = self.state.number(frame.timestamp(), self.stream.time_base);
            match self.selector.judge(index, pts) {
                Verdict::Skip => {}
                Verdict::Stop => return ControlFlow::Break(()),
                Verdict::Keep => {
                    let decoded = Decoded {
                        frame: std::mem::replace(&mut frame, ff::frame::Video::empty()),
                        index,
                        pts,
                    };
                    if self.tx.send(decoded).is_err() {
                        return ControlFlow::Break(());
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }

    /// Numbers and judges the frames left undecoded at timestamps `left` (see [`Skipper`]);
    /// the selection drops them by construction, so one it would keep is reported as damage.
    fn number_left(&mut self, left: Vec<i64>) -> ControlFlow<()> {
        for ts in left {
            let (index, pts) = self.state.number(Some(ts), self.stream.time_base);
            match self.selector.judge(index, pts) {
                Verdict::Skip => {}
                Verdict::Stop => return ControlFlow::Break(()),
                Verdict::Keep => {
                    self.failure.get_or_insert((
                        index,
                        "a frame left undecoded (a non-reference frame) was selected".into(),
                    ));
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// Converts decoded frames to packed RGB24 with the frame's own YUV matrix and range (see
/// [`yuv_colour`]), in square pixels, without combing (interlaced frames) and turned for
/// display; rebuilds the scaler when the size, format or colour
/// changes.
struct Converter {
    scaler: Option<(scaling::Context, Option<YuvColour>)>,
    rgb: ff::frame::Video,
    /// The mapping of HDR frames to SDR, once one came.
    tone: Option<ToneMap>,
    /// The content light level an HDR frame last stated (frames after a key frame say none).
    max_light: Option<f32>,
    /// The stream's orientation; an image's own display matrix (EXIF) takes precedence.
    orientation: Orientation,
    /// A still image: its pixel aspect is ignored.
    still: bool,
    /// The pixel aspect the container gives, for frames whose bitstream gives none (as
    /// players do: a ProRes or DNxHD file's aspect is only in MOV's `pasp` box).
    container_aspect: ff::Rational,
    input: String,
}

impl Converter {
    fn new(
        input: &str,
        orientation: Orientation,
        still: bool,
        container_aspect: ff::Rational,
    ) -> Converter {
        Converter {
            container_aspect,
            scaler: None,
            rgb: ff::frame::Video::empty(),
            tone: None,
            max_light: None,
            orientation,
            still,
            input: input.into(),
        }
    }

    fn convert(&mut self, decoded: &Decoded) -> Result<Frame, ff::Error> {
        let src = &decoded.frame;
        let (w, h, format) = (src.width(), src.height(), src.format());
        let colour = yuv_colour(src);
        let (out_w, out_h) = if self.still {
            (w, h)
        } else {
            let own = src.aspect_ratio();
            let known = own.numerator() > 0 && own.denominator() > 0;
            square_pixels(w, h, if known { own } else { self.container_aspect })
        };
        // HDR goes through planar 16-bit RGB (swscale's fast way there) to its tone mapping.
        let hdr = Transfer::of(src);
        let out_format = match hdr {
            Some(_) => ff::format::Pixel::GBRP16LE,
            None => ff::format::Pixel::RGB24,
        };
        let fits = self.scaler.as_ref().is_some_and(|(s, c)| {
            s.input().format == format
                && s.input().width == w
                && s.input().height == h
                && s.output().format == out_format
                && s.output().width == out_w
                && s.output().height == out_h
                && *c == colour
        });
        if !fits {
            // Same size: FFmpeg's unscaled converter (the flag is unused). Non-square pixels
            // are resampled bicubically, as the `ffmpeg` command scales.
            let flags = if (out_w, out_h) == (w, h) {
                scaling::Flags::BILINEAR
            } else {
                scaling::Flags::BICUBIC
            };
            let mut scaler = scaling::Context::get(format, w, h, out_format, out_w, out_h, flags)?;
            if let Some(colour) = colour {
                set_yuv_colour(&mut scaler, colour);
            }
            self.scaler = Some((scaler, colour));
            self.rgb = ff::frame::Video::empty();
        }
        let (scaler, _) = self.scaler.as_mut().expect("set above");
        let (w, h) = (out_w, out_h);
        let row = w as usize * 3;
        let mut rgb = if let Some(transfer) = hdr {
            scaler.run(src, &mut self.rgb)?;
            if let Some(nits) = max_content_light(src) {
                self.max_light = Some(nits);
            }
            let wide = src.color_primaries() == ff::color::Primaries::BT2020;
            let tone = match self.tone.take() {
                Some(t) if t.is_for(transfer, wide, self.max_light) => t,
                _ => {
                    tracing::debug!(
                        "{}: {transfer:?} HDR video, tone-mapped to SDR (peak {:?} cd/m²)",
                        self.input,
                        self.max_light
                    );
                    ToneMap::new(transfer, wide, self.max_light)
                }
            };
            let planes = [0, 1, 2].map(|p| self.rgb.data(p));
            let strides = [0, 1, 2].map(|p| self.rgb.stride(p));
            let sdr = tone.apply(planes, strides, w as usize, h as usize);
            self.tone = Some(tone);
            sdr
        } else if row.is_multiple_of(FRAME_ALIGN) {
            scale_into_vec(scaler, src, row, h as usize)?
        } else {
            scaler.run(src, &mut self.rgb)?;
            let stride = self.rgb.stride(0);
            let data = self.rgb.data(0);
            let mut rgb = Vec::with_capacity(row * h as usize);
            for y in 0..h as usize {
                rgb.extend_from_slice(&data[y * stride..y * stride + row]);
            }
            rgb
        };
        if src.is_interlaced() {
            deinterlace(&mut rgb, w as usize, h as usize, src.is_top_first());
        }
        let orientation = match src
            .side_data(ff::frame::side_data::Type::DisplayMatrix)
            .and_then(|d| Orientation::from_side_data(d.data()))
        {
            Some(own) => stream_orientation(&self.input, own),
            None => self.orientation,
        };
        if !orientation.is_upright() {
            rgb = orientation.apply(&rgb, w as usize, h as usize);
        }
        let (width, height) = orientation.size(w, h);
        Ok(Frame {
            index: decoded.index,
            pts: decoded.pts,
            width,
            height,
            rgb,
            damaged: decoded.frame.is_corrupt() || decoded.frame.has_decode_errors(),
        })
    }
}

/// The size a `width × height` frame of pixels `sar` wide (width : height, FFmpeg's sample
/// aspect ratio) has in square pixels, as players show it: the width scaled, the rows kept
/// (so the fields of an interlaced frame stay apart). Japanese broadcasts' 1440 × 1080 at 4:3
/// → 1920 × 1080; a 16:9 DVD's 720 × 480 at 32:27 → 853 × 480, a 4:3 one's at 8:9 → 640 × 480.
/// Square or unknown (0/0, or more than 4:1 either way, which no video uses) leaves the size
/// as it is; under half a percent off square too.
fn square_pixels(width: u32, height: u32, sar: ff::Rational) -> (u32, u32) {
    let (num, den) = (sar.numerator(), sar.denominator());
    if num <= 0 || den <= 0 {
        return (width, height);
    }
    let ratio = f64::from(num) / f64::from(den);
    if !(0.25..=4.0).contains(&ratio) || (ratio - 1.0).abs() < 0.005 {
        return (width, height);
    }
    (((f64::from(width) * ratio).round() as u32).max(1), height)
}

/// The YUV→RGB conversion of a frame: FFmpeg's colour-space number (`AVColorSpace`, which
/// `sws_getCoefficients` takes) and whether the samples use the full 0–255 range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct YuvColour {
    space: i32,
    full_range: bool,
}

/// How a YUV frame converts to RGB as players show it: the matrix and range the stream is
/// tagged with; untagged, BT.709 for HD frames (at least 1280 wide or over 576 high) and
/// BT.601 below, as mpv, VLC and browsers assume, and the limited (16–235) range except for
/// FFmpeg's full-range `yuvj` formats. `None` for RGB and grey frames (nothing to choose).
fn yuv_colour(frame: &ff::frame::Video) -> Option<YuvColour> {
    use ff::color::{Range, Space};
    let format = frame.format();
    let descriptor = format.descriptor()?;
    let name = descriptor.name();
    let not_yuv = ["rgb", "bgr", "gbr", "xyz", "bayer", "gray", "pal", "mono"];
    if descriptor.nb_components() < 3 || not_yuv.iter().any(|n| name.contains(n)) {
        return None;
    }
    let space = match frame.color_space() {
        Space::Unspecified | Space::Reserved | Space::RGB => {
            if frame.width() >= 1280 || frame.height() > 576 {
                Space::BT709
            } else {
                Space::BT470BG
            }
        }
        tagged => tagged,
    };
    Some(YuvColour {
        space: ff::ffi::AVColorSpace::from(space) as i32,
        full_range: name.starts_with("yuvj") || frame.color_range() == Range::JPEG,
    })
}

/// The pixel aspect the container gives `stream` (MP4/MOV's `pasp` box, Matroska's display
/// size), 0/1 when it gives none.
///
/// The fourth of the crate's four `unsafe` functions (docs/architecture.md, "Unsafe code"):
/// ffmpeg-next does not wrap `AVStream::sample_aspect_ratio`, and the decoder's frames carry
/// only the bitstream's.
#[allow(unsafe_code)]
fn container_aspect(stream: &ff::format::stream::Stream<'_>) -> ff::Rational {
    // SAFETY: `as_ptr` is the stream's AVStream, owned by the input context `stream` borrows,
    // so it is valid for this read of a plain field.
    ff::Rational::from(unsafe { (*stream.as_ptr()).sample_aspect_ratio })
}

/// FFmpeg's libavdevice, loaded the first time a camera is opened.
static AVDEVICE: OnceLock<Result<libloading::Library, String>> = OnceLock::new();

/// FFmpeg's video4linux2 input format, from libavdevice.
///
/// The third of the crate's four `unsafe` functions (docs/architecture.md, "Unsafe code"):
/// libavdevice is loaded here rather than linked, because linking it costs every process
/// that decodes ~0.12 s of start-up (its ~200 libraries' symbols: SDL, X11, PulseAudio,
/// libavfilter) while only cameras need it. Its major version is libavformat's (they have
/// matched since FFmpeg 4).
#[allow(unsafe_code)]
fn v4l2_format() -> Result<ff::format::Input, String> {
    let library = AVDEVICE.get_or_init(|| {
        let name = format!("libavdevice.so.{}", ff::format::version() >> 16);
        // SAFETY: loading libavdevice runs its initialisers, which only set up static
        // tables; `avdevice_register_all` takes nothing and registers the devices with the
        // libavformat this process already links, whose major version it was built for.
        unsafe {
            let library = libloading::Library::new(&name)
                .map_err(|e| format!("reading a camera needs FFmpeg's {name}: {e}"))?;
            let register: libloading::Symbol<'_, unsafe extern "C" fn()> = library
                .get(b"avdevice_register_all\0")
                .map_err(|e| format!("{name}: {e}"))?;
            register();
            Ok(library)
        }
    });
    library.as_ref().map_err(Clone::clone)?;
    // SAFETY: `av_find_input_format` reads a NUL-terminated name and returns a pointer to
    // a static format description (or null), which lives as long as the process; the
    // library that registered it stays loaded in `AVDEVICE`.
    let format = unsafe { ff::ffi::av_find_input_format(c"v4l2".as_ptr()) };
    if format.is_null() {
        return Err("FFmpeg was built without v4l2".into());
    }
    // SAFETY: a non-null static input format (above).
    Ok(unsafe { ff::format::Input::wrap(format.cast_mut()) })
}

/// Tells `scaler` (YUV to RGB24) the frame's matrix and range; RGB comes out full range.
///
/// The second of the crate's four `unsafe` functions (docs/architecture.md, "Unsafe code"):
/// ffmpeg-next has no safe call for `sws_setColorspaceDetails`.
#[allow(unsafe_code)]
fn set_yuv_colour(scaler: &mut scaling::Context, colour: YuvColour) {
    const UNIT: i32 = 1 << 16;
    // SAFETY: `sws_getCoefficients` returns a pointer to one of swscale's static tables of
    // four ints for any argument (unknown spaces get BT.601's), and `sws_setColorspaceDetails`
    // reads four ints from each table and sets fields of the live context `scaler` owns.
    let status = unsafe {
        let table = ff::ffi::sws_getCoefficients(colour.space);
        let rgb = ff::ffi::sws_getCoefficients(ff::ffi::SWS_CS_DEFAULT);
        ff::ffi::sws_setColorspaceDetails(
            scaler.as_mut_ptr(),
            table,
            i32::from(colour.full_range),
            rgb,
            1,
            0,
            UNIT,
            UNIT,
        )
    };
    if status < 0 {
        tracing::debug!("swscale kept its own YUV matrix ({colour:?} not supported)");
    }
}

/// The row alignment FFmpeg gives RGB frames it allocates (`av_frame_get_buffer(…, 32)`).
const FRAME_ALIGN: usize = 32;

/// Bytes after the last row, as FFmpeg's own frame buffers have, for converters that store
/// a whole vector past a row's end.
const FRAME_SLACK: usize = 64;

/// `src` converted by `scaler` straight into a packed RGB24 buffer of `height` rows of
/// `row` bytes (the frame's own layout when `row` is a multiple of [`FRAME_ALIGN`]),
/// without the copy out of an FFmpeg frame.
///
/// The first of the crate's four `unsafe` functions (docs/architecture.md, "Unsafe code"):
/// ffmpeg-next's safe `scaling::Context::run` only writes into an FFmpeg frame, which then
/// costs a copy of every frame into the `Vec` the pipeline passes on; calling `sws_scale`
/// with our own buffer skips it.
#[allow(unsafe_code)]
fn scale_into_vec(
    scaler: &mut scaling::Context,
    src: &ff::frame::Video,
    row: usize,
    height: usize,
) -> Result<Vec<u8>, ff::Error> {
    let len = row * height;
    let mut rgb = Vec::<u8>::with_capacity(len + FRAME_SLACK);
    let stride = i32::try_from(row).map_err(|_| ff::Error::InvalidData)?;
    let dst: [*mut u8; 4] = [
        rgb.as_mut_ptr(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    ];
    let dst_stride: [i32; 4] = [stride, 0, 0, 0];
    // SAFETY: the context converts `src` (its input format and size, checked by the caller)
    // to packed RGB24 of the same size: `height` rows of `row` bytes at `stride` apart, all
    // inside `rgb`'s capacity with FRAME_SLACK to spare, as in a frame FFmpeg allocates
    // itself (rows aligned to FRAME_ALIGN, padding after the last). `src` is a decoded
    // frame whose planes and line sizes FFmpeg set.
    let rows = unsafe {
        ff::ffi::sws_scale(
            scaler.as_mut_ptr(),
            (*src.as_ptr()).data.as_ptr() as *const *const u8,
            (*src.as_ptr()).linesize.as_ptr(),
            0,
            src.height() as i32,
            dst.as_ptr(),
            dst_stride.as_ptr(),
        )
    };
    if rows < 0 || rows as usize != height {
        return Err(ff::Error::InvalidData);
    }
    // SAFETY: sws_scale wrote all `height` rows, every byte of `len`.
    unsafe { rgb.set_len(len) };
    Ok(rgb)
}

/// What the container says about an input before decoding, for progress estimates.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Probe {
    /// Frames in the video stream, when the container's index counts them.
    pub frames: Option<u64>,
    /// Duration in seconds, when known.
    pub duration: Option<f64>,
    /// Average frame rate, when known.
    pub rate: Option<f64>,
    /// Average frame rate as a fraction (numerator, denominator), when known.
    pub frame_rate: Option<(i32, i32)>,
    /// The video stream's time base (numerator, denominator), when known.
    pub time_base: Option<(i32, i32)>,
}

impl Probe {
    /// The expected number of frames: the index's count, else duration × rate.
    pub fn estimated_frames(&self) -> Option<u64> {
        self.frames
            .or_else(|| Some((self.duration? * self.rate?).round() as u64))
            .filter(|n| *n > 0)
    }
}

/// Opens `input` and reads what its container says, without decoding; nothing for standard
/// input ([`STDIN`]), which only the decoder reads.
pub fn probe(input: &str) -> Result<Probe, DecodeError> {
    // Standard input can be read once, by the decoder.
    if input == STDIN {
        return Ok(Probe::default());
    }
    let ictx = open(input)?;
    let st = ictx
        .streams()
        .best(ff::media::Type::Video)
        .ok_or_else(|| DecodeError::NoVideo {
            input: input.into(),
        })?;
    let avg = st.avg_frame_rate();
    let tb = st.time_base();
    let duration = ictx.duration();
    let positive = |r: ff::Rational| {
        (r.numerator() > 0 && r.denominator() > 0).then(|| (r.numerator(), r.denominator()))
    };
    Ok(Probe {
        frames: (st.frames() > 0).then_some(st.frames() as u64),
        duration: (duration > 0).then(|| duration as f64 / f64::from(ff::ffi::AV_TIME_BASE)),
        rate: (avg.numerator() > 0 && avg.denominator() > 0).then(|| f64::from(avg)),
        frame_rate: positive(avg),
        time_base: positive(tb),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_left_undecoded_are_counted_between_their_neighbours() {
        // 25 fps in a 1/25 time base, --fps 5: slots of five frames.
        let mut selector = Selector::new(1, Some(5.0), None, None, None);
        let mut skipper = Skipper::default();
        // Nothing is left before a frame came out and set the origin.
        assert!(!skipper.may_leave(Some(0), 0.04, &selector, 0));
        assert!(!skipper.may_leave(Some(4), 0.04, &selector, 0));
        assert!(skipper.came_out(Some(0), false).is_empty());
        assert_eq!(selector.judge(0, 0.0), Verdict::Keep);
        // Packets before the origin do not count: frame 1 is the first of its slot seen since,
        // frame 2 follows it; frame 5 opens the next slot, frame 6 follows it.
        assert!(!skipper.may_leave(Some(1), 0.04, &selector, 0));
        assert!(skipper.may_leave(Some(2), 0.04, &selector, 0));
        assert!(!skipper.may_leave(Some(5), 0.04, &selector, 0));
        assert!(skipper.may_leave(Some(6), 0.04, &selector, 0));
        // Frame 4 comes out: frame 2, left, is counted before it; frame 6 waits.
        assert_eq!(skipper.came_out(Some(4), false), [2]);
        // A left frame at or before the previous frame out would not have come out (a frame
        // the decoder drops): not counted.
        assert!(skipper.may_leave(Some(3), 0.04, &selector, 0));
        assert_eq!(skipper.came_out(Some(7), false), [6]);
        assert!(skipper.left_at_end().is_empty());
        // A packet without a time turns leaving off for good.
        assert!(!skipper.may_leave(None, 0.04, &selector, 0));
        assert!(!skipper.may_leave(Some(8), 0.04, &selector, 0));
    }

    #[test]
    fn every_nth_frame_is_known_before_it_is_decoded() {
        // --every 2 over frames shown at 0 … 6 (1/25 s apart), decoded I0 P3 B1 B2 P6 B4 B5
        // and all read before the decoder gets them.
        let mut selector = Selector::new(2, None, None, None, None);
        let mut skipper = Skipper::default();
        for ts in [0, 3, 1, 2, 6, 4, 5] {
            skipper.read(Some(ts));
        }
        assert!(!skipper.may_leave(Some(0), 0.04, &selector, 0));
        assert!(skipper.came_out(Some(0), false).is_empty());
        assert_eq!(selector.judge(0, 0.0), Verdict::Keep);
        // Frame 0 is out: frames 3 and 1 are dropped, frame 2 is kept.
        assert!(skipper.may_leave(Some(3), 0.04, &selector, 1));
        assert!(skipper.may_leave(Some(1), 0.04, &selector, 1));
        assert!(!skipper.may_leave(Some(2), 0.04, &selector, 1));
        // Frame 1 was left undecoded: it is counted before frame 2. Frame 3, a reference
        // frame, was decoded all the same.
        assert_eq!(skipper.came_out(Some(2), false), [1]);
        assert!(skipper.came_out(Some(3), false).is_empty());
        // Four frames numbered: frame 6 has 4 and 5 before it, unnumbered.
        assert!(!skipper.may_leave(Some(6), 0.04, &selector, 4));
        assert!(!skipper.may_leave(Some(4), 0.04, &selector, 4));
        assert!(skipper.may_leave(Some(5), 0.04, &selector, 4));
        // Two packets at one time make the indices uncertain: leaving stops for good.
        skipper.read(Some(9));
        skipper.read(Some(9));
        assert!(!skipper.may_leave(Some(9), 0.04, &selector, 7));
        assert!(!skipper.may_leave(Some(11), 0.04, &selector, 7));
    }

    /// A YUV 4:2:0 frame of `w×h` whose samples differ from pixel to pixel.
    fn yuv_frame(w: u32, h: u32) -> ff::frame::Video {
        let mut frame = ff::frame::Video::new(ff::format::Pixel::YUV420P, w, h);
        for plane in 0..3 {
            let stride = frame.stride(plane);
            for (i, v) in frame.data_mut(plane).iter_mut().enumerate() {
                let (y, x) = (i / stride, i % stride);
                *v = ((x * 7 + y * 13 + plane * 50) % 256) as u8;
            }
        }
        frame
    }

    #[test]
    fn non_square_pixels_are_made_square_across_the_row() {
        let sar = ff::Rational::new;
        assert_eq!(square_pixels(1440, 1080, sar(4, 3)), (1920, 1080));
        assert_eq!(square_pixels(720, 480, sar(32, 27)), (853, 480));
        assert_eq!(square_pixels(720, 480, sar(8, 9)), (640, 480));
        for unknown in [sar(0, 1), sar(1, 0), sar(1, 1), sar(1000, 999), sar(9, 1)] {
            assert_eq!(square_pixels(640, 360, unknown), (640, 360), "{unknown}");
        }
    }

    #[test]
    fn direct_conversion_matches_ffmpegs_frame() {
        for (w, h) in [(320, 240), (64, 2), (1280, 8)] {
            let frame = yuv_frame(w, h);
            let mut scaler = scaling::Context::get(
                frame.format(),
                w,
                h,
                ff::format::Pixel::RGB24,
                w,
                h,
                scaling::Flags::BILINEAR,
            )
            .unwrap();
            let row = w as usize * 3;
            assert!(row.is_multiple_of(FRAME_ALIGN));
            let direct = scale_into_vec(&mut scaler, &frame, row, h as usize).unwrap();
            let mut rgb = ff::frame::Video::empty();
            scaler.run(&frame, &mut rgb).unwrap();
            let stride = rgb.stride(0);
            let copied: Vec<u8> = (0..h as usize)
                .flat_map(|y| rgb.data(0)[y * stride..y * stride + row].to_vec())
                .collect();
            assert_eq!(direct, copied, "{w}×{h}");
            assert!(
                direct.iter().any(|&v| v != direct[0]),
                "a non-constant frame"
            );
        }
    }
}
