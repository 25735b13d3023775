//! Decoding of videos, still images, network streams and cameras into RGB24 frames.
//!
//! Everything FFmpeg reads goes through one path: container files, still images (png, jpg,
//! webp: one frame), `http(s)://` and `rtsp://` URLs, and v4l2 devices (`/dev/video0`).
//! Frames stream out as they decode: a decoder thread (with FFmpeg's frame threads) feeds the
//! caller's thread, which converts to RGB and hands each frame to a sink. Memory stays bounded
//! whatever the length of the input.
//!
//! The other way, [`Encoder`] writes RGB frames as an H.264 video (kao-preview).

// Four FFI calls are allowed `unsafe` (see docs/architecture.md, "Unsafe code").
#![deny(unsafe_code)]

mod decode;
mod deinterlace;
mod encode;
mod hdr;
mod locate;
mod orient;
mod select;

pub use decode::{
    DecodeError, DecodeOptions, Frame, Probe, STDIN, Summary, decode, probe, set_ffmpeg_log_level,
};
pub use encode::{EncodeError, EncodeOptions, Encoder, container_for};
pub use ffmpeg_next::log::Level as FfmpegLogLevel;
pub use locate::locate;
pub use orient::Orientation;
pub use select::{Selector, Verdict};
