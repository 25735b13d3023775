//! The encoder: RGB24 frames in, an H.264 video (libx264, YUV 4:2:0) in an MP4, MOV or
//! Matroska file out.

use std::path::Path;

use ff::software::scaling;
use ffmpeg_next as ff;

/// How to encode.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodeOptions {
    /// Width of the frames given to [`Encoder::push`], pixels.
    pub width: u32,
    /// Height of the frames given to [`Encoder::push`], pixels.
    pub height: u32,
    /// Frame rate as a fraction (numerator, denominator): the source's average rate.
    pub frame_rate: (i32, i32),
    /// Time base of the timestamps (numerator, denominator): the source stream's, so that
    /// the source's timestamps carry over exactly.
    pub time_base: (i32, i32),
    /// libx264's constant rate factor (0–51; lower is better and larger).
    pub crf: u8,
    /// libx264's preset (`ultrafast` … `veryslow`).
    pub preset: &'static str,
}

/// Why a video could not be written. The message starts with the file's name.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct EncodeError {
    /// The file being written.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// The containers [`Encoder::create`] writes, by file extension: FFmpeg's muxer name.
pub fn container_for(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "mp4" | "m4v" => Some("mp4"),
        "mov" => Some("mov"),
        "mkv" => Some("matroska"),
        _ => None,
    }
}

/// An H.264 encoder writing one video stream into a file.
pub struct Encoder {
    path: String,
    octx: ff::format::context::Output,
    encoder: ff::encoder::Video,
    scaler: scaling::Context,
    /// The RGB frame handed to the scaler (the even-sized part of the input).
    rgb: ff::frame::Video,
    /// The YUV frame handed to the encoder.
    yuv: ff::frame::Video,
    width: u32,
    height: u32,
    time_base: ff::Rational,
    stream_time_base: ff::Rational,
    last_pts: Option<i64>,
    frames: u64,
}

impl Encoder {
    /// Opens `path` for writing a `container` (`mp4`, `mov`, `matroska`: see
    /// [`container_for`]) with one H.264 stream. Frames must have an even size for 4:2:0
    /// chroma: an odd last column or row is left out.
    pub fn create(
        path: &Path,
        container: &str,
        options: &EncodeOptions,
    ) -> Result<Encoder, EncodeError> {
        crate::decode::init();
        let name = path.display().to_string();
        let fail = |message: String| EncodeError {
            path: name.clone(),
            message,
        };
        let ff_fail = |what: &str, e: ff::Error| fail(format!("{what}: {e}"));
        if path.as_os_str().as_encoded_bytes().contains(&0) {
            return Err(fail("the name contains a NUL byte".into()));
        }
        let (width, height) = (options.width & !1, options.height & !1);
        if width == 0 || height == 0 {
            return Err(fail(format!(
                "frames of {}×{} are too small for an H.264 video",
                options.width, options.height
            )));
        }
        let rate = rational(options.frame_rate)
            .ok_or_else(|| fail(format!("invalid frame rate {:?}", options.frame_rate)))?;
        let time_base = rational(options.time_base)
            .ok_or_else(|| fail(format!("invalid time base {:?}", options.time_base)))?;
        let codec = ff::encoder::find_by_name("libx264").ok_or_else(|| {
            fail("FFmpeg was built without libx264, the H.264 encoder (install Debian's ffmpeg and libavcodec-dev: scripts/deps.sh)".into())
        })?;
        let mut octx =
            ff::format::output_as(path, container).map_err(|e| ff_fail("cannot create", e))?;
        let global_header = octx
            .format()
            .flags()
            .contains(ff::format::Flags::GLOBAL_HEADER);
        let mut ctx = ff::codec::context::Context::new_with_codec(codec)
            .encoder()
            .video()
            .map_err(|e| ff_fail("libx264", e))?;
        ctx.set_width(width);
        ctx.set_height(height);
        ctx.set_format(ff::format::Pixel::YUV420P);
        ctx.set_time_base(time_base);
        ctx.set_frame_rate(Some(rate));
        // swscale converts RGB with BT.601's matrix to limited range: say so, so that players
        // convert back with the same matrix.
        ctx.set_colorspace(ff::color::Space::SMPTE170M);
        ctx.set_color_range(ff::color::Range::MPEG);
        if global_header {
            ctx.set_flags(ff::codec::Flags::GLOBAL_HEADER);
        }
        let mut x264 = ff::Dictionary::new();
        x264.set("preset", options.preset);
        x264.set("crf", &options.crf.to_string());
        let encoder = ctx
            .open_as_with(codec, x264)
            .map_err(|e| ff_fail("cannot open libx264", e))?;
        {
            let mut stream = octx
                .add_stream(codec)
                .map_err(|e| ff_fail("cannot add the video stream", e))?;
            stream.set_parameters(&encoder);
            stream.set_time_base(time_base);
            stream.set_avg_frame_rate(rate);
            stream.set_rate(rate);
        }
        let mut muxer = ff::Dictionary::new();
        if matches!(container, "mp4" | "mov") {
            // The index at the front, so that a browser plays the file before it has all of it.
            muxer.set("movflags", "+faststart");
        }
        octx.write_header_with(muxer)
            .map_err(|e| ff_fail("cannot write the header", e))?;
        let stream_time_base = octx.stream(0).map(|s| s.time_base()).unwrap_or(time_base);
        let scaler = scaling::Context::get(
            ff::format::Pixel::RGB24,
            width,
            height,
            ff::format::Pixel::YUV420P,
            width,
            height,
            scaling::Flags::BILINEAR,
        )
        .map_err(|e| ff_fail("cannot convert RGB to YUV", e))?;
        Ok(Encoder {
            path: name,
            octx,
            encoder,
            scaler,
            rgb: ff::frame::Video::new(ff::format::Pixel::RGB24, width, height),
            yuv: ff::frame::Video::new(ff::format::Pixel::YUV420P, width, height),
            width: options.width,
            height: options.height,
            time_base,
            stream_time_base,
            last_pts: None,
            frames: 0,
        })
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) -> EncodeError {
        EncodeError {
            path: self.path.clone(),
            message: format!("{what}: {e}"),
        }
    }

    /// Encodes one frame of `width × height` RGB24 pixels (row-major, packed) shown at `pts`
    /// seconds. Timestamps must increase; one that does not is moved just after the previous.
    pub fn push(&mut self, rgb: &[u8], pts: f64) -> Result<(), EncodeError> {
        let row = self.width as usize * 3;
        if rgb.len() != row * self.height as usize {
            return Err(self.error(
                "frame size",
                format!("{} bytes for {}×{} RGB", rgb.len(), self.width, self.height),
            ));
        }
        let used = self.rgb.width() as usize * 3;
        let stride = self.rgb.stride(0);
        let rows = self.rgb.height() as usize;
        let data = self.rgb.data_mut(0);
        for y in 0..rows {
            data[y * stride..y * stride + used].copy_from_slice(&rgb[y * row..y * row + used]);
        }
        self.scaler
            .run(&self.rgb, &mut self.yuv)
            .map_err(|e| self.error("converting to YUV", e))?;
        let tb = f64::from(self.time_base);
        let mut ts = (pts / tb).round() as i64;
        if let Some(last) = self.last_pts
            && ts <= last
        {
            ts = last + 1;
        }
        self.last_pts = Some(ts);
        self.yuv.set_pts(Some(ts));
        self.yuv.set_kind(ff::picture::Type::None);
        self.encoder
            .send_frame(&self.yuv)
            .map_err(|e| self.error("encoding", e))?;
        self.frames += 1;
        self.write_packets()
    }

    /// Writes the packets the encoder has ready.
    fn write_packets(&mut self) -> Result<(), EncodeError> {
        let mut packet = ff::Packet::empty();
        loop {
            match self.encoder.receive_packet(&mut packet) {
                Ok(()) => {}
                Err(ff::Error::Eof) => return Ok(()),
                Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => {
                    return Ok(());
                }
                Err(e) => return Err(self.error("encoding", e)),
            }
            packet.set_stream(0);
            packet.rescale_ts(self.time_base, self.stream_time_base);
            packet
                .write_interleaved(&mut self.octx)
                .map_err(|e| self.error("writing", e))?;
        }
    }

    /// Flushes the encoder and completes the file; returns the frames written.
    pub fn finish(mut self) -> Result<u64, EncodeError> {
        self.encoder
            .send_eof()
            .map_err(|e| self.error("encoding", e))?;
        self.write_packets()?;
        self.octx
            .write_trailer()
            .map_err(|e| self.error("writing the index", e))?;
        Ok(self.frames)
    }
}

fn rational((num, den): (i32, i32)) -> Option<ff::Rational> {
    (num > 0 && den > 0).then(|| ff::Rational::new(num, den))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ops::ControlFlow;

    #[test]
    fn round_trip_keeps_frames_rate_and_pixels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.mp4");
        // An odd size: the last column and row are left out.
        let (w, h) = (65u32, 49u32);
        let options = EncodeOptions {
            width: w,
            height: h,
            frame_rate: (25, 1),
            time_base: (1, 12800),
            crf: 18,
            preset: "veryfast",
        };
        let mut encoder = Encoder::create(&path, "mp4", &options).unwrap();
        for i in 0..10u32 {
            let mut rgb = vec![0u8; (w * h * 3) as usize];
            for (j, px) in rgb.chunks_mut(3).enumerate() {
                let x = j as u32 % w;
                // Left half green, right half grey moving with the frame.
                if x < w / 2 {
                    px.copy_from_slice(&[0, 200, 0]);
                } else {
                    px.copy_from_slice(&[(100 + i * 5) as u8; 3]);
                }
            }
            encoder.push(&rgb, f64::from(i) / 25.0).unwrap();
        }
        assert_eq!(encoder.finish().unwrap(), 10);
        let input = path.to_str().unwrap();
        let probe = crate::probe(input).unwrap();
        assert_eq!(probe.frame_rate, Some((25, 1)));
        let mut frames = Vec::new();
        crate::decode(input, &crate::DecodeOptions::default(), |f| {
            frames.push(f);
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(frames.len(), 10);
        for (i, f) in frames.iter().enumerate() {
            assert_eq!((f.width, f.height), (64, 48));
            assert!((f.pts - i as f64 / 25.0).abs() < 1e-6, "pts {}", f.pts);
            let at = |x: usize, y: usize| &f.rgb[(y * 64 + x) * 3..(y * 64 + x) * 3 + 3];
            let green = at(10, 20);
            assert!(
                green[0] < 30 && green[1] > 170 && green[2] < 30,
                "{green:?}"
            );
            let grey = at(50, 20);
            let want = 100 + i as i32 * 5;
            assert!(
                grey.iter().all(|&v| (i32::from(v) - want).abs() <= 6),
                "{grey:?} vs {want}"
            );
        }
    }

    #[test]
    fn errors_name_the_file() {
        let options = EncodeOptions {
            width: 64,
            height: 48,
            frame_rate: (25, 1),
            time_base: (1, 25),
            crf: 20,
            preset: "veryfast",
        };
        let e = Encoder::create(Path::new("/no/such/folder/x.mp4"), "mp4", &options)
            .err()
            .unwrap();
        assert!(e.to_string().starts_with("/no/such/folder/x.mp4: "), "{e}");
        let tiny = EncodeOptions {
            width: 1,
            ..options
        };
        let e = Encoder::create(Path::new("x.mp4"), "mp4", &tiny)
            .err()
            .unwrap();
        assert!(e.to_string().contains("too small"), "{e}");
        assert_eq!(container_for(Path::new("a/b.MP4")), Some("mp4"));
        assert_eq!(container_for(Path::new("a/b.avi")), None);
    }
}
