//! HDR video brought to the SDR picture a player shows on an ordinary display.
//!
//! HDR10 and most HDR streaming video carry light as PQ (SMPTE ST 2084: absolute display
//! light up to 10,000 cd/m²); phones record HLG (ARIB STD-B67: relative scene light), both in
//! BT.2020's wide primaries. Read as ordinary video, PQ comes out grey and flat and HLG
//! washed out, and faces in it are found and recognised less often.
//!
//! [`ToneMap`] follows ITU-R BT.2408 and BT.2100, as players' tone mapping does: the signal
//! goes to display light (PQ's EOTF; HLG's inverse OETF and its OOTF for a 1,000 cd/m²
//! display), BT.2020 to BT.709 primaries, HDR reference white (203 cd/m², where diffuse white
//! and the brightest skin sit) to SDR white; light up to three quarters of it passes unchanged
//! and highlights above roll off smoothly so that the content's peak lands on white (scaling
//! all three channels by the same factor, so hues stay); last BT.1886's gamma 2.4 for the SDR
//! display.

use ffmpeg_next as ff;
use rayon::prelude::*;

/// HDR reference white in cd/m² (BT.2408), SDR white after the mapping.
const REFERENCE_WHITE: f32 = 203.0;

/// The peak of PQ video that does not state its own (the usual mastering display) and the
/// display HLG's OOTF is computed for, in cd/m².
const DEFAULT_PEAK: f32 = 1000.0;

/// The share of SDR white (in linear light) up to which light passes unchanged.
const KNEE: f32 = 0.75;

/// BT.2020 to BT.709 primaries in linear light (BT.2087).
const BT2020_TO_BT709: [[f32; 3]; 3] = [
    [1.660_491, -0.587_641, -0.072_850],
    [-0.124_550, 1.1329, -0.008_349],
    [-0.018_151, -0.100_579, 1.118_73],
];

/// BT.2020's luminance weights, for HLG's OOTF.
const BT2020_LUMA: [f32; 3] = [0.2627, 0.6780, 0.0593];

/// PQ's constants (SMPTE ST 2084).
const PQ_M1: f64 = 2610.0 / 16384.0;
const PQ_M2: f64 = 2523.0 / 4096.0 * 128.0;
const PQ_C1: f64 = 3424.0 / 4096.0;
const PQ_C2: f64 = 2413.0 / 4096.0 * 32.0;
const PQ_C3: f64 = 2392.0 / 4096.0 * 32.0;

/// HLG's constants (BT.2100).
const HLG_A: f64 = 0.178_832_77;
const HLG_B: f64 = 0.284_668_92;
const HLG_C: f64 = 0.559_910_73;

/// The tables of functions of light in 0–1 ([`BINS`]) have one entry per 2^−9 step of the
/// value's mantissa, from 2^−24 (darker is black) to 1: 0.2 % apart, finer than 8-bit output
/// needs anywhere on the scale.
const BIN_SHIFT: u32 = 23 - 9;

/// Bins below this index (values under 2^−24) are black.
const FIRST_BIN: i32 = ((1.0f32 / 16_777_216.0).to_bits() >> BIN_SHIFT) as i32;

/// Bins of light in 0–1: the last is 1.0's.
const BINS: usize = ((1.0f32.to_bits() >> BIN_SHIFT) as i32 - FIRST_BIN + 1) as usize;

/// Rows [`ToneMap::apply`] maps on one thread at a time.
const BAND_ROWS: usize = 32;

/// An HDR transfer function kao maps to SDR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transfer {
    /// SMPTE ST 2084 (HDR10, HDR10+, Dolby Vision profiles 8.1 and 8.2).
    Pq,
    /// ARIB STD-B67 (BT.2100 HLG; phones, broadcast, Dolby Vision profile 8.4).
    Hlg,
}

impl Transfer {
    /// The HDR transfer `frame` is tagged with, if any.
    pub(crate) fn of(frame: &ff::frame::Video) -> Option<Transfer> {
        use ff::color::TransferCharacteristic as T;
        match frame.color_transfer_characteristic() {
            T::SMPTE2084 => Some(Transfer::Pq),
            T::ARIB_STD_B67 => Some(Transfer::Hlg),
            _ => None,
        }
    }

    /// The linear light of signal value `e` (0–1): PQ's display light in cd/m²; HLG's scene
    /// light, 0–1.
    fn linear(self, e: f64) -> f64 {
        match self {
            Transfer::Pq => {
                let p = e.clamp(0.0, 1.0).powf(1.0 / PQ_M2);
                10000.0 * ((p - PQ_C1).max(0.0) / (PQ_C2 - PQ_C3 * p)).powf(1.0 / PQ_M1)
            }
            Transfer::Hlg => {
                let e = e.clamp(0.0, 1.0);
                if e <= 0.5 {
                    e * e / 3.0
                } else {
                    (((e - HLG_C) / HLG_A).exp() + HLG_B) / 12.0
                }
            }
        }
    }
}

/// Maps frames of one transfer, primaries and peak to SDR BT.709 RGB24.
pub(crate) struct ToneMap {
    transfer: Transfer,
    /// BT.2020 primaries (anything else is taken as BT.709's).
    wide: bool,
    /// The content's peak as a multiple of reference white.
    peak: f32,
    /// 1/w², w the peak's distance above the knee in units of the knee's distance to white.
    inverse_w2: f32,
    /// Linear light of each 16-bit signal value, in reference whites (HLG: scene light).
    linear: Box<[f32; 1 << 16]>,
    /// HLG's OOTF gain (display light in reference whites per unit of scene light) per bin
    /// of scene luminance (see [`BINS`]).
    hlg_gain: Vec<f32>,
    /// The SDR signal (BT.1886: `y^(1/2.4)`, 0–255) per bin of display light (see [`BINS`]).
    encode: Vec<u8>,
}

impl ToneMap {
    /// A mapping for `transfer`, BT.2020 primaries when `wide`, and content that peaks at
    /// `peak` cd/m² (PQ's MaxCLL; `None`: 1,000).
    pub(crate) fn new(transfer: Transfer, wide: bool, peak: Option<f32>) -> ToneMap {
        // Each bin's middle; the last bin is 1.0 itself.
        let value = |i: usize| {
            let bits = ((i as u32 + FIRST_BIN as u32) << BIN_SHIFT) | (1 << (BIN_SHIFT - 1));
            f64::from(f32::from_bits(bits)).min(1.0)
        };
        let linear: Vec<f32> = (0..=u16::MAX)
            .map(|code| {
                let light = transfer.linear(f64::from(code) / f64::from(u16::MAX));
                match transfer {
                    Transfer::Pq => (light / f64::from(REFERENCE_WHITE)) as f32,
                    Transfer::Hlg => light as f32,
                }
            })
            .collect();
        let linear = linear
            .into_boxed_slice()
            .try_into()
            .expect("one value per code");
        // BT.2100: system gamma 1.2 on a 1,000 cd/m² display.
        let hlg_gain = (0..BINS)
            .map(|i| (f64::from(DEFAULT_PEAK / REFERENCE_WHITE) * value(i).powf(0.2)) as f32)
            .collect();
        let encode = (0..BINS)
            .map(|i| (255.0 * value(i).powf(1.0 / 2.4)).round() as u8)
            .collect();
        let peak = ToneMap::peak_of(transfer, peak);
        ToneMap {
            transfer,
            wide,
            peak,
            inverse_w2: ((1.0 - KNEE) / (peak - KNEE)).powi(2),
            linear,
            hlg_gain,
            encode,
        }
    }

    /// True when this mapping is the one for `transfer`, `wide` and `peak` (see [`ToneMap::new`]).
    pub(crate) fn is_for(&self, transfer: Transfer, wide: bool, peak: Option<f32>) -> bool {
        let other = ToneMap::peak_of(transfer, peak);
        self.transfer == transfer && self.wide == wide && self.peak == other
    }

    /// The content's peak in reference whites: PQ's stated peak (default 1,000 cd/m²), HLG's
    /// display peak.
    fn peak_of(transfer: Transfer, peak: Option<f32>) -> f32 {
        let nits = match transfer {
            Transfer::Pq => peak
                .filter(|p| p.is_finite() && *p > 0.0)
                .unwrap_or(DEFAULT_PEAK),
            Transfer::Hlg => DEFAULT_PEAK,
        };
        nits.min(10000.0) / REFERENCE_WHITE
    }

    /// The factor that rolls off light whose brightest channel is `m` (reference whites):
    /// 1 up to [`KNEE`], then extended Reinhard on the rest, so that the curve keeps slope 1
    /// at the knee and reaches 1 at the peak (and stays there above it). One division, no
    /// branches, so that rows vectorise.
    #[inline(always)]
    fn roll_off_scale(&self, m: f32) -> f32 {
        let span = 1.0 - KNEE;
        let m = m.max(f32::MIN_POSITIVE);
        if self.peak <= 1.0 {
            return if m > 1.0 { 1.0 / m } else { 1.0 };
        }
        // y = KNEE + span · t (1 + t/w²) / (1 + t), with t = (m − KNEE) / span, w the peak's t.
        let t = ((m.min(self.peak) - KNEE) / span).max(0.0);
        let rolled = KNEE * (1.0 + t) + span * t * (1.0 + t * self.inverse_w2);
        let scale = rolled / (m * (1.0 + t));
        if m > KNEE { scale } else { 1.0 }
    }

    /// The bin of light `v` (clamped to 0–1; see [`BINS`]): the top bits of its `f32`, which
    /// is a logarithmic scale. Integer operations only, so rows vectorise.
    #[inline(always)]
    fn bin(v: f32) -> i32 {
        let bits = v.clamp(0.0, 1.0).to_bits() as i32;
        ((bits >> BIN_SHIFT) - FIRST_BIN).clamp(0, BINS as i32 - 1)
    }

    /// Linear BT.709 light (reference whites) of one row of 16-bit little-endian signal
    /// values `codes` (red, green, blue), into `light`.
    fn light_row(&self, codes: [&[u8]; 3], light: &mut [Vec<f32>; 3]) {
        for (plane, out) in codes.iter().zip(light.iter_mut()) {
            out.clear();
            out.extend(
                plane
                    .chunks_exact(2)
                    .map(|c| self.linear[usize::from(u16::from_le_bytes([c[0], c[1]]))]),
            );
        }
        let [r, g, b] = light;
        if self.transfer == Transfer::Hlg {
            for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
                let ys = BT2020_LUMA[0] * *r + BT2020_LUMA[1] * *g + BT2020_LUMA[2] * *b;
                let gain = self.hlg_gain[ToneMap::bin(ys) as usize];
                (*r, *g, *b) = (*r * gain, *g * gain, *b * gain);
            }
        }
        if self.wide {
            let [m0, m1, m2] = BT2020_TO_BT709;
            for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
                let (x, y, z) = (*r, *g, *b);
                *r = m0[0] * x + m0[1] * y + m0[2] * z;
                *g = m1[0] * x + m1[1] * y + m1[2] * z;
                *b = m2[0] * x + m2[1] * y + m2[2] * z;
            }
        }
    }

    /// One row of linear light (`light`) as SDR RGB24 into `line`.
    fn encode_row(&self, light: &[Vec<f32>; 3], bins: &mut [Vec<i32>; 3], line: &mut [u8]) {
        let [r, g, b] = light;
        let [br, bg, bb] = bins;
        for v in [&mut *br, &mut *bg, &mut *bb] {
            v.resize(r.len(), 0);
        }
        // Tone mapping, then the bins of the display light (this loop vectorises).
        let pixels = r.iter().zip(g).zip(b);
        let out = br.iter_mut().zip(bg.iter_mut()).zip(bb.iter_mut());
        for (((r, g), b), ((br, bg), bb)) in pixels.zip(out) {
            let (x, y, z) = (r.max(0.0), g.max(0.0), b.max(0.0));
            let m = x.max(y).max(z);
            let scale = self.roll_off_scale(m);
            *br = ToneMap::bin(x * scale);
            *bg = ToneMap::bin(y * scale);
            *bb = ToneMap::bin(z * scale);
        }
        for (px, ((r, g), b)) in line
            .chunks_exact_mut(3)
            .zip(br.iter().zip(bg.iter()).zip(bb.iter()))
        {
            for (out, bin) in px.iter_mut().zip([r, g, b]) {
                *out = self.encode[*bin as usize];
            }
        }
    }

    /// A planar 16-bit RGB frame (FFmpeg's GBRP16LE: `planes` green, blue, red, each of
    /// `height` rows `strides` bytes apart) of `width × height` pixels as packed SDR RGB24.
    pub(crate) fn apply(
        &self,
        planes: [&[u8]; 3],
        strides: [usize; 3],
        width: usize,
        height: usize,
    ) -> Vec<u8> {
        let mut out = vec![0u8; width * height * 3];
        if width == 0 {
            return out;
        }
        // Bands of rows on rayon's threads: the mapping costs more than the decoding.
        let band = BAND_ROWS * width * 3;
        out.par_chunks_mut(band).enumerate().for_each(|(i, lines)| {
            let mut light = [(); 3].map(|_| Vec::with_capacity(width));
            let mut bins = [(); 3].map(|_| Vec::with_capacity(width));
            for (j, line) in lines.chunks_exact_mut(width * 3).enumerate() {
                let y = i * BAND_ROWS + j;
                let row = |p: usize| &planes[p][y * strides[p]..y * strides[p] + width * 2];
                self.light_row([row(2), row(0), row(1)], &mut light);
                self.encode_row(&light, &mut bins, line);
            }
        });
        out
    }
}

/// The content light level (MaxCLL, cd/m²) a frame states, from its side data.
pub(crate) fn max_content_light(frame: &ff::frame::Video) -> Option<f32> {
    let data = frame.side_data(ff::frame::side_data::Type::ContentLightLevel)?;
    // AVContentLightMetadata: unsigned MaxCLL, unsigned MaxFALL.
    let bytes: [u8; 4] = data.data().get(..4)?.try_into().ok()?;
    let nits = u32::from_ne_bytes(bytes);
    (nits > 0).then_some(nits as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 16-bit signal value of PQ light `nits` (the inverse of the EOTF, ST 2084).
    fn pq_signal(nits: f64) -> u16 {
        let y = (nits / 10000.0).powf(PQ_M1);
        let e = ((PQ_C1 + PQ_C2 * y) / (1.0 + PQ_C3 * y)).powf(PQ_M2);
        (e * 65535.0).round() as u16
    }

    /// One pixel through [`ToneMap::apply`]: 16-bit signal values in, RGB24 out.
    fn pixel(map: &ToneMap, [r, g, b]: [u16; 3]) -> [u8; 3] {
        let planes = [g, b, r].map(u16::to_le_bytes);
        let out = map.apply(planes.each_ref().map(|p| &p[..]), [2; 3], 1, 1);
        [out[0], out[1], out[2]]
    }

    /// One pixel's linear BT.709 light (reference whites) as [`ToneMap::apply`] sees it.
    fn linear_light(map: &ToneMap, code: [u16; 3]) -> [f32; 3] {
        let bytes = code.map(u16::to_le_bytes);
        let mut light = [vec![], vec![], vec![]];
        map.light_row(bytes.each_ref().map(|p| &p[..]), &mut light);
        light.map(|c| c[0])
    }

    #[test]
    fn pq_and_hlg_give_their_published_light_levels() {
        // ST 2084's table: 100 cd/m² at 0.5081, 1,000 at 0.7518, 10,000 at 1.
        for (e, nits) in [
            (0.5081, 100.0),
            (0.7518, 1000.0),
            (1.0, 10000.0),
            (0.0, 0.0),
        ] {
            let got = Transfer::Pq.linear(e);
            assert!((got - nits).abs() <= nits * 0.002 + 1e-9, "PQ {e}: {got}");
        }
        // BT.2408: HLG's 75 % signal is reference white, 203 cd/m² on a 1,000 cd/m² display
        // (scene light 0.2650, through the OOTF). The HLG curve meets at 0.5: 1/12.
        let scene = Transfer::Hlg.linear(0.75);
        assert!((scene - 0.2650).abs() < 5e-4, "{scene}");
        assert!((Transfer::Hlg.linear(0.5) - 1.0 / 12.0).abs() < 1e-6);
        assert!((Transfer::Hlg.linear(1.0) - 1.0).abs() < 1e-6);
        let display = 1000.0 * scene.powf(0.2) * scene;
        assert!((display - 203.0).abs() < 1.0, "{display}");
    }

    #[test]
    fn reference_white_and_greys_land_where_sdr_puts_them() {
        let pq = ToneMap::new(Transfer::Pq, true, None);
        let grey = |map: &ToneMap, code: u16| pixel(map, [code; 3]);
        // Neutral greys keep neutral through the BT.2020 → BT.709 matrix; below the knee they
        // come out at BT.1886's signal for their share of reference white.
        for nits in [1.0, 20.0, 50.0, 100.0, 140.0] {
            let [r, g, b] = grey(&pq, pq_signal(nits));
            let want = 255.0 * (nits / 203.0f64).powf(1.0 / 2.4);
            assert!(r == g && g == b, "{nits}: {r} {g} {b}");
            assert!(
                (f64::from(r) - want).abs() <= 1.0,
                "{nits}: {r} against {want}"
            );
        }
        // Above the knee light rolls off: reference white a little under SDR white, the
        // 1,000 cd/m² peak on it, and brighter than the peak clipped.
        let white = grey(&pq, pq_signal(203.0))[0];
        assert!((235..255).contains(&white), "{white}");
        assert_eq!(grey(&pq, pq_signal(1000.0))[0], 255);
        assert_eq!(grey(&pq, pq_signal(4000.0))[0], 255);
        // HLG's 75 % signal is reference white too, and its 50 % signal is dimmer.
        let hlg = ToneMap::new(Transfer::Hlg, true, None);
        assert_eq!(grey(&hlg, (0.75 * 65535.0) as u16)[0], white);
        assert!(grey(&hlg, 65535 / 2)[0] < 200);
    }

    #[test]
    fn the_roll_off_is_smooth_rising_and_ends_at_the_peak() {
        for peak in [300.0, 1000.0, 4000.0, 10000.0] {
            let map = ToneMap::new(Transfer::Pq, false, Some(peak));
            let top = peak / REFERENCE_WHITE;
            let roll_off = |m: f32| m * map.roll_off_scale(m);
            assert!((roll_off(top) - 1.0).abs() < 1e-5, "{peak}");
            assert!((roll_off(2.0 * top) - 1.0).abs() < 1e-5, "{peak}");
            let mut last = 0.0;
            for i in 0..=1000 {
                let m = top * i as f32 / 1000.0;
                let y = roll_off(m);
                assert!(y >= last && y <= 1.0 + 1e-6, "{peak}: {m} → {y}");
                if m <= KNEE {
                    assert_eq!(y, m);
                }
                last = y;
            }
            // Slope 1 on both sides of the knee.
            let d = 1e-3;
            let slope = (roll_off(KNEE + d) - roll_off(KNEE)) / d;
            assert!((slope - 1.0).abs() < 0.02, "{peak}: {slope}");
        }
        // Content no brighter than reference white is only clipped at white.
        let dim = ToneMap::new(Transfer::Pq, false, Some(150.0));
        assert_eq!(dim.roll_off_scale(0.9), 1.0);
        assert_eq!(dim.roll_off_scale(2.0), 0.5);
    }

    #[test]
    fn saturated_colours_keep_their_hue_and_wide_primaries_narrow() {
        let map = ToneMap::new(Transfer::Pq, false, None);
        // A bright orange over the knee: all channels scaled alike, so red stays the largest
        // and the ratios of the linear values hold.
        let light = [2.0f32, 1.0, 0.25];
        let mut line = [0; 3];
        map.encode_row(
            &light.map(|v| vec![v]),
            &mut [vec![], vec![], vec![]],
            &mut line,
        );
        let [r, g, b] = line;
        assert!(r > g && g > b, "{r} {g} {b}");
        let lin = |v: u8| (f32::from(v) / 255.0).powf(2.4);
        assert!((lin(g) / lin(r) - 0.5).abs() < 0.03, "{r} {g}");
        // BT.2020's pure green is outside BT.709: red and blue go negative and are clipped.
        let wide = ToneMap::new(Transfer::Pq, true, None);
        let code = [0, pq_signal(100.0), 0];
        let green = linear_light(&wide, code);
        assert!(
            green[0] < 0.0 && green[2] < 0.0 && green[1] > 0.5,
            "{green:?}"
        );
        let [r, _, b] = pixel(&wide, code);
        assert_eq!((r, b), (0, 0));
    }
}
