//! The page: which faces it shows (the [`Plan`]), and the HTML itself.

use std::collections::BTreeMap;
use std::fmt::Write;

use anyhow::Result;
use kao_analysis::charts::{self, TimelinePoint};
use kao_analysis::polars::prelude::{AnyValue, DataFrame, DataType};
use kao_analysis::summary::{NO_MATCH, person};
use kao_analysis::{Face, Manifest};
use kao_record::schema::Provenance;

use crate::thumbs::Thumbs;

/// One track as the page shows it: indices into the face list.
pub struct Track {
    /// Video of the track.
    pub source: String,
    /// Track id (`None`: faces of a run without kao-track, one group per video).
    pub id: Option<u64>,
    /// Every face of the track, in time order.
    pub faces: Vec<usize>,
    /// Faces with a crop written.
    pub kept: Vec<usize>,
    /// The rejected faces shown, spread over the track.
    pub rejected_shown: Vec<usize>,
}

/// What the page shows: identities (matched ones by number of faces, then faces that matched
/// no one), each with its largest tracks.
pub struct Plan {
    /// (identity, tracks shown, tracks left out).
    pub identities: Vec<(String, Vec<Track>, usize)>,
}

/// A track of one video: `(source, track_id)`.
type TrackKey = (String, Option<u64>);

impl Plan {
    /// Groups `faces` by identity and track; keeps `max_tracks` tracks per identity and
    /// `max_rejected` rejected faces per track.
    pub fn new(faces: &[Face], max_tracks: usize, max_rejected: usize) -> Plan {
        // identity → (video, track) → face indices
        let mut groups: BTreeMap<String, BTreeMap<TrackKey, Vec<usize>>> = BTreeMap::new();
        for (i, f) in faces.iter().enumerate() {
            let who = person(f.identity.as_deref(), f.cluster_id);
            groups
                .entry(who)
                .or_default()
                .entry((f.source.clone(), f.track_id))
                .or_default()
                .push(i);
        }
        let mut identities: Vec<(String, Vec<Track>, usize)> = groups
            .into_iter()
            .map(|(who, tracks)| {
                let mut tracks: Vec<Track> = tracks
                    .into_iter()
                    .map(|((source, id), mut members)| {
                        members.sort_by(|&a, &b| {
                            faces[a]
                                .pts
                                .total_cmp(&faces[b].pts)
                                .then(faces[a].face_index.cmp(&faces[b].face_index))
                        });
                        let kept = members
                            .iter()
                            .copied()
                            .filter(|&i| faces[i].crop_path.is_some())
                            .collect();
                        let rejected: Vec<usize> = members
                            .iter()
                            .copied()
                            .filter(|&i| faces[i].crop_path.is_none())
                            .collect();
                        Track {
                            source,
                            id,
                            rejected_shown: spread(&rejected, max_rejected),
                            faces: members,
                            kept,
                        }
                    })
                    .collect();
                tracks.sort_by(|a, b| {
                    b.kept
                        .len()
                        .cmp(&a.kept.len())
                        .then(b.faces.len().cmp(&a.faces.len()))
                });
                let left_out = tracks.len().saturating_sub(max_tracks);
                tracks.truncate(max_tracks);
                // Shown in time order.
                tracks.sort_by(|a, b| {
                    a.source
                        .cmp(&b.source)
                        .then(faces[a.faces[0]].pts.total_cmp(&faces[b.faces[0]].pts))
                });
                (who, tracks, left_out)
            })
            .collect();
        let size = |t: &[Track]| t.iter().map(|t| t.faces.len()).sum::<usize>();
        // Named people, then clusters of unknown people, then faces in neither.
        let rank = |who: &str| (who == NO_MATCH, who.starts_with("unknown/"));
        identities.sort_by(|a, b| {
            rank(&a.0)
                .cmp(&rank(&b.0))
                .then(size(&b.1).cmp(&size(&a.1)))
                .then(a.0.cmp(&b.0))
        });
        Plan { identities }
    }

    /// Every face the page shows a rejected thumbnail for.
    pub fn rejected_shown(&self) -> impl Iterator<Item = usize> + '_ {
        self.identities
            .iter()
            .flat_map(|(_, tracks, _)| tracks.iter().flat_map(|t| t.rejected_shown.iter().copied()))
    }

    /// Every face with a crop on the page.
    pub fn kept(&self) -> impl Iterator<Item = usize> + '_ {
        self.identities
            .iter()
            .flat_map(|(_, tracks, _)| tracks.iter().flat_map(|t| t.kept.iter().copied()))
    }
}

/// At most `n` of `items`, evenly spread from first to last.
fn spread(items: &[usize], n: usize) -> Vec<usize> {
    if items.len() <= n {
        return items.to_vec();
    }
    if n == 0 {
        return Vec::new();
    }
    if n == 1 {
        return vec![items[items.len() / 2]];
    }
    (0..n)
        .map(|k| items[k * (items.len() - 1) / (n - 1)])
        .collect()
}

/// Everything the page is made of.
pub struct Page<'a> {
    pub manifest: &'a Manifest,
    pub faces: &'a [Face],
    pub people: &'a DataFrame,
    pub videos: &'a DataFrame,
    pub rejected: &'a DataFrame,
    pub plan: &'a Plan,
    pub thumbs: &'a Thumbs,
    /// The link to the run's preview video (kao-preview), when there is one.
    pub preview: Option<&'a str>,
}

const STYLE: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{margin:0 0 4px}h2{margin-top:32px;border-bottom:1px solid #ddd}
.meta{color:#666}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}
th{background:#f4f4f4}section.identity{margin-top:24px}
.track{margin:10px 0 18px;padding:8px;border-left:3px solid #9ab}
.track h4{margin:0 0 6px;font-weight:normal;color:#444}
.thumbs{display:flex;flex-wrap:wrap;gap:6px}
figure{margin:0;font-size:11px;color:#555;text-align:center}
figure img{display:block;border:2px solid #4a4;border-radius:3px}
figure.rejected img{border-color:#c66;opacity:.85}
figure.rejected .nothumb{display:flex;align-items:center;justify-content:center;border:2px dashed #c66;color:#c66}
.reason{font-weight:bold;color:#a33}.more{color:#666;margin:4px 0 0}
svg{max-width:100%;height:auto}video.preview{max-width:100%;max-height:480px}";

/// Counts what loaded, for a browser test: `data-thumbs-loaded`, `data-thumbs-broken` and
/// `data-errors` on `<body>`.
const SCRIPT: &str = "
var kaoErrors=[];window.addEventListener('error',function(e){kaoErrors.push(String(e.message||e.type))},true);
window.addEventListener('load',function(){var ok=0,bad=0;document.querySelectorAll('img.thumb').forEach(function(i){if(i.complete&&i.naturalWidth>0)ok++;else bad++});
document.body.dataset.thumbsLoaded=ok;document.body.dataset.thumbsBroken=bad;document.body.dataset.errors=kaoErrors.length});";

/// The whole page.
pub fn render(page: &Page<'_>) -> Result<String> {
    let m = page.manifest;
    let mut h = String::new();
    let title = format!("kao report: {}", m.dir().display());
    writeln!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>",
        esc(&title)
    )?;
    writeln!(
        h,
        "<style>{STYLE}</style><script>{SCRIPT}</script></head><body>"
    )?;
    writeln!(h, "<h1>kao report</h1>")?;
    let sources: std::collections::BTreeSet<&str> =
        page.faces.iter().map(|f| f.source.as_str()).collect();
    writeln!(
        h,
        "<p class=\"meta\">{} · {} faces in {} video(s) · frames processed: {} · embeddings: {} ({} distance) · {}</p>",
        esc(&m.path.display().to_string()),
        page.faces.len(),
        sources.len(),
        esc(m.frames_processed().unwrap_or("not recorded")),
        esc(m.embedder().unwrap_or("dlib-resnet")),
        match m.metric() {
            kao_analysis::Metric::Euclidean => "Euclidean",
            kao_analysis::Metric::Cosine => "cosine",
        },
        esc(&stages(m))
    )?;
    if let Some(href) = page.preview {
        writeln!(
            h,
            "<h2>Preview</h2><p><a href=\"{0}\">{0}</a>: every face drawn on the video \
             (kao-preview): solid green boxes for matched faces, dashed orange for the others, \
             with name or cluster, similarity and track.</p>\
             <video class=\"preview\" controls preload=\"metadata\" src=\"{0}\"></video>",
            esc(href)
        )?;
    }
    writeln!(h, "<h2>People</h2>{}", html_table(page.people))?;
    writeln!(h, "<h2>Videos</h2>{}", html_table(page.videos))?;
    writeln!(
        h,
        "<h2>Faces without a crop</h2>{}",
        html_table(page.rejected)
    )?;

    let threshold = m.match_threshold();
    writeln!(h, "<h2>Distances</h2>")?;
    let mut groups: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    for f in page.faces {
        if let Some(d) = f.distance {
            groups
                .entry(person(f.identity.as_deref(), f.cluster_id))
                .or_default()
                .push(d);
        }
    }
    let groups: Vec<(String, Vec<f32>)> = groups.into_iter().collect();
    h.push_str(&charts::svg(900, 320, |area| {
        charts::distance_histogram(
            area,
            "distance to the nearest reference, per identity",
            &groups,
            threshold,
            40,
        )
    })?);
    writeln!(h, "<h2>Timeline</h2>")?;
    for source in &sources {
        let in_video: Vec<&Face> = page.faces.iter().filter(|f| f.source == *source).collect();
        let points: Vec<TimelinePoint> = in_video
            .iter()
            .filter_map(|f| {
                Some(TimelinePoint {
                    seconds: f.pts,
                    distance: f.distance?,
                    label: person(f.identity.as_deref(), f.cluster_id),
                })
            })
            .collect();
        let cuts = shot_starts(&in_video);
        let caption = format!(
            "{} — distance over time, shot cuts in grey",
            file_name(source)
        );
        h.push_str(&charts::svg(900, 280, |area| {
            charts::timeline(area, &caption, &points, threshold, &cuts)
        })?);
    }

    writeln!(h, "<h2>Faces by identity and track</h2>")?;
    writeln!(
        h,
        "<p class=\"meta\">Green: crops written. Red: faces without a crop, with the reason (at most a few per track, spread over it).</p>"
    )?;
    for (who, tracks, left_out) in &page.plan.identities {
        let crops: usize = tracks.iter().map(|t| t.kept.len()).sum();
        writeln!(
            h,
            "<section class=\"identity\"><h3>{} <small>· {} track(s) shown · {} crop(s)</small></h3>",
            esc(who),
            tracks.len(),
            crops
        )?;
        for t in tracks {
            track_html(&mut h, page, t)?;
        }
        if *left_out > 0 {
            writeln!(
                h,
                "<p class=\"more\">{left_out} smaller track(s) not shown (--max-tracks).</p>"
            )?;
        }
        writeln!(h, "</section>")?;
    }
    writeln!(h, "</body></html>")?;
    Ok(h)
}

fn track_html(h: &mut String, page: &Page<'_>, t: &Track) -> Result<()> {
    let faces = page.faces;
    let (first, last) = (
        &faces[t.faces[0]],
        &faces[*t.faces.last().unwrap_or(&t.faces[0])],
    );
    let mut distances: Vec<f32> = t.faces.iter().filter_map(|&i| faces[i].distance).collect();
    distances.sort_by(f32::total_cmp);
    let median = distances
        .get(distances.len() / 2)
        .map(|d| format!(" · median distance {d:.3}"))
        .unwrap_or_default();
    let id =
        t.id.map(|i| format!("track {i}"))
            .unwrap_or_else(|| "no track".into());
    writeln!(
        h,
        "<div class=\"track\"><h4>{} · {} · {:.2}–{:.2} s · {} face(s) · {} crop(s){}</h4><div class=\"thumbs\">",
        id,
        esc(file_name(&t.source)),
        first.pts,
        last.pts,
        t.faces.len(),
        t.kept.len(),
        median
    )?;
    for &i in &t.kept {
        let f = &faces[i];
        let caption = format!(
            "f{:06} · {:.2} s{}",
            f.frame_index,
            f.pts,
            f.distance.map(|d| format!(" · {d:.3}")).unwrap_or_default()
        );
        let tip = format!(
            "{} · sharpness {:.0}",
            f.crop_path.as_deref().unwrap_or(""),
            f.sharpness.unwrap_or(f32::NAN)
        );
        figure(
            h,
            "kept",
            page.thumbs.get(i),
            &caption,
            &tip,
            page.thumbs.size,
        )?;
    }
    for &i in &t.rejected_shown {
        let f = &faces[i];
        let reason = f.reject_reason.as_deref().unwrap_or("no crop");
        let caption = format!(
            "<span class=\"reason\">{}</span> · f{:06}",
            esc(reason),
            f.frame_index
        );
        let tip = format!(
            "{} at {:.2} s · distance {} · sharpness {:.0} · yaw {:.0}°",
            reason,
            f.pts,
            f.distance
                .map(|d| format!("{d:.3}"))
                .unwrap_or_else(|| "–".into()),
            f.sharpness.unwrap_or(f32::NAN),
            f.yaw.unwrap_or(f32::NAN)
        );
        figure_raw(
            h,
            "rejected",
            page.thumbs.get(i),
            &caption,
            &tip,
            page.thumbs.size,
        )?;
    }
    writeln!(h, "</div>")?;
    let hidden: Vec<usize> = t
        .faces
        .iter()
        .copied()
        .filter(|i| faces[*i].crop_path.is_none() && !t.rejected_shown.contains(i))
        .collect();
    if !hidden.is_empty() {
        let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
        for i in &hidden {
            *reasons
                .entry(faces[*i].reject_reason.as_deref().unwrap_or("no crop"))
                .or_default() += 1;
        }
        let list: Vec<String> = reasons
            .iter()
            .map(|(r, n)| format!("{} {n}", esc(r)))
            .collect();
        writeln!(
            h,
            "<p class=\"more\">+ {} more without a crop: {}</p>",
            hidden.len(),
            list.join(", ")
        )?;
    }
    writeln!(h, "</div>")?;
    Ok(())
}

fn figure(
    h: &mut String,
    class: &str,
    thumb: Option<&str>,
    caption: &str,
    tip: &str,
    size: u32,
) -> Result<()> {
    figure_raw(h, class, thumb, &esc(caption), tip, size)
}

/// A thumbnail with an already-escaped caption; without a thumbnail, an empty box the same size.
fn figure_raw(
    h: &mut String,
    class: &str,
    thumb: Option<&str>,
    caption_html: &str,
    tip: &str,
    size: u32,
) -> Result<()> {
    let image = match thumb {
        Some(data) => format!(
            "<img class=\"thumb\" src=\"{data}\" alt=\"\" title=\"{}\">",
            esc(tip)
        ),
        None => format!(
            "<div class=\"nothumb\" style=\"width:{size}px;height:{size}px\" title=\"{}\">no picture</div>",
            esc(tip)
        ),
    };
    writeln!(
        h,
        "<figure class=\"{class}\">{image}<figcaption>{caption_html}</figcaption></figure>"
    )?;
    Ok(())
}

/// Times where a new shot starts (the first face of each shot after the first).
fn shot_starts(faces: &[&Face]) -> Vec<f64> {
    let mut starts: BTreeMap<u32, f64> = BTreeMap::new();
    for f in faces {
        if let Some(s) = f.shot {
            let t = starts.entry(s).or_insert(f.pts);
            *t = t.min(f.pts);
        }
    }
    starts.into_iter().skip(1).map(|(_, t)| t).collect()
}

fn provenance(m: &Manifest) -> Vec<Provenance> {
    m.metadata
        .get(kao_record::schema::META_PROVENANCE)
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default()
}

/// "kao-decode → kao-detect (blazeface-full) → …" from the provenance.
fn stages(m: &Manifest) -> String {
    let list: Vec<String> = provenance(m)
        .iter()
        .map(|p| match &p.model {
            Some(model) => format!("{} ({})", p.stage, model.name),
            None => p.stage.clone(),
        })
        .collect();
    if list.is_empty() {
        "no provenance".into()
    } else {
        list.join(" → ")
    }
}

fn file_name(source: &str) -> &str {
    source.rsplit(['/', '\\']).next().unwrap_or(source)
}

/// Escapes text for HTML content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The cells of `table` as text: floats with 3 decimals, nulls empty.
fn cells(table: &DataFrame) -> (Vec<String>, Vec<Vec<String>>) {
    let headers = table
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    let rows = (0..table.height())
        .map(|i| {
            table
                .columns()
                .iter()
                .map(|c| match c.get(i) {
                    Ok(AnyValue::Null) | Err(_) => String::new(),
                    Ok(v) if v.get_str().is_some() => v.get_str().unwrap_or_default().to_string(),
                    Ok(v) if matches!(c.dtype(), DataType::Float32 | DataType::Float64) => v
                        .extract::<f64>()
                        .map(|x| format!("{x:.3}"))
                        .unwrap_or_default(),
                    Ok(v) => v.to_string(),
                })
                .collect()
        })
        .collect();
    (headers, rows)
}

/// `table` as aligned plain text: text columns left-aligned, numbers right-aligned.
pub fn text_table(table: &DataFrame) -> String {
    let (headers, rows) = cells(table);
    if rows.is_empty() {
        return "(none)".into();
    }
    let numeric: Vec<bool> = table
        .columns()
        .iter()
        .map(|c| c.dtype().is_primitive_numeric())
        .collect();
    let widths: Vec<usize> = (0..headers.len())
        .map(|j| {
            rows.iter()
                .map(|r| r[j].chars().count())
                .chain([headers[j].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| -> String {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(j, c)| {
                if numeric[j] {
                    format!("{c:>w$}", w = widths[j])
                } else {
                    format!("{c:<w$}", w = widths[j])
                }
            })
            .collect();
        parts.join("  ").trim_end().to_string()
    };
    let mut out = line(&headers);
    out.push('\n');
    out.push_str(
        &widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("  "),
    );
    for r in &rows {
        out.push('\n');
        out.push_str(&line(r));
    }
    out
}

/// `table` as an HTML table.
fn html_table(table: &DataFrame) -> String {
    let (headers, rows) = cells(table);
    if rows.is_empty() {
        return "<p class=\"meta\">none</p>".into();
    }
    let mut h = String::from("<table><tr>");
    for c in &headers {
        let _ = write!(h, "<th>{}</th>", esc(c));
    }
    h.push_str("</tr>");
    for r in &rows {
        h.push_str("<tr>");
        for c in r {
            let _ = write!(h, "<td>{}</td>", esc(c));
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_takes_first_last_and_evenly_between() {
        let items: Vec<usize> = (0..10).collect();
        assert_eq!(spread(&items, 3), vec![0, 4, 9]);
        assert_eq!(spread(&items, 0), Vec::<usize>::new());
        assert_eq!(spread(&items[..2], 5), vec![0, 1]);
        assert_eq!(spread(&items, 1), vec![5]);
    }

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
