//! Open311 GeoReport v2 with a real HTTP client against the real pipeline:
//! every document of the specification in JSON and in XML with the spec's
//! element and field names, requests followed to closed, the token path,
//! idempotency, every bad input with its status and error list, and the
//! citizen's tracking page.

use std::collections::HashMap;
use std::time::Duration;
use whistle_proto::v1 as pb;
use whistle_tests::{OPEN311_KEY, OPEN311_TOKEN_KEY, Platform};

const WAIT: Duration = Duration::from_secs(60);

struct Api {
    base: String,
    http: reqwest::Client,
}

struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn xml(&self) -> roxmltree::Document<'_> {
        assert!(self.body.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?>"), "the XML declaration: {}", self.body);
        roxmltree::Document::parse(&self.body).unwrap_or_else(|e| panic!("not XML ({e}): {}", self.body))
    }
}

impl Api {
    fn new(p: &Platform) -> Api {
        Api { base: format!("http://{}", p.intake_http), http: reqwest::Client::new() }
    }

    async fn get(&self, path: &str) -> Answer {
        let r = self.http.get(format!("{}{path}", self.base)).send().await.expect("GET");
        let content_type = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        Answer { status: r.status().as_u16(), content_type, body: r.text().await.expect("body") }
    }

    async fn post(&self, path: &str, content_type: &str, body: &str, idempotency: Option<&str>) -> Answer {
        let mut req = self.http.post(format!("{}{path}", self.base)).header("content-type", content_type).body(body.to_owned());
        if let Some(k) = idempotency {
            req = req.header("Idempotency-Key", k);
        }
        let r = req.send().await.expect("POST");
        let content_type = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        Answer { status: r.status().as_u16(), content_type, body: r.text().await.expect("body") }
    }

    async fn submit(&self, format: &str, form: &[(&str, &str)], idempotency: Option<&str>) -> Answer {
        let body = serde_urlencoded::to_string(form).expect("form");
        self.post(&format!("/open311/v2/requests.{format}"), "application/x-www-form-urlencoded; charset=utf-8", &body, idempotency).await
    }
}

/// The element names under `node`, in order.
fn children<'a>(node: roxmltree::Node<'a, 'a>) -> Vec<&'a str> {
    node.children().filter(|c| c.is_element()).map(|c| c.tag_name().name()).collect()
}

fn child<'a>(node: roxmltree::Node<'a, 'a>, name: &str) -> roxmltree::Node<'a, 'a> {
    node.children().find(|c| c.has_tag_name(name)).unwrap_or_else(|| panic!("no <{name}> in <{}>", node.tag_name().name()))
}

fn text<'a>(node: roxmltree::Node<'a, 'a>, name: &str) -> &'a str {
    child(node, name).text().unwrap_or("")
}

fn keys(v: &serde_json::Value) -> Vec<&str> {
    v.as_object().unwrap_or_else(|| panic!("not an object: {v}")).keys().map(String::as_str).collect()
}

const REQUEST_FIELDS: [&str; 17] = [
    "service_request_id",
    "status",
    "status_notes",
    "service_name",
    "service_code",
    "description",
    "agency_responsible",
    "service_notice",
    "requested_datetime",
    "updated_datetime",
    "expected_datetime",
    "address",
    "address_id",
    "zipcode",
    "lat",
    "long",
    "media_url",
];

fn sorted<'a>(v: &[&'a str]) -> Vec<&'a str> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_document_of_the_specification_in_json_and_in_xml() {
    let p = Platform::start("open311-docs").await;
    let api = Api::new(&p);

    // Discovery.
    let x = api.get("/open311/v2/discovery.xml").await;
    assert_eq!((x.status, x.content_type.as_str()), (200, "text/xml; charset=utf-8"));
    let d = x.xml();
    let root = d.root_element();
    assert_eq!((root.tag_name().name(), children(root)), ("discovery", vec!["changeset", "contact", "key_service", "endpoints"]));
    let endpoint = child(child(root, "endpoints"), "endpoint");
    assert_eq!(children(endpoint), ["specification", "url", "changeset", "type", "formats"]);
    assert_eq!(text(endpoint, "specification"), "http://wiki.open311.org/GeoReport_v2");
    assert_eq!(children(child(endpoint, "formats")), ["format", "format"]);
    let j = api.get("/open311/v2/discovery.json").await;
    assert_eq!(j.content_type, "application/json; charset=utf-8");
    let j = j.json();
    assert_eq!(sorted(&keys(&j)), ["changeset", "contact", "endpoints", "key_service"]);
    assert_eq!(j["endpoints"][0]["formats"], serde_json::json!(["text/xml", "application/json"]));

    // The service list: one service per category, with the spec's fields.
    let d = api.get("/open311/v2/services.xml").await;
    let d = d.xml();
    let root = d.root_element();
    assert_eq!(root.tag_name().name(), "services");
    let services: Vec<_> = root.children().filter(|c| c.is_element()).collect();
    assert_eq!(services.len(), 19);
    for s in &services {
        assert_eq!(children(*s), ["service_code", "service_name", "description", "metadata", "type", "keywords", "group"]);
    }
    let water = services.iter().find(|s| text(**s, "service_code") == "water").expect("water");
    assert_eq!((text(*water, "metadata"), text(*water, "type"), text(*water, "group")), ("true", "realtime", "utilities"));
    let j = api.get("/open311/v2/services.json").await.json();
    assert_eq!(j.as_array().map(Vec::len), Some(19), "an array, the root dropped");
    assert_eq!(j[1]["service_code"], "water");
    assert_eq!(j[1]["metadata"], true, "a JSON boolean");

    // A service definition, with a list's values.
    let d = api.get("/open311/v2/services/noise.xml").await;
    let d = d.xml();
    let root = d.root_element();
    assert_eq!((root.tag_name().name(), children(root)), ("service_definition", vec!["service_code", "attributes"]));
    let attribute = child(child(root, "attributes"), "attribute");
    assert_eq!(children(attribute), ["variable", "code", "datatype", "required", "datatype_description", "order", "description", "values"]);
    assert_eq!((text(attribute, "code"), text(attribute, "datatype"), text(attribute, "required")), ("when", "singlevaluelist", "true"));
    let value = child(child(attribute, "values"), "value");
    assert_eq!(children(value), ["key", "name"]);
    let j = api.get("/open311/v2/services/water.json").await.json();
    assert_eq!(j["service_code"], "water", "an object, the root dropped");
    assert_eq!(j["attributes"][1]["code"], "floor");
    assert_eq!(j["attributes"][1]["datatype"], "number");
    assert_eq!(j["attributes"][0]["datatype_description"], serde_json::Value::Null, "an empty element is null");
    assert_eq!(j["attributes"][1]["order"], 2);

    // POST: the answer names the request once it is durable.
    let form = [
        ("api_key", OPEN311_KEY),
        ("service_code", "water"),
        ("lat", "39.93911"),
        ("long", "116.39571"),
        ("address_string", "东城区景山街道景山东街社区3号楼"),
        ("first_name", "三"),
        ("last_name", "张"),
        ("phone", "13800138000"),
        ("email", "zhang@example.cn"),
        ("device_id", "tt222111"),
        ("account_id", "123456"),
        ("description", "楼道水管漏水，已经两天了，电话13800138000"),
        ("media_url", "http://photos.example/leak.jpg"),
        ("attribute[floor]", "3"),
        ("attribute[building]", "3号楼"),
        ("extra_field_of_the_client", "tolerated"),
    ];
    let x = api.submit("xml", &form, None).await;
    assert_eq!(x.status, 200, "{}", x.body);
    let d = x.xml();
    let root = d.root_element();
    assert_eq!(root.tag_name().name(), "service_requests");
    let request = child(root, "request");
    assert_eq!(children(request), ["service_request_id", "service_notice", "account_id"]);
    let number = text(request, "service_request_id").to_owned();
    assert!(number.starts_with("20261123"), "{number}");
    assert!(text(request, "service_notice").contains(&number));
    assert_eq!(text(request, "account_id"), "123456");
    // The number told is a ticket's.
    p.wait_ticket(&number, WAIT, |v| v.ticket_number == number).await;

    // GET one request, then many.
    let v = p.wait_ticket(&number, WAIT, |v| v.state == "assigned").await;
    assert_eq!(v.category, "water", "the service chosen is the category");
    let d = api.get(&format!("/open311/v2/requests/{number}.xml")).await;
    let d = d.xml();
    let request = child(d.root_element(), "request");
    assert_eq!(children(request), REQUEST_FIELDS);
    assert_eq!((text(request, "status"), text(request, "service_code")), ("open", "water"));
    assert_eq!(text(request, "agency_responsible"), "City Water Group");
    assert_eq!(text(request, "description"), "楼道水管漏水，已经两天了，电话***", "a phone typed into the text is masked");
    assert!(
        !d.input_text().contains("13800138000") && !d.input_text().contains("张") && !d.input_text().contains("zhang@"),
        "no personal data"
    );
    assert_eq!((text(request, "lat"), text(request, "long")), ("39.939", "116.396"), "the point rounded to about 100 m");
    let deadline = whistle_proto::to_datetime(v.deadline.as_ref().expect("a deadline")).expect("time");
    let expected = time::OffsetDateTime::parse(text(request, "expected_datetime"), &time::format_description::well_known::Rfc3339)
        .expect("W3C datetime");
    assert_eq!(expected, deadline, "the deadline in force");
    let j = api.get("/open311/v2/requests.json").await.json();
    let list = j.as_array().expect("an array");
    assert_eq!(list.len(), 1);
    assert_eq!(keys(&list[0]), sorted(&REQUEST_FIELDS), "{}", list[0]);
    assert_eq!(list[0]["service_request_id"], number.as_str());
    assert_eq!(list[0]["zipcode"], serde_json::Value::Null);
    let j = api.get(&format!("/open311/v2/requests/{number}.json")).await.json();
    assert_eq!(j.as_array().map(Vec::len), Some(1), "one request is still a list");

    // Errors: a list of {code, description}, in the requested format.
    let x = api.submit("xml", &[("api_key", "wrong"), ("service_code", "water")], None).await;
    assert_eq!(x.status, 403);
    let d = x.xml();
    let error = child(d.root_element(), "error");
    assert_eq!((d.root_element().tag_name().name(), children(error)), ("errors", vec!["code", "description"]));
    assert_eq!(text(error, "code"), "403");
    let j = api.submit("json", &[("api_key", "wrong"), ("service_code", "water")], None).await.json();
    assert_eq!(j[0]["code"], 403);

    // OpenAPI.
    let o = api.get("/open311/v2/openapi.json").await.json();
    assert_eq!(o["openapi"], "3.0.3");
    assert!(o["paths"]["/requests.{format}"]["post"].is_object());
    p.shutdown().await;
}

async fn follow_to_closed(p: &Platform, api: &Api, format: &str) {
    let form = [
        ("api_key", OPEN311_KEY),
        ("service_code", "water"),
        ("address_string", "西城区新街口街道西直门内大街"),
        ("phone", "13900139000"),
        ("description", "Tap water has been brown since this morning"),
    ];
    let a = api.submit(format, &form, None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let number = match format {
        "json" => a.json()[0]["service_request_id"].as_str().expect("id").to_owned(),
        _ => text(child(a.xml().root_element(), "request"), "service_request_id").to_owned(),
    };
    p.wait_ticket(&number, WAIT, |v| v.state == "assigned").await;
    let mut unit = p.desk_as("unit:city-water").await;
    unit.complete(pb::CompleteRequest {
        ticket: number.clone(),
        unit: String::new(),
        result: "Flushed the main; the water is clear".into(),
    })
    .await
    .expect("complete");
    p.wait_ticket(&number, WAIT, |v| v.state == "completed").await;
    let status = |a: &Answer| match format {
        "json" => {
            let j = a.json();
            (j[0]["status"].as_str().unwrap_or("").to_owned(), j[0]["status_notes"].as_str().unwrap_or("").to_owned())
        }
        _ => {
            let d = a.xml();
            let r = child(d.root_element(), "request");
            (text(r, "status").to_owned(), text(r, "status_notes").to_owned())
        }
    };
    let (s, notes) = status(&api.get(&format!("/open311/v2/requests/{number}.{format}")).await);
    assert_eq!(s, "open", "completed but not yet revisited");
    assert!(notes.contains("Flushed the main"), "{notes}");
    // The citizen is satisfied at the revisit: closed.
    p.clock.advance(time::Duration::days(1));
    p.wait_revisit_queued("agent:wang", &number, false).await;
    p.revisit_as("agent:wang")
        .await
        .record(pb::RecordRequest { ticket: number.clone(), outcome: "satisfied".into(), reason: String::new() })
        .await
        .expect("record");
    p.wait_ticket(&number, WAIT, |v| v.state == "closed").await;
    let (s, notes) = status(&api.get(&format!("/open311/v2/requests/{number}.{format}")).await);
    assert_eq!((s.as_str(), notes.as_str()), ("closed", "Flushed the main; the water is clear"));
    let closed = api.get("/open311/v2/requests.json?status=closed&service_code=water").await.json();
    assert!(closed.as_array().expect("list").iter().any(|r| r["service_request_id"] == number.as_str()));
    let open = api.get("/open311/v2/requests.json?status=open&service_code=").await.json();
    assert!(!open.as_array().expect("list").iter().any(|r| r["service_request_id"] == number.as_str()), "an empty parameter is absent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_xml_and_in_json_are_followed_to_closed() {
    let p = Platform::start("open311-follow").await;
    let api = Api::new(&p);
    follow_to_closed(&p, &api, "xml").await;
    follow_to_closed(&p, &api, "json").await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_path_idempotency_and_the_tracking_page() {
    let p = Platform::start("open311-token").await;
    let api = Api::new(&p);
    // A key answered with tokens: the token leads to the request's id.
    let form = [
        ("api_key", OPEN311_TOKEN_KEY),
        ("service_code", "noise"),
        ("attribute[when]", "night"),
        ("address_id", "xc-xinjiekou"),
        ("phone", "13700137000"),
        ("description", "工地夜里施工，吵得睡不着"),
    ];
    let a = api.submit("xml", &form, None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let d = a.xml();
    let request = child(d.root_element(), "request");
    assert_eq!(children(request), ["token", "service_notice", "account_id"], "a token, and then no id: {}", a.body);
    let token = text(request, "token").to_owned();
    let t = api.get(&format!("/open311/v2/tokens/{token}.xml")).await;
    let d = t.xml();
    let r = child(d.root_element(), "request");
    assert_eq!(children(r), ["service_request_id", "token"]);
    let number = text(r, "service_request_id").to_owned();
    assert_eq!(api.get(&format!("/open311/v2/tokens/{token}.json")).await.json()[0]["service_request_id"], number.as_str());
    assert_eq!(api.get("/open311/v2/tokens/00000000-0000-4000-8000-000000000000.json").await.status, 404);

    // A retried POST with the same Idempotency-Key is the same request.
    let form = [
        ("api_key", OPEN311_KEY),
        ("service_code", "gas"),
        ("address_string", "海淀区中关村街道"),
        ("phone", "13600136000"),
        ("description", "Smell of gas in the stairwell"),
    ];
    let first = api.submit("json", &form, Some("retry-1")).await.json();
    let again = api.submit("json", &form, Some("retry-1")).await.json();
    let other = api.submit("json", &form, Some("retry-2")).await.json();
    assert_eq!(first[0]["service_request_id"], again[0]["service_request_id"]);
    assert_ne!(first[0]["service_request_id"], other[0]["service_request_id"]);

    // The citizen's page, in their language, with no personal data.
    let gas = first[0]["service_request_id"].as_str().expect("id").to_owned();
    p.wait_ticket(&gas, WAIT, |v| v.state == "assigned").await;
    let en = api.get(&format!("/track/{gas}?phone=6000")).await;
    assert_eq!(en.status, 200);
    assert!(
        en.body.contains("<html lang=\"en\"") && en.body.contains("Sent to the responsible unit") && en.body.contains("City Gas Group"),
        "{}",
        en.body
    );
    assert!(!en.body.contains("13600136000") && !en.body.contains("中关村街道"), "no phone, no address");
    p.wait_ticket(&number, WAIT, |v| v.platform == "street:xc-xinjiekou").await;
    let zh = api.get(&format!("/track?number={number}&phone=7000")).await;
    assert!(zh.body.contains("<html lang=\"zh\"") && zh.body.contains("工单号"), "{}", zh.body);
    // A wrong phone and an unknown number read the same.
    let wrong = api.get(&format!("/track/{gas}?phone=1111")).await;
    let unknown = api.get("/track/20261123009999?phone=6000").await;
    assert_eq!((wrong.status, unknown.status), (404, 404));
    assert_eq!(wrong.body.replace(&gas, "N"), unknown.body.replace("20261123009999", "N"));
    let form_page = api.get("/track?lang=ru").await;
    assert!(form_page.body.contains("Номер обращения"), "{}", form_page.body);
    p.shutdown().await;
}

/// The good form with some fields changed and some left out.
fn form_with<'a>(good: &HashMap<&'a str, &'a str>, change: &[(&'a str, &'a str)], drop: &[&'a str]) -> Vec<(&'a str, &'a str)> {
    let mut f = good.clone();
    for k in drop {
        f.remove(k);
    }
    for (k, v) in change {
        f.insert(k, v);
    }
    f.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_rate_limited() {
    let p = Platform::start_with("open311-limit", whistle_tests::Options { open311_posts_per_minute: 2, ..Default::default() }).await;
    let api = Api::new(&p);
    let form =
        [("api_key", OPEN311_KEY), ("service_code", "consultation"), ("address_string", "东城区"), ("description", "请问居住证怎么办理？")];
    for _ in 0..2 {
        assert_eq!(api.submit("json", &form, None).await.status, 200);
    }
    let third = api.submit("json", &form, None).await;
    assert_eq!(third.status, 400);
    assert!(third.json()[0]["description"].as_str().unwrap_or("").starts_with("rate limit: at most 2 requests a minute"), "{}", third.body);
    let other_key =
        api.submit("json", &[("api_key", OPEN311_TOKEN_KEY), ("service_code", "consultation"), ("address_string", "东城区")], None).await;
    assert_eq!(other_key.status, 200, "each key has its own limit");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_right_status_and_an_error_list() {
    let p = Platform::start("open311-bad").await;
    let api = Api::new(&p);
    let long = "漏".repeat(5000);
    let good: HashMap<&str, &str> =
        HashMap::from([("api_key", OPEN311_KEY), ("service_code", "water"), ("address_string", "东城区景山街道"), ("description", "漏水")]);
    let with = |change: &[(&'static str, &'static str)], drop: &[&'static str]| form_with(&good, change, drop);
    let long_form = {
        let mut f = good.clone();
        f.insert("description", &long);
        f.into_iter().collect::<Vec<_>>()
    };
    // (what, the form, the status, what the error says)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("no key", with(&[], &["api_key"]), 403, "api_key is missing"),
        ("wrong key", with(&[("api_key", "not-a-key")], &[]), 403, "invalid api_key"),
        ("unknown service_code", with(&[("service_code", "plumbing")], &[]), 404, "service_code \"plumbing\" does not exist"),
        ("missing location", with(&[], &["address_string"]), 400, "a location is required"),
        ("lat of 91", with(&[("lat", "91"), ("long", "116.4")], &[]), 400, "lat: latitude 91 is outside -90..90"),
        ("lat without long", with(&[("lat", "39.9")], &[]), 400, "long: latitude given without longitude"),
        ("5,000 characters", long_form, 400, "description has 5000 characters; the limit is 4000"),
        ("a required attribute", with(&[("service_code", "noise")], &[]), 400, "attribute[when] is required"),
        ("another jurisdiction", with(&[("jurisdiction_id", "elsewhere.example")], &[]), 404, "not served here"),
    ];
    for (what, form, status, says) in cases {
        for format in ["json", "xml"] {
            let a = api.submit(format, &form, None).await;
            assert_eq!(a.status, status, "{what} ({format}): {}", a.body);
            let description = match format {
                "json" => a.json()[0]["description"].as_str().unwrap_or("").to_owned(),
                _ => text(child(a.xml().root_element(), "error"), "description").to_owned(),
            };
            assert!(description.contains(says), "{what} ({format}): {description}");
        }
    }
    let malformed = api.post("/open311/v2/requests.json", "application/x-www-form-urlencoded", "api_key=%ZZ&&=", None).await;
    assert_eq!(malformed.status, 400, "{}", malformed.body);
    assert!(malformed.json()[0]["description"].as_str().unwrap_or("").contains("not a valid form"), "{}", malformed.body);
    let wrong_type = api.post("/open311/v2/requests.json", "application/json", r#"{"service_code": "water"}"#, None).await;
    assert_eq!(wrong_type.status, 400);
    assert!(wrong_type.json()[0]["description"].as_str().unwrap_or("").contains("Content-Type must be application/x-www-form-urlencoded"));
    let huge = format!("api_key={OPEN311_KEY}&service_code=water&address_string=x&description={}", "a".repeat(100_000));
    let too_big = api.post("/open311/v2/requests.xml", "application/x-www-form-urlencoded", &huge, None).await;
    assert_eq!(too_big.status, 400);
    assert!(too_big.body.contains("larger than 65536 bytes"), "{}", too_big.body);
    let unknown = api.get("/open311/v2/requests/20991231000001.xml").await;
    assert_eq!(unknown.status, 404);
    let unknown_service = api.get("/open311/v2/services/plumbing.json").await;
    assert_eq!(unknown_service.status, 404);
    let no_format = api.get("/open311/v2/services").await;
    assert_eq!(no_format.status, 404);
    assert!(no_format.body.contains("<errors>"), "an unknown format is answered in XML: {}", no_format.body);
    let bad_dates = api.get("/open311/v2/requests.json?start_date=2026-01-01T00:00:00Z&end_date=2026-06-01T00:00:00Z").await;
    assert_eq!(bad_dates.status, 400);
    assert!(bad_dates.body.contains("more than 90 days"));
    let bad_status = api.get("/open311/v2/requests.json?status=pending").await;
    assert_eq!(bad_status.status, 400);
    p.shutdown().await;
}
