//! The map: a platform's open tickets on the outlines of its districts and
//! streets (from the city file), drawn here as SVG (no tile server, no map
//! library: the machines may have no internet). A ticket sits at the point
//! the caller gave, else inside the outline of its community, street or
//! district; colour tells its overdue level; tickets closer than a marker
//! are drawn as one cluster, which opens the map zoomed to them.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use std::collections::BTreeMap;
use whistle_domain::PlatformId;
use whistle_domain::city::Outline;
use whistle_proto::v1 as pb;

use crate::App;
use crate::i18n::Lang;
use crate::pages::{self, frame};
use crate::web::{AppState, lang, signed_desk};

#[derive(Debug, Default, Deserialize)]
pub(crate) struct View {
    /// `min_lon,min_lat,max_lon,max_lat`: the part of the map to show.
    bbox: Option<String>,
}

/// A box in longitude and latitude.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bounds {
    min_lon: f64,
    min_lat: f64,
    max_lon: f64,
    max_lat: f64,
}

impl Bounds {
    fn parse(s: &str) -> Option<Bounds> {
        let v: Vec<f64> = s.split(',').map(|x| x.trim().parse().ok()).collect::<Option<_>>()?;
        let [min_lon, min_lat, max_lon, max_lat] = v[..] else { return None };
        let ok = v.iter().all(|x| x.is_finite()) && min_lon < max_lon && min_lat < max_lat;
        ok.then_some(Bounds { min_lon, min_lat, max_lon, max_lat })
    }

    fn of(rings: &[&Outline]) -> Option<Bounds> {
        let pts: Vec<&[f64; 2]> = rings.iter().flat_map(|r| r.iter()).collect();
        if pts.is_empty() {
            return None;
        }
        let fold = |f: fn(f64, f64) -> f64, i: usize, init: f64| pts.iter().map(|p| p[i]).fold(init, f);
        Some(Bounds {
            min_lon: fold(f64::min, 0, f64::INFINITY),
            min_lat: fold(f64::min, 1, f64::INFINITY),
            max_lon: fold(f64::max, 0, f64::NEG_INFINITY),
            max_lat: fold(f64::max, 1, f64::NEG_INFINITY),
        })
    }

    fn grow(self, share: f64) -> Bounds {
        let (dx, dy) = ((self.max_lon - self.min_lon) * share, (self.max_lat - self.min_lat) * share);
        Bounds { min_lon: self.min_lon - dx, min_lat: self.min_lat - dy, max_lon: self.max_lon + dx, max_lat: self.max_lat + dy }
    }

    fn query(&self) -> String {
        format!("{:.5},{:.5},{:.5},{:.5}", self.min_lon, self.min_lat, self.max_lon, self.max_lat)
    }
}

/// From longitude and latitude to the drawing (equirectangular, scaled by
/// the cosine of the middle latitude so a street is not squashed).
struct Projection {
    b: Bounds,
    k: f64,
    cos: f64,
    width: f64,
    height: f64,
}

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 560.0;
/// Markers closer than this (in drawing units) are one cluster.
const CELL: f64 = 30.0;

impl Projection {
    /// Fits the box in at most `WIDTH` by `HEIGHT`, keeping its shape.
    fn new(b: Bounds) -> Projection {
        let cos = ((b.min_lat + b.max_lat) / 2.0).to_radians().cos().max(0.1);
        let k = (WIDTH / ((b.max_lon - b.min_lon) * cos)).min(HEIGHT / (b.max_lat - b.min_lat));
        Projection { b, k, cos, width: (b.max_lon - b.min_lon) * cos * k, height: (b.max_lat - b.min_lat) * k }
    }

    fn xy(&self, lon: f64, lat: f64) -> (f64, f64) {
        ((lon - self.b.min_lon) * self.cos * self.k, (self.b.max_lat - lat) * self.k)
    }

    fn lonlat(&self, x: f64, y: f64) -> (f64, f64) {
        (self.b.min_lon + x / (self.cos * self.k), self.b.max_lat - y / self.k)
    }

    fn path(&self, ring: &Outline) -> String {
        ring.iter()
            .enumerate()
            .map(|(i, p)| {
                let (x, y) = self.xy(p[0], p[1]);
                format!("{}{x:.1},{y:.1}", if i == 0 { "M" } else { "L" })
            })
            .collect::<Vec<_>>()
            .join(" ")
            + " Z"
    }
}

fn centroid(ring: &Outline) -> (f64, f64) {
    let n = ring.len().max(1) as f64;
    (ring.iter().map(|p| p[0]).sum::<f64>() / n, ring.iter().map(|p| p[1]).sum::<f64>() / n)
}

/// The areas drawn for a platform, by code: the city's districts, a
/// district's streets, a street and its communities.
fn areas<'a>(app: &'a App, platform: &str) -> Vec<(String, &'a Outline)> {
    let c = &app.city.config;
    match PlatformId::parse(platform) {
        Ok(PlatformId::City) => c.counties.iter().filter_map(|k| k.outline.as_ref().map(|o| (k.code.clone(), o))).collect(),
        Ok(PlatformId::County(code)) => {
            c.streets.iter().filter(|s| s.county == code).filter_map(|s| s.outline.as_ref().map(|o| (s.code.clone(), o))).collect()
        }
        Ok(PlatformId::Street(code)) => {
            let own = c.streets.iter().filter(|s| s.code == code).filter_map(|s| s.outline.as_ref().map(|o| (s.code.clone(), o)));
            own.chain(c.communities.iter().filter(|m| m.street == code).filter_map(|m| m.outline.as_ref().map(|o| (m.code.clone(), o))))
                .collect()
        }
        Err(_) => Vec::new(),
    }
}

/// Where a ticket is drawn: its point, else a spot inside the outline of
/// its most precise place (spread by its number, so tickets of one street
/// do not sit on one pixel).
fn position(app: &App, v: &pb::TicketView) -> Option<(f64, f64)> {
    if let (Some(lat), Some(lon)) = (v.lat, v.lon) {
        return Some((lon, lat));
    }
    let j = v.jurisdiction.as_ref()?;
    let c = &app.city.config;
    let ring = c
        .communities
        .iter()
        .find(|m| m.code == j.community)
        .and_then(|m| m.outline.as_ref())
        .or_else(|| c.streets.iter().find(|s| s.code == j.street).and_then(|s| s.outline.as_ref()))
        .or_else(|| c.counties.iter().find(|k| k.code == j.county).and_then(|k| k.outline.as_ref()))?;
    let b = Bounds::of(&[ring])?;
    let (cx, cy) = centroid(ring);
    let h = v.ticket_number.bytes().fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619));
    let (fx, fy) = ((h & 0xffff) as f64 / 65535.0 - 0.5, (h >> 16) as f64 / 65535.0 - 0.5);
    Some((cx + fx * (b.max_lon - b.min_lon) * 0.6, cy + fy * (b.max_lat - b.min_lat) * 0.6))
}

/// A ticket where it is drawn.
type Placed<'a> = (&'a pb::TicketView, f64, f64);

fn colour(level: u32) -> &'static str {
    match level {
        0 => "level-0",
        1 => "level-1",
        _ => "level-2",
    }
}

pub(crate) async fn page(State(app): AppState, headers: HeaderMap, Query(q): Query<View>) -> Response {
    let lang = lang(&headers);
    let s = match signed_desk(&app, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    // A unit's map shows what it is working; a desk's, all it holds open.
    let entries = match crate::queue::load(&app, &s, !s.is_unit()).await {
        Ok(e) => e,
        Err(st) => return pages::status_page(&app, lang, &s, &st),
    };
    let areas = areas(&app, if s.is_unit() { "city" } else { &s.platform });
    let whole = Bounds::of(&areas.iter().map(|(_, o)| *o).collect::<Vec<_>>()).map(|b| b.grow(0.03));
    let bounds = q.bbox.as_deref().and_then(Bounds::parse).or(whole);
    let title = app.texts.t(lang, "map-title");
    let body = match bounds {
        None => html! { h1 { (title) } p.empty { (app.texts.t(lang, "map-no-outlines")) } },
        Some(b) => draw(&app, lang, &entries, &areas, b, q.bbox.is_some()),
    };
    let path = match &q.bbox {
        Some(b) => format!("/map?bbox={}", pages::encode(b)),
        None => "/map".to_owned(),
    };
    frame(&app, lang, Some(&s), &title, &path, body).into_response()
}

fn draw(app: &App, lang: Lang, entries: &[pb::QueueEntry], areas: &[(String, &Outline)], b: Bounds, zoomed: bool) -> Markup {
    let t = |id: &str| app.texts.t(lang, id);
    let proj = Projection::new(b);
    // Tickets inside the view, by drawing cell.
    let mut cells: BTreeMap<(i64, i64), Vec<Placed<'_>>> = BTreeMap::new();
    let mut outside = 0;
    for v in entries.iter().filter_map(|e| e.ticket.as_ref()) {
        let Some((lon, lat)) = position(app, v) else {
            outside += 1;
            continue;
        };
        let (x, y) = proj.xy(lon, lat);
        if !(0.0..=proj.width).contains(&x) || !(0.0..=proj.height).contains(&y) {
            outside += 1;
            continue;
        }
        cells.entry(((x / CELL) as i64, (y / CELL) as i64)).or_default().push((v, x, y));
    }
    // A view narrower than a few metres shows every marker on its own.
    let cluster = (b.max_lon - b.min_lon) > 0.0005;
    let shown: usize = cells.values().map(Vec::len).sum();
    html! {
        h1 { (t("map-title")) }
        p.help {
            (app.texts.args(lang, "map-count", &[("count", shown.to_string())]))
            @if outside > 0 { " " (app.texts.args(lang, "map-outside", &[("count", outside.to_string())])) }
            @if zoomed { " " a href="/map" { (t("map-whole")) } }
        }
        ul.legend aria-label=(t("map-legend")) {
            li { span.dot.level-0 {} (t("overdue-0")) }
            li { span.dot.level-1 {} (t("overdue-1")) }
            li { span.dot.level-2 {} (t("overdue-2")) }
            li { span.dot.cluster {} (t("map-cluster")) }
        }
        div.map-layout {
        figure.map {
            svg #map role="img" aria-label=(t("map-title")) viewBox=(format!("0 0 {:.0} {:.0}", proj.width, proj.height)) width=(format!("{:.0}", proj.width)) height=(format!("{:.0}", proj.height)) {
                @for (code, ring) in areas {
                    path.area d=(proj.path(ring)) data-area=(code) {}
                }
                @for (code, ring) in areas {
                    @let (cx, cy) = { let (lon, lat) = centroid(ring); proj.xy(lon, lat) };
                    text.area-name x=(format!("{cx:.0}")) y=(format!("{cy:.0}")) { (app.city.place_name(code).unwrap_or_else(|| code.clone()).rsplit(' ').next().unwrap_or_default()) }
                }
                @for (cell, members) in &cells {
                    @if cluster && members.len() > 1 {
                        (cluster_marker(app, lang, &proj, *cell, members))
                    } @else {
                        @for (v, x, y) in members { (marker(app, lang, v, *x, *y)) }
                    }
                }
            }
        }
        details.map-list open {
            summary { (t("map-list")) }
            ul { @for members in cells.values() { @for (v, _, _) in members {
                li { a href=(format!("/tickets/{}", v.ticket_number)) { (v.ticket_number) } " " (app.texts.code(lang, "category", &v.category)) " · " (pages::place(app, &v.jurisdiction)) @if v.overdue_level > 0 { " · " (t(&format!("overdue-{}", v.overdue_level.min(2)))) } }
            } } }
        }
        }
    }
}

fn marker(app: &App, lang: Lang, v: &pb::TicketView, x: f64, y: f64) -> Markup {
    html! {
        a.marker href=(format!("/tickets/{}", v.ticket_number)) data-ticket=(v.ticket_number) data-level=(v.overdue_level) {
            circle class=(colour(v.overdue_level)) cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r="8" {
                title { (v.ticket_number) " " (app.texts.code(lang, "category", &v.category)) }
            }
        }
    }
}

fn cluster_marker(app: &App, lang: Lang, proj: &Projection, cell: (i64, i64), members: &[Placed<'_>]) -> Markup {
    let n = members.len();
    let level = members.iter().map(|(v, _, _)| v.overdue_level).max().unwrap_or(0);
    let (x, y) = (members.iter().map(|m| m.1).sum::<f64>() / n as f64, members.iter().map(|m| m.2).sum::<f64>() / n as f64);
    // Zoom to the cell, with a margin.
    let (x0, y0) = (cell.0 as f64 * CELL - CELL, cell.1 as f64 * CELL - CELL);
    let (lon0, lat1) = proj.lonlat(x0, y0);
    let (lon1, lat0) = proj.lonlat(x0 + 3.0 * CELL, y0 + 3.0 * CELL);
    let zoom = Bounds { min_lon: lon0, min_lat: lat0, max_lon: lon1, max_lat: lat1 };
    let r = (10.0 + (n as f64).sqrt() * 3.0).min(CELL / 2.0 + 6.0);
    html! {
        a.cluster href=(format!("/map?bbox={}", zoom.query())) data-count=(n) data-level=(level) {
            circle class=(format!("cluster {}", colour(level))) cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r=(format!("{r:.0}")) {
                title { (app.texts.args(lang, "map-cluster-title", &[("count", n.to_string())])) }
            }
            text.count x=(format!("{x:.1}")) y=(format!("{:.1}", y + 4.0)) { (n) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_box_parses_and_projects_both_ways() {
        assert_eq!(Bounds::parse("116.3,39.8,116.5,40.0").map(|b| b.min_lat), Some(39.8));
        assert_eq!(Bounds::parse("116.5,39.8,116.3,40.0"), None, "min must be below max");
        assert_eq!(Bounds::parse("a,b,c,d"), None);
        let p = Projection::new(Bounds::parse("116.3,39.8,116.5,40.0").unwrap());
        let (x, y) = p.xy(116.4, 39.9);
        let (lon, lat) = p.lonlat(x, y);
        assert!((lon - 116.4).abs() < 1e-9 && (lat - 39.9).abs() < 1e-9);
        assert!((x - p.width / 2.0).abs() < 1e-6 && (y - p.height / 2.0).abs() < 1e-6, "the middle is in the middle: {x},{y}");
        assert!(p.width <= WIDTH + 1e-9 && p.height <= HEIGHT + 1e-9, "fits: {} x {}", p.width, p.height);
    }
}
