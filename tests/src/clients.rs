//! Calling the platform as its users do: intake, the desks, the revisit
//! queue and the SMS gateway's reply, with the test tokens.

use std::time::Duration;
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;
use whistle_proto::v1::{self as pb, desk_client::DeskClient, intake_client::IntakeClient, revisit_client::RevisitClient};

use crate::*;

impl Platform {
    /// An intake client as a hotline agent's system uses it (with a token
    /// of `[intake] tokens`, so it may look tickets up by number).
    pub async fn intake(&self) -> IntakeClient<InterceptedService<Channel, whistle_proto::Bearer>> {
        self.intake_with_token(Some(&token_for("agent:zhao"))).await
    }

    /// An intake client with this token, or none (as anyone on the network).
    pub async fn intake_with_token(&self, token: Option<&str>) -> IntakeClient<InterceptedService<Channel, whistle_proto::Bearer>> {
        let channel = Channel::from_shared(format!("http://{}", self.intake_addr)).expect("uri").connect().await.expect("connect intake");
        IntakeClient::with_interceptor(channel, whistle_proto::Bearer::new(token).expect("token"))
    }

    /// A desk client holding the token of `caller` (`unit:<code>`, `city`, ...).
    pub async fn desk_as(&self, caller: &str) -> DeskClient<InterceptedService<Channel, whistle_proto::Bearer>> {
        self.desk_with_token(Some(&token_for(caller))).await
    }

    /// A client of the desk of `platform`, holding the token of `caller`.
    pub async fn desk_at(&self, platform: &str, caller: &str) -> DeskClient<InterceptedService<Channel, whistle_proto::Bearer>> {
        let addr = self.desks.get(platform).unwrap_or_else(|| panic!("no dispatcher runs {platform}"));
        let channel = Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("connect desk");
        DeskClient::with_interceptor(channel, whistle_proto::Bearer::new(Some(&token_for(caller))).expect("token"))
    }

    pub async fn desk_with_token(&self, token: Option<&str>) -> DeskClient<InterceptedService<Channel, whistle_proto::Bearer>> {
        let channel = Channel::from_shared(format!("http://{}", self.desk_addr)).expect("uri").connect().await.expect("connect desk");
        DeskClient::with_interceptor(channel, whistle_proto::Bearer::new(token).expect("token"))
    }

    /// Waits until the desk of `platform` lists ticket `number` in its queue
    /// snapshot under `group` (or, with `None`, no longer lists it), and
    /// returns the snapshot; panics naming what it saw after a minute.
    pub async fn wait_queue(&self, platform: &str, number: &str, group: Option<&str>) -> Vec<pb::QueueEntry> {
        let desk = self.desk_at(platform, platform).await;
        let what = match group {
            Some(g) => format!("ticket {number} waiting on the {platform} desk as {g}"),
            None => format!("ticket {number} gone from the {platform} desk's queue"),
        };
        eventually(&what, Duration::from_secs(60), Duration::from_millis(50), || {
            let mut desk = desk.clone();
            async move {
                let entries = desk.queue(pb::QueueRequest { limit: 0, open: false }).await.expect("queue").into_inner().entries;
                let seen: Vec<(String, String)> = entries
                    .iter()
                    .map(|e| (e.ticket.as_ref().map(|t| t.ticket_number.clone()).unwrap_or_default(), e.group.clone()))
                    .collect();
                let found = seen.iter().find(|(n, _)| n == number).map(|(_, g)| g.as_str());
                if found == group { Ok(entries) } else { Err(seen) }
            }
        })
        .await
    }

    /// A revisit client holding the token of `caller` (`agent:<id>`, `city`).
    pub async fn revisit_as(&self, caller: &str) -> RevisitClient<InterceptedService<Channel, whistle_proto::Bearer>> {
        let channel = Channel::from_shared(format!("http://{}", self.revisit_addr)).expect("uri").connect().await.expect("connect revisit");
        RevisitClient::with_interceptor(channel, whistle_proto::Bearer::new(Some(&token_for(caller))).expect("token"))
    }

    /// Waits until the agent's revisit queue (due now, or all with `later`)
    /// lists the ticket; panics naming it after a minute.
    pub async fn wait_revisit_queued(&self, agent: &str, number: &str, later: bool) -> pb::RevisitTask {
        let client = self.revisit_as(agent).await;
        eventually(&format!("ticket {number} on {agent}'s revisit queue"), Duration::from_secs(60), Duration::from_millis(50), || {
            let mut client = client.clone();
            async move {
                let tasks =
                    client.list_due(pb::ListDueRequest { limit: 100, include_later: later }).await.expect("list due").into_inner().tasks;
                let numbers: Vec<String> = tasks.iter().map(|t| t.ticket_number.clone()).collect();
                tasks.into_iter().find(|t| t.ticket_number == number).ok_or(numbers)
            }
        })
        .await
    }

    /// The citizen answers the revisit by SMS reply, as the gateway posts it.
    pub async fn sms_reply(&self, from: &str, text: &str) -> (u16, serde_json::Value) {
        let resp = reqwest::Client::new()
            .post(format!("http://{}/sms/reply", self.revisit_http))
            .bearer_auth(SMS_REPLY_TOKEN)
            .json(&serde_json::json!({ "from": from, "text": text }))
            .send()
            .await
            .expect("post the SMS reply");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Submits a request and waits until a unit holds it.
    pub async fn submit_assigned(&self, req: pb::SubmitRequestRequest) -> pb::SubmitRequestResponse {
        let t = self.intake().await.submit_request(req).await.expect("submit").into_inner();
        self.wait_ticket(&t.ticket_number, Duration::from_secs(60), |v| v.state == "assigned").await;
        t
    }

    /// The unit (its code) completes the ticket, and the projection shows it.
    pub async fn complete_as(&self, unit: &str, number: &str, result: &str) {
        self.desk_as(&format!("unit:{unit}"))
            .await
            .complete(pb::CompleteRequest { ticket: number.into(), unit: String::new(), result: result.into() })
            .await
            .unwrap_or_else(|e| panic!("unit {unit} completes ticket {number}: {e}"));
        self.wait_ticket(number, Duration::from_secs(60), |v| v.state == "completed").await;
    }

    /// Polls `GetTicket` until `pred` holds; panics with the last view after `within`.
    pub async fn wait_ticket(&self, ticket: &str, within: Duration, pred: impl Fn(&pb::TicketView) -> bool) -> pb::TicketView {
        let client = self.intake().await;
        eventually(&format!("ticket {ticket} in the expected state"), within, Duration::from_millis(25), || {
            let mut client = client.clone();
            let pred = &pred;
            async move {
                match client.get_ticket(pb::GetTicketRequest { ticket: ticket.to_owned(), ..Default::default() }).await {
                    Ok(v) if pred(v.get_ref()) => Ok(v.into_inner()),
                    Ok(v) => Err(format!("{:#?}", v.into_inner())),
                    Err(status) => Err(status.to_string()),
                }
            }
        })
        .await
    }
}

/// The desk callers the test platform has tokens for.
pub const DESK_CALLERS: &[&str] = &[
    "city",
    "unit:city-water",
    "unit:city-ecology",
    "unit:city-heating",
    "unit:city-management",
    "unit:city-housing",
    "street:xc-xinjiekou",
    "street:xc-jinrongjie",
    "county:xicheng",
    "unit:xc-xinjiekou-office",
    "unit:xicheng-environment",
    "unit:xicheng-city-management",
    // A hotline agent signs in to the console's intake desk through the desks.
    "agent:zhao",
];

/// The revisit callers the test platform has tokens for.
pub const REVISIT_CALLERS: &[&str] = &["agent:wang", "agent:li", "city"];

/// The Open311 API keys of the test platform: answered with ids, and with tokens.
pub const OPEN311_KEY: &str = "test-open311-key";
pub const OPEN311_TOKEN_KEY: &str = "test-open311-token-key";

/// The key of the signed revisit links in tests.
pub const LINK_SECRET: &str = "test-revisit-link-secret-0123456789";
pub const SMS_REPLY_TOKEN: &str = "test-sms-reply-token";

/// What the test SMS gateway receives: the fields a test checks, as JSON.
pub const SMS_BODY: &str = r#"{"channel": "sms", "to": "{{to}}", "text": "{{text}}", "message_id": "{{message_id}}", "template": "{{template}}", "ticket_number": "{{ticket_number}}", "language": "{{language}}", "recipient": {"kind": "{{recipient_kind}}", "id": "{{recipient}}"}}"#;

/// The configured (hashed) tokens of these callers.
pub(crate) fn token_entries(callers: &[&str]) -> Vec<whistle_runtime::auth::TokenEntry> {
    callers
        .iter()
        .map(|c| whistle_runtime::auth::TokenEntry { caller: (*c).to_owned(), sha256: whistle_runtime::auth::hash_token(&token_for(c)) })
        .collect()
}

/// The test token of a desk caller.
pub fn token_for(caller: &str) -> String {
    format!("test-token-{caller}")
}

/// A request with the usual fields filled.
pub fn request(text: &str, address: &str) -> pb::SubmitRequestRequest {
    pb::SubmitRequestRequest {
        channel: "phone".into(),
        external_id: String::new(),
        text: text.into(),
        address: address.into(),
        lat: None,
        lon: None,
        citizen_name: "张三".into(),
        citizen_phone: "13800138000".into(),
        citizen_email: String::new(),
        language: "zh".into(),
    }
}
