//! Which faces the embed stage embeds: its fast path.
//!
//! An interview holds a face in place for seconds, and the faces of such a stretch say the
//! same thing about who it is. So the embed stage follows each face from frame to frame (same
//! source and shot, boxes overlapping, as the track stage links them) and embeds:
//! - the first faces of each such chain (three, [`SampleOptions::interval`] / 4 apart, so a
//!   track has the faces its identity is decided from: `--track-best` takes the median of 3),
//! - then one face every `interval` seconds,
//! - and every face that looks unlike each face embedded so far in its chain (its perceptual
//!   hash differs by at least [`SampleOptions::min_hash_bits`] bits, kao-align's rule for a
//!   new crop): a turn of the head, a new expression, new light.
//!
//! The other faces keep a null `embedding`; the track stage links them by their boxes, the
//! match stage gives them their track's identity, and kao-align cuts crops only from
//! embedded faces, so every crop has its embedding. `--embed-interval 0` (kao-extract
//! `--exact`) embeds every face.

/// How the embed stage chooses the faces it embeds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleOptions {
    /// Longest stretch of video, in seconds, between two embedded faces of one chain.
    pub interval: f64,
    /// A face whose 64-bit perceptual hash differs from every embedded face of its chain by
    /// at least this many bits is embedded.
    pub min_hash_bits: u32,
}

/// The default [`SampleOptions::interval`].
pub const DEFAULT_EMBED_INTERVAL: f64 = 1.0;

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions {
            interval: DEFAULT_EMBED_INTERVAL,
            min_hash_bits: crate::align::DEFAULT_MIN_HASH_BITS,
        }
    }
}

/// Faces a chain remembers the hashes of (the most recent embedded ones).
const HASHES: usize = 32;
/// Least box overlap (intersection over union) between a chain's last face and the next.
const MIN_IOU: f32 = 0.3;
/// Longest gap, in seconds, a chain bridges.
const MAX_GAP: f64 = 0.5;

/// One face as the sampler sees it.
#[derive(Clone, Copy, Debug)]
pub struct Seen<'a> {
    /// Its source.
    pub source: &'a str,
    /// Its shot.
    pub shot: u32,
    /// Its time in seconds.
    pub pts: f64,
    /// Its box `[left, top, right, bottom)`.
    pub bbox: [f32; 4],
    /// The perceptual hash of its aligned chip.
    pub hash: u64,
}

/// A face followed from frame to frame.
struct Chain {
    source: String,
    shot: u32,
    /// Time and box of its latest face.
    pts: f64,
    bbox: [f32; 4],
    /// Time of its latest embedded face, how many it has, their hashes.
    embedded_pts: f64,
    embedded: usize,
    hashes: Vec<u64>,
}

/// The chains seen so far. Faces must come in stream order.
#[derive(Default)]
pub struct Sampler {
    chains: Vec<Chain>,
    /// The latest frame (source, time) and the chains its faces continued or started: a
    /// frame whose faces arrive in two calls (split across batches) goes on from there.
    frame: Option<(String, f64)>,
    taken: Vec<bool>,
}

impl Sampler {
    /// A sampler that has seen nothing.
    pub fn new() -> Sampler {
        Sampler::default()
    }

    /// Whether to embed each face of one frame (all of `faces` share source and time).
    pub fn choose(&mut self, options: &SampleOptions, faces: &[Seen<'_>]) -> Vec<bool> {
        let Some(first) = faces.first() else {
            return Vec::new();
        };
        let now = first.pts;
        let same_frame = self
            .frame
            .as_ref()
            .is_some_and(|(source, pts)| source == first.source && *pts == now);
        if !same_frame {
            self.chains.retain(|c| {
                c.source == first.source
                    && now >= c.pts
                    && now - c.pts <= MAX_GAP
                    && faces.iter().any(|f| f.shot == c.shot)
            });
            self.frame = Some((first.source.to_string(), now));
            self.taken = vec![false; self.chains.len()];
        }
        // Each face continues the chain it overlaps most (one face per chain).
        let mut taken = std::mem::take(&mut self.taken);
        let chosen = faces
            .iter()
            .map(|face| {
                let best = self
                    .chains
                    .iter()
                    .enumerate()
                    .filter(|(k, c)| !taken[*k] && c.shot == face.shot)
                    .map(|(k, c)| (k, kao_image::iou(&c.bbox, &face.bbox)))
                    .filter(|(_, overlap)| *overlap >= MIN_IOU)
                    .max_by(|a, b| a.1.total_cmp(&b.1));
                let Some((k, _)) = best else {
                    self.chains.push(Chain {
                        source: face.source.to_string(),
                        shot: face.shot,
                        pts: face.pts,
                        bbox: face.bbox,
                        embedded_pts: face.pts,
                        embedded: 1,
                        hashes: vec![face.hash],
                    });
                    taken.push(true);
                    return true;
                };
                taken[k] = true;
                let chain = &mut self.chains[k];
                chain.pts = face.pts;
                chain.bbox = face.bbox;
                let since = face.pts - chain.embedded_pts;
                let novel = chain
                    .hashes
                    .iter()
                    .all(|h| (h ^ face.hash).count_ones() >= options.min_hash_bits);
                let embed = novel
                    || since >= options.interval
                    || (chain.embedded < 3 && since >= options.interval / 4.0);
                if embed {
                    chain.embedded_pts = face.pts;
                    chain.embedded += 1;
                    if chain.hashes.len() == HASHES {
                        chain.hashes.remove(0);
                    }
                    chain.hashes.push(face.hash);
                }
                embed
            })
            .collect();
        self.taken = taken;
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(pts: f64, x: f32, hash: u64) -> Seen<'static> {
        Seen {
            source: "a.mp4",
            shot: 0,
            pts,
            bbox: [x, 10.0, x + 50.0, 60.0],
            hash,
        }
    }

    #[test]
    fn a_still_face_is_embedded_at_its_start_then_once_per_interval() {
        let options = SampleOptions::default();
        let mut sampler = Sampler::new();
        let embedded: Vec<f64> = (0..100)
            .map(|i| i as f64 * 0.04)
            .filter(|&t| sampler.choose(&options, &[face(t, 100.0, 0)])[0])
            .collect();
        // 0, then two more a quarter interval apart, then every interval.
        let expected = [0.0, 0.28, 0.56, 1.56, 2.56, 3.56];
        assert_eq!(embedded.len(), expected.len(), "{embedded:?}");
        for (a, b) in embedded.iter().zip(expected) {
            assert!((a - b).abs() < 0.021, "{embedded:?}");
        }
    }

    #[test]
    fn a_new_look_a_new_face_a_cut_and_a_gap_are_embedded() {
        let options = SampleOptions::default();
        let mut sampler = Sampler::new();
        assert_eq!(sampler.choose(&options, &[face(0.0, 100.0, 0)]), [true]);
        assert_eq!(
            sampler.choose(&options, &[face(0.04, 101.0, 0b111)]),
            [false]
        );
        // A hash 8 bits away from every embedded one.
        assert_eq!(
            sampler.choose(&options, &[face(0.08, 102.0, 0xFF00)]),
            [true]
        );
        // A second face elsewhere in the picture starts its own chain.
        assert_eq!(
            sampler.choose(&options, &[face(0.12, 103.0, 0), face(0.12, 400.0, 0)]),
            [false, true]
        );
        let mut cut = face(0.16, 103.0, 0);
        cut.shot = 1;
        assert_eq!(sampler.choose(&options, &[cut]), [true]);
        let mut later = face(0.16 + MAX_GAP + 0.1, 103.0, 0);
        later.shot = 1;
        assert_eq!(sampler.choose(&options, &[later]), [true]);
    }

    #[test]
    fn a_frame_split_across_batches_is_chosen_as_one() {
        let options = SampleOptions::default();
        let (mut whole, mut split) = (Sampler::new(), Sampler::new());
        let two = |t: f64| [face(t, 100.0, 0), face(t, 104.0, 0)];
        assert_eq!(whole.choose(&options, &two(0.0)), [true, true]);
        assert_eq!(split.choose(&options, &two(0.0)[..1]), [true]);
        assert_eq!(split.choose(&options, &two(0.0)[1..]), [true]);
        for t in [0.04, 0.08, 0.3] {
            let once = whole.choose(&options, &two(t));
            let mut parts = split.choose(&options, &two(t)[..1]);
            parts.extend(split.choose(&options, &two(t)[1..]));
            assert_eq!(once, parts, "at {t}");
        }
    }
}
