//! The console in a real browser (Debian's Chromium through chromedriver),
//! on the real broker and Redis, as the desks use it: a street desk sees a
//! noise complaint arrive live and whistles it, the district dispatches it
//! to its bureau, the bureau acknowledges and completes it, and the city's
//! figures count the completion; a street never sees another street's
//! ticket, not even by typing its address; a form without its CSRF token
//! is refused and changes nothing. The pages' screenshots (for the README)
//! are written to `target/browser/`.

use std::time::Duration;
use whistle_tests::browser::{Browser, artifacts_dir};
use whistle_tests::{Options, Platform, request, token_for};

const WAIT: Duration = Duration::from_secs(60);
const STREET: &str = "street:xc-xinjiekou";
const OTHER_STREET: &str = "street:xc-jinrongjie";
const COUNTY: &str = "county:xicheng";

async fn sign_in(b: &Browser, base: &str, caller: &str) {
    b.goto(&format!("{base}/signin")).await;
    b.type_into("#token", &token_for(caller)).await;
    b.click("form[action='/signin'] button[type=submit]").await;
    b.wait_text("#live", "", WAIT).await;
}

async fn sign_out(b: &Browser) {
    b.click("form[action='/signout'] button").await;
    b.wait_text("#token", "", WAIT).await;
}

/// Opens a ticket from the queue, by clicking its number.
async fn open_from_queue(b: &Browser, number: &str, group: &str) {
    b.wait_text(&format!("#queue tr[data-group={group}]"), number, WAIT).await;
    b.click(&format!("#queue a[href='/tickets/{number}']")).await;
    b.wait_text("h1", number, WAIT).await;
}

/// Fills and submits the form of `action`; waits for the page to say it was done.
async fn act(b: &Browser, action: &str, fields: &[(&str, &str)]) {
    for (css, text) in fields {
        b.type_into(css, text).await;
    }
    b.click(&format!("form[data-action={action}] button[type=submit]")).await;
    b.wait_text(".done", "", WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noise_complaint_goes_live_to_the_street_is_whistled_dispatched_by_the_district_completed_and_counted() {
    let mut p = Platform::start_with("console", Options { platforms: vec![STREET, COUNTY], ..Options::default() }).await;
    let base = p.start_console().await;
    let shots = artifacts_dir();
    let b = Browser::start().await;
    b.scenario("console-flow", async {
        // The street desk signs in and watches its queue; the page is never reloaded.
        b.goto(&format!("{base}/queue")).await;
        b.wait_text("h1", "登录", WAIT).await;
        b.screenshot(&shots.join("signin.png"), false).await;
        sign_in(&b, &base, STREET).await;
        b.wait_text("#live-state.on", "", WAIT).await;
        b.run("window.notReloaded = true;", serde_json::json!([])).await;
        let t =
            p.intake().await.submit_request(request("晚上施工噪音扰民，吵得睡不着", "西城区新街口")).await.expect("submit").into_inner();
        let row = b.wait_text("#queue tr", &t.ticket_number, WAIT).await;
        assert!(row.contains("噪声扰民"), "the row shows the category: {row}");
        assert_eq!(b.run("return window.notReloaded === true;", serde_json::json!([])).await, true, "it appeared without a reload");
        b.screenshot(&shots.join("queue.png"), false).await;

        // It whistles the ticket up to the district.
        open_from_queue(&b, &t.ticket_number, "unacknowledged").await;
        assert_eq!(b.text("#phone").await, "138****8000", "the phone masked as in notifications");
        assert!(b.wait_text(".timeline", "派单", WAIT).await.contains("受理"), "the trail shows each step");
        b.screenshot(&shots.join("ticket.png"), true).await;
        act(&b, "whistle", &[("#whistle-reason", "夜间施工属区级项目，需区生态环境局处理")]).await;
        assert!(b.text("#platform").await.contains("西城区"), "now held by the district");
        assert_eq!(b.count("form.action").await, 0, "the street no longer acts on it");
        sign_out(&b).await;

        // The district sees it whistled in and dispatches it to its environment bureau.
        sign_in(&b, &base, COUNTY).await;
        open_from_queue(&b, &t.ticket_number, "whistled").await;
        b.choose("#dispatch-unit", "xicheng-environment").await;
        act(&b, "dispatch", &[]).await;
        assert_eq!(b.run("return document.querySelector('#unit').dataset.unit;", serde_json::json!([])).await, "xicheng-environment");
        // On the district's map, inside Xinjiekou's outline, not overdue.
        b.click("nav a[href='/map']").await;
        b.wait_text("h1", "工单地图", WAIT).await;
        assert_eq!(b.count(&format!("#map a.marker[data-ticket='{}'][data-level='0']", t.ticket_number)).await, 1, "its marker");
        assert!(b.count("#map path[data-area='xc-xinjiekou']").await == 1, "the district's streets are drawn");
        b.screenshot(&shots.join("map.png"), true).await;
        sign_out(&b).await;

        // The bureau acknowledges and asks for more time; the district, granting without a new
        // deadline, is told the rule; it grants with one.
        sign_in(&b, &base, "unit:xicheng-environment").await;
        open_from_queue(&b, &t.ticket_number, "unacknowledged").await;
        act(&b, "acknowledge", &[]).await;
        b.run("document.querySelector('#request_extension-due').value = '2026-12-04T18:00';", serde_json::json!([])).await;
        act(&b, "request_extension", &[("#request_extension-reason", "需协调施工方和住建部门")]).await;
        sign_out(&b).await;
        sign_in(&b, &base, COUNTY).await;
        open_from_queue(&b, &t.ticket_number, "extension").await;
        b.click("form[data-action=decide_extension] input[value=yes]").await;
        b.click("form[data-action=decide_extension] button[type=submit]").await;
        let refused = b.wait_text(".refused .rule", "due_at", WAIT).await;
        assert!(refused.contains("required to grant"), "the rule, in the desk's words: {refused}");
        b.click("form[data-action=decide_extension] input[value=yes]").await;
        b.run("document.querySelector('#decide_extension-due').value = '2026-12-04T18:00';", serde_json::json!([])).await;
        act(&b, "decide_extension", &[]).await;
        assert!(b.text(".facts").await.contains("2026-12-04 18:00"), "the new deadline");
        sign_out(&b).await;

        // The bureau completes it.
        sign_in(&b, &base, "unit:xicheng-environment").await;
        open_from_queue(&b, &t.ticket_number, "in_hand").await;
        act(&b, "complete", &[("#complete-result", "已责令施工方夜间停工")]).await;
        b.wait_text("#state", "已办结", WAIT).await;
        assert_eq!(b.text("#result").await, "已责令施工方夜间停工");
        sign_out(&b).await;

        // The city's figures count the bureau's completion.
        sign_in(&b, &base, "city").await;
        let cell = "#figures tr[data-code='xicheng-environment'] td[data-col='figures-completed']";
        whistle_tests::eventually("the bureau's completion in the city's figures", WAIT, Duration::from_millis(500), || async {
            b.goto(&format!("{base}/figures")).await;
            let got =
                b.run("const c = document.querySelector(arguments[0]); return c ? c.innerText : null;", serde_json::json!([cell])).await;
            if got == "1" { Ok(()) } else { Err(got) }
        })
        .await;
        b.screenshot(&shots.join("figures.png"), true).await;
        let csv = b.run("return fetch(document.querySelector('a[download]').href).then(r => r.text());", serde_json::json!([])).await;
        let csv = csv.as_str().unwrap_or_default();
        assert!(csv.starts_with("scope,code,name,received") && csv.contains("unit,xicheng-environment,"), "the CSV export: {csv}");
    })
    .await;
    b.quit().await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_street_never_sees_another_streets_ticket_and_a_form_without_its_csrf_token_changes_nothing() {
    let mut p = Platform::start_with("console-deny", Options { platforms: vec![STREET, OTHER_STREET], ..Options::default() }).await;
    let base = p.start_console().await;
    let b = Browser::start().await;
    b.scenario("console-deny", async {
        // A hotline agent registers a call: as it is typed, the form shows what the system would choose.
        b.goto(&format!("{base}/signin")).await;
        b.type_into("#token", &token_for("agent:zhao")).await;
        b.click("form[action='/signin'] button[type=submit]").await;
        b.wait_text("h1", "受理登记", WAIT).await;
        b.type_into("#call-address", "新街").await;
        b.wait_count("#places option", 1, WAIT).await;
        let suggested =
            b.run("return Array.from(document.querySelectorAll('#places option')).map(o => o.value);", serde_json::json!([])).await;
        assert!(suggested.to_string().contains("新街口街道"), "the gazetteer suggests the street: {suggested}");
        b.run("document.querySelector('#call-address').value = '';", serde_json::json!([])).await;
        b.type_into("#call-address", "西城区新街口").await;
        b.type_into("#call-text", "楼道里有很浓的煤气味，快来人看看").await;
        b.type_into("#call-phone", "13900139000").await;
        b.wait_text("#preview-category", "燃气", WAIT).await;
        assert_eq!(b.text("#preview-urgency").await, "紧急");
        let unit = b.run("return document.querySelector('#preview-facts').dataset.unit;", serde_json::json!([])).await;
        assert!(unit.as_str().is_some_and(|u| !u.is_empty()), "the unit it would go to: {unit}");
        b.screenshot(&artifacts_dir().join("intake.png"), false).await;
        b.click("#intake button[type=submit]").await;
        let number = b.wait_text("#ticket-number", "", WAIT).await;
        let v = p.wait_ticket(&number, WAIT, |v| v.state != "received").await;
        assert_eq!((v.category.as_str(), v.urgency.as_str()), ("gas", "urgent"), "registered as previewed");
        b.click("form[action='/signout'] button").await;
        b.wait_text("#token", "", WAIT).await;

        // A wrong token is told so.
        b.goto(&format!("{base}/signin")).await;
        b.type_into("#token", "not-a-token").await;
        b.click("form[action='/signin'] button[type=submit]").await;
        b.wait_text(".error", "令牌不正确", WAIT).await;

        let mut intake = p.intake().await;
        let theirs = intake.submit_request(request("夜里施工太吵了", "西城区金融街")).await.expect("submit").into_inner();
        let ours = intake.submit_request(request("晚上施工噪音扰民", "西城区新街口")).await.expect("submit").into_inner();
        let v = p.wait_ticket(&theirs.ticket_number, WAIT, |v| v.state == "assigned").await;
        assert_eq!(v.platform, OTHER_STREET);
        p.wait_ticket(&ours.ticket_number, WAIT, |v| v.state == "assigned").await;

        // Xinjiekou's desk: its own ticket is on its queue, the other street's is not, even by URL.
        sign_in(&b, &base, STREET).await;
        b.wait_text("#queue tr", &ours.ticket_number, WAIT).await;
        assert!(!b.source().await.contains(&theirs.ticket_number), "the other street's ticket is not listed");
        b.goto(&format!("{base}/tickets/{}", theirs.ticket_number)).await;
        b.wait_text("h1", "无权查看", WAIT).await;
        let page = b.source().await;
        assert!(!page.contains("夜里施工太吵了") && !page.contains("金融街"), "nothing of the ticket is shown");

        // A whistle form stripped of its CSRF token is refused, and the ticket stays.
        b.goto(&format!("{base}/tickets/{}", ours.ticket_number)).await;
        b.wait_text("h1", &ours.ticket_number, WAIT).await;
        b.run("document.querySelector('form[data-action=whistle] input[name=csrf]').remove();", serde_json::json!([])).await;
        b.type_into("#whistle-reason", "需要区里协调").await;
        b.click("form[data-action=whistle] button[type=submit]").await;
        b.wait_text("[role=alert]", "CSRF", WAIT).await;
        let v = p.wait_ticket(&ours.ticket_number, WAIT, |_| true).await;
        assert_eq!((v.state.as_str(), v.platform.as_str()), ("assigned", STREET), "nothing was done");

        // The city's map: three overdue complaints at one corner are one red-or-amber cluster; zooming in parts them.
        let mut corner = Vec::new();
        for n in 0..3 {
            let mut r = request(&format!("路口夜间施工噪音，第{n}次反映"), "西城区新街口");
            (r.lat, r.lon) = (Some(39.9000), Some(116.3400));
            let t = intake.submit_request(r).await.expect("submit").into_inner();
            p.wait_ticket(&t.ticket_number, WAIT, |v| v.state == "assigned").await;
            corner.push(t.ticket_number);
        }
        p.clock.advance(time::Duration::days(8));
        for n in &corner {
            p.wait_ticket(n, WAIT, |v| v.overdue_level >= 1).await;
        }
        b.click("form[action='/signout'] button").await;
        sign_in(&b, &base, "city").await;
        b.goto(&format!("{base}/map")).await;
        let cluster = "#map a.cluster[data-count='3']";
        whistle_tests::eventually("the three overdue tickets clustered on the city's map", WAIT, Duration::from_millis(300), || async {
            b.goto(&format!("{base}/map")).await;
            let level = b
                .run("const c = document.querySelector(arguments[0]); return c ? c.dataset.level : null;", serde_json::json!([cluster]))
                .await;
            if level == "1" || level == "2" { Ok(()) } else { Err(level) }
        })
        .await;
        for _ in 0..6 {
            if b.count("#map a.cluster").await == 0 {
                break;
            }
            let href = b.run("return document.querySelector('#map a.cluster').getAttribute('href');", serde_json::json!([])).await;
            b.goto(&format!("{base}{}", href.as_str().expect("a cluster links to its zoom"))).await;
        }
        assert_eq!(b.count("#map a.marker").await, 3, "zoomed in, each is its own marker");
        assert_eq!(b.count("#map a.marker[data-level='0']").await, 0, "all overdue");

        // The hot issues: night construction noise in Xinjiekou tops the list, and opens its four tickets.
        b.click("nav a[href='/hot']").await;
        let top = b.wait_text("#hot tbody tr:first-child", "噪声扰民", WAIT).await;
        assert!(top.contains("新街口") && top.contains("施工") && top.contains('4'), "the top issue: {top}");
        assert_eq!(b.count("#hot tr[data-category='noise'][data-place='xc-jinrongjie'][data-count='1']").await, 1, "the other street's");
        b.screenshot(&artifacts_dir().join("hot.png"), false).await;
        b.click("#hot tbody tr:first-child a").await;
        b.wait_text("#issue", "新街口", WAIT).await;
        assert_eq!(b.count("#hot-tickets tbody tr").await, 4);
        assert_eq!(b.count(&format!("#hot-tickets tr[data-ticket='{}']", ours.ticket_number)).await, 1);

        // The English switch.
        b.goto(&format!("{base}/queue")).await;
        b.wait_text("h1", "全市", WAIT).await;
        b.click("a.lang").await;
        b.wait_text("h1", "Queue of City", WAIT).await;
    })
    .await;
    b.quit().await;
    p.shutdown().await;
}
