//! The figures page: the assessment figures of a period (the same numbers
//! as `whistlectl figures`, from revisit's `Figures`), per platform and per
//! unit, a chart of the on-time and satisfaction rates, and CSV export. The
//! city desk sees every row; another platform the city's, its own and its
//! units'.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use whistle_domain::PlatformId;
use whistle_proto::v1 as pb;

use crate::App;
use crate::i18n::Lang;
use crate::pages::{self, frame};
use crate::session::Session;
use crate::web::{AppState, lang, signed_desk};

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Period {
    from: Option<String>,
    to: Option<String>,
}

impl Period {
    /// The asked period, else this month so far (to tomorrow), city time.
    fn resolve(&self, app: &App) -> (String, String) {
        pages::period(app, &self.from, &self.to, |today| today.replace_day(1).unwrap_or(today))
    }
}

fn visible(app: &App, s: &Session, row: &pb::FigureRow) -> bool {
    if s.kind == "platform" && s.platform == "city" {
        return true;
    }
    match row.scope.as_str() {
        "city" => true,
        "platform" => row.code == s.platform,
        "unit" => whistle_domain::UnitCode::parse(&row.code)
            .ok()
            .and_then(|u| app.city.unit(&u).map(|u| u.platform.to_string()))
            .is_some_and(|p| p == s.platform),
        _ => false,
    }
}

/// Units read their figures in whistlectl; the page is the desks'.
fn units_refused(app: &App, lang: Lang, s: &Session) -> Option<Response> {
    s.is_unit().then(|| pages::status_page(app, lang, s, &tonic::Status::permission_denied("figures are the desks' page")))
}

/// How a failed figures call reads: the revisit service not knowing this
/// desk's token means its figures are not this desk's to read.
fn refusal(app: &App, lang: Lang, s: &Session, st: tonic::Status) -> Response {
    let st = if st.code() == tonic::Code::Unauthenticated { tonic::Status::permission_denied(st.message().to_owned()) } else { st };
    if st.code() == tonic::Code::InvalidArgument {
        return pages::message(app, lang, Some(s), StatusCode::UNPROCESSABLE_ENTITY, "error-title", st.message());
    }
    pages::status_page(app, lang, s, &st)
}

async fn load(app: &App, s: &Session, from: &str, to: &str) -> Result<pb::FiguresResponse, tonic::Status> {
    let mut revisit = app.backends.revisit(&s.token).map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let req = pb::FiguresRequest { from: from.to_owned(), to: to.to_owned(), scope: "all".into(), code: String::new() };
    let mut r = revisit.figures(req).await?.into_inner();
    r.rows.retain(|row| visible(app, s, row));
    Ok(r)
}

fn rate(r: Option<f64>) -> String {
    r.map(|r| format!("{:.1}%", r * 100.0)).unwrap_or_else(|| "—".into())
}

fn name(app: &App, lang: Lang, row: &pb::FigureRow) -> String {
    match row.scope.as_str() {
        "city" => app.texts.t(lang, "scope-city"),
        "platform" => pages::platform_name(app, lang, &row.code),
        _ => pages::unit_name(app, &row.code),
    }
}

pub(crate) async fn page(State(app): AppState, headers: HeaderMap, Query(p): Query<Period>) -> Response {
    let lang = lang(&headers);
    let s = match signed_desk(&app, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = units_refused(&app, lang, &s) {
        return r;
    }
    let (from, to) = p.resolve(&app);
    let t = |id: &str| app.texts.t(lang, id);
    let (figures, refused) = match load(&app, &s, &from, &to).await {
        Ok(f) => (Some(f), None),
        Err(st) if st.code() == tonic::Code::InvalidArgument => (None, Some(st.message().to_owned())),
        Err(st) => return refusal(&app, lang, &s, st),
    };
    // The days of the period are asked for one by one only when whole days
    // are tallied (each answer is then a read, not a fold of the topic).
    let tallied = figures.as_ref().is_some_and(|f| f.source == "daily tallies");
    let days = if tallied { trend(&app, &s, &from, &to).await } else { Vec::new() };
    let query = format!("from={}&to={}", pages::encode(&from), pages::encode(&to));
    let body = html! {
        h1 { (t("figures-title")) }
        form.filters method="get" action="/figures" {
            div.field { label for="from" { (t("figures-from")) } input #from type="date" name="from" value=(from) required; }
            div.field { label for="to" { (t("figures-to")) } input #to type="date" name="to" value=(to) required; }
            button type="submit" { (t("figures-show")) }
            a href=(format!("/figures.csv?{query}")) download { (t("figures-csv")) }
        }
        @if let Some(why) = refused { div.refused role="alert" { p.rule { (why) } } }
        @if let Some(f) = &figures {
            p.source { (app.texts.args(lang, "figures-source", &[("source", app.texts.code(lang, "source", &f.source.replace(' ', "-")))])) }
            @if f.rows.is_empty() { p.empty { (t("figures-empty")) } } @else {
                (chart(&app, lang, &f.rows))
                (trend_chart(&app, lang, &days))
                (table(&app, lang, &f.rows))
            }
        }
    };
    frame(&app, lang, Some(&s), &t("figures-title"), &format!("/figures?{query}"), body).into_response()
}

const COLUMNS: [&str; 13] = [
    "figures-received",
    "figures-dispatched",
    "figures-completed",
    "figures-on-time",
    "figures-returned",
    "figures-revisited",
    "figures-satisfied",
    "figures-unsatisfied",
    "figures-unreachable",
    "figures-reworked",
    "figures-on-time-rate",
    "figures-satisfaction-rate",
    "figures-feedback-rate",
];

/// The counts of a row, in the order of `COLUMNS`.
fn counts(r: &pb::FigureRow) -> [u64; 10] {
    [r.received, r.dispatched, r.completed, r.on_time, r.returned, r.revisited, r.satisfied, r.unsatisfied, r.unreachable, r.reworked]
}

/// The rates of a row, in the order of `COLUMNS` after the counts.
fn rates(r: &pb::FigureRow) -> [Option<f64>; 3] {
    [r.on_time_rate, r.satisfaction_rate, r.feedback_rate]
}

fn cells(r: &pb::FigureRow) -> Vec<String> {
    counts(r).iter().map(u64::to_string).chain(rates(r).into_iter().map(rate)).collect()
}

fn table(app: &App, lang: Lang, rows: &[pb::FigureRow]) -> Markup {
    html! {
        div.scroll { table #figures {
            thead { tr {
                th scope="col" { (app.texts.t(lang, "figures-scope")) }
                th scope="col" { (app.texts.t(lang, "figures-code")) }
                @for c in COLUMNS { th scope="col" { (app.texts.t(lang, c)) } }
            } }
            tbody { @for r in rows {
                tr data-scope=(r.scope) data-code=(r.code) {
                    td { (app.texts.t(lang, &format!("scope-{}", r.scope))) }
                    th scope="row" { (name(app, lang, r)) }
                    @for (i, c) in cells(r).iter().enumerate() { td data-col=(COLUMNS[i]) { (c) } }
                }
            } }
        } }
    }
}

/// Two bars a unit: on time, satisfied (an SVG drawn here: no chart library).
fn chart(app: &App, lang: Lang, rows: &[pb::FigureRow]) -> Markup {
    let units: Vec<&pb::FigureRow> = rows.iter().filter(|r| r.scope == "unit" && r.dispatched > 0).collect();
    if units.is_empty() {
        return html! {};
    }
    let (label_w, bar_w, line) = (220.0, 400.0, 34.0);
    let height = units.len() as f64 * line + 10.0;
    html! {
        figure.chart {
            figcaption { (app.texts.t(lang, "figures-chart")) }
            svg role="img" aria-label=(app.texts.t(lang, "figures-chart")) viewBox=(format!("0 0 {} {height}", label_w + bar_w + 70.0)) width=(label_w + bar_w + 70.0) height=(height) {
                @for (i, r) in units.iter().enumerate() {
                    @let y = i as f64 * line + 5.0;
                    text x="0" y=(y + 14.0) { (name(app, lang, r)) }
                    rect.on-time x=(label_w) y=(y) width=(bar_w * r.on_time_rate.unwrap_or(0.0)) height="12" {}
                    text x=(label_w + bar_w + 6.0) y=(y + 11.0) { (rate(r.on_time_rate)) }
                    rect.satisfied x=(label_w) y=(y + 14.0) width=(bar_w * r.satisfaction_rate.unwrap_or(0.0)) height="12" {}
                    text x=(label_w + bar_w + 6.0) y=(y + 25.0) { (rate(r.satisfaction_rate)) }
                }
            }
        }
    }
}

/// One day of the trend: the city's on-time and satisfaction rates.
type Day = (time::Date, Option<f64>, Option<f64>);

/// The city's rates day by day over the period (up to 62 days), each day
/// asked for on its own (whole days come from the daily tallies).
async fn trend(app: &App, s: &Session, from: &str, to: &str) -> Vec<Day> {
    let day = time::macros::format_description!("[year]-[month]-[day]");
    let (Ok(start), Ok(end)) = (time::Date::parse(from, day), time::Date::parse(to, day)) else { return Vec::new() };
    let n = (end - start).whole_days();
    if !(2..=62).contains(&n) {
        return Vec::new();
    }
    let asks = (0..n).map(|i| {
        let d = start + time::Duration::days(i);
        async move {
            let Ok(mut revisit) = app.backends.revisit(&s.token) else { return (d, None, None) };
            let next = d.next_day().unwrap_or(d);
            let req = pb::FiguresRequest { from: d.to_string(), to: next.to_string(), scope: "city".into(), code: String::new() };
            match revisit.figures(req).await {
                Ok(r) => r.into_inner().rows.first().map_or((d, None, None), |row| (d, row.on_time_rate, row.satisfaction_rate)),
                Err(_) => (d, None, None),
            }
        }
    });
    futures::future::join_all(asks).await
}

/// Two lines over the days: on-time rate and satisfaction rate, 0–100%.
fn trend_chart(app: &App, lang: Lang, days: &[Day]) -> Markup {
    if days.iter().all(|(_, a, b)| a.is_none() && b.is_none()) {
        return html! {};
    }
    let (left, width, height, top) = (40.0, 640.0, 160.0, 10.0);
    let step = width / (days.len().max(2) - 1) as f64;
    let points = |pick: fn(&Day) -> Option<f64>| {
        days.iter()
            .enumerate()
            .filter_map(|(i, d)| pick(d).map(|r| format!("{:.1},{:.1}", left + i as f64 * step, top + height * (1.0 - r))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let label_every = days.len().div_ceil(8).max(1);
    let title = app.texts.t(lang, "figures-trend");
    html! {
        figure.chart {
            figcaption { (title) }
            div.legend {
                span { span.swatch.on-time {} (app.texts.t(lang, "figures-on-time-rate")) }
                span { span.swatch.satisfied {} (app.texts.t(lang, "figures-satisfaction-rate")) }
            }
            svg role="img" aria-label=(title) viewBox=(format!("0 0 {} {}", left + width + 20.0, height + 40.0)) width=(left + width + 20.0) height=(height + 40.0) {
                line.axis x1=(left) y1=(top) x2=(left) y2=(top + height) {}
                line.axis x1=(left) y1=(top + height) x2=(left + width) y2=(top + height) {}
                text x="0" y=(top + 5.0) { "100%" }
                text x="8" y=(top + height) { "0%" }
                polyline.on-time points=(points(|d| d.1)) {}
                polyline.satisfied points=(points(|d| d.2)) {}
                @for (i, (d, _, _)) in days.iter().enumerate() {
                    @if i % label_every == 0 {
                        text x=(left + i as f64 * step - 14.0) y=(top + height + 18.0) { (format!("{:02}-{:02}", u8::from(d.month()), d.day())) }
                    }
                }
            }
        }
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
}

pub(crate) async fn csv(State(app): AppState, headers: HeaderMap, Query(p): Query<Period>) -> Response {
    let lang = lang(&headers);
    let s = match signed_desk(&app, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = units_refused(&app, lang, &s) {
        return r;
    }
    let (from, to) = p.resolve(&app);
    let f = match load(&app, &s, &from, &to).await {
        Ok(f) => f,
        Err(st) => return refusal(&app, lang, &s, st),
    };
    let mut out = String::from(
        "scope,code,name,received,dispatched,completed,on_time,returned,revisited,satisfied,unsatisfied,unreachable,reworked,on_time_rate,satisfaction_rate,feedback_rate\n",
    );
    for r in &f.rows {
        let fmt = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_default();
        let line: Vec<String> = [r.scope.clone(), r.code.clone(), name(&app, lang, r)]
            .into_iter()
            .chain(counts(r).iter().map(u64::to_string))
            .chain(rates(r).into_iter().map(fmt))
            .collect();
        out += &line.iter().map(|c| csv_field(c)).collect::<Vec<_>>().join(",");
        out.push('\n');
    }
    let safe = |s: &str| s.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect::<String>();
    let disposition = format!("attachment; filename=\"whistle-figures-{}-{}.csv\"", safe(&from), safe(&to));
    let platform = PlatformId::parse(&s.platform).map(|p| p.to_string()).unwrap_or_default();
    tracing::info!(platform = %platform, from = %from, to = %to, rows = f.rows.len(), "figures exported");
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, disposition)], out)
        .into_response()
}
