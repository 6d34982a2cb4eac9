//! The console's backends: each platform's Desk and the revisit service's
//! Figures, always called with the signed-in operator's own token, so the
//! console can never show or do more than that token allows.

use std::collections::BTreeMap;
use tonic::codegen::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use whistle_proto::Bearer;
use whistle_proto::v1::{
    self as pb, classifier_client::ClassifierClient, desk_client::DeskClient, intake_client::IntakeClient, revisit_client::RevisitClient,
};

use crate::{Error, Result};

pub type Desk = DeskClient<InterceptedService<Channel, Bearer>>;
pub type Revisit = RevisitClient<InterceptedService<Channel, Bearer>>;

#[derive(Clone)]
pub struct Backends {
    desks: BTreeMap<String, Channel>,
    revisit: Channel,
    intake: Channel,
    classifier: Channel,
}

fn channel(what: &str, url: &str) -> Result<Channel> {
    let endpoint = Endpoint::from_shared(url.to_owned()).map_err(|e| Error::Config(format!("{what}: {url:?} is not a URL: {e}")))?;
    // A backend that takes calls but never answers must not hang a page.
    Ok(endpoint.connect_timeout(std::time::Duration::from_secs(3)).timeout(std::time::Duration::from_secs(15)).connect_lazy())
}

/// What signing in with a token found.
pub enum SignIn {
    /// The token's caller and the platform whose desk serves it.
    Known(pb::WhoAmIResponse),
    /// No desk knows the token.
    Unknown,
    /// A desk answered something other than yes or no.
    Unavailable(String),
}

impl Backends {
    /// `desks`: platform (`city`, `county:<code>`) -> the desk's gRPC URL.
    pub fn new(s: &crate::ConsoleSettings) -> Result<Self> {
        let desks = s
            .desks
            .iter()
            .map(|(platform, url)| Ok((platform.clone(), channel(&format!("console.desks.{platform}"), url)?)))
            .collect::<Result<_>>()?;
        Ok(Backends {
            desks,
            revisit: channel("console.revisit", &s.revisit)?,
            intake: channel("console.intake", &s.intake)?,
            classifier: channel("console.classifier", &s.classifier)?,
        })
    }

    /// Intake registers a call (it needs no token: channels submit).
    pub fn intake(&self) -> IntakeClient<Channel> {
        IntakeClient::new(self.intake.clone())
    }

    /// The classifier's preview.
    pub fn classifier(&self) -> ClassifierClient<Channel> {
        ClassifierClient::new(self.classifier.clone())
    }

    pub fn has_desk(&self, platform: &str) -> bool {
        self.desks.contains_key(platform)
    }

    /// The desk of `platform`, calling with `token`.
    pub fn desk(&self, platform: &str, token: &str) -> Result<Desk> {
        let ch = self.desks.get(platform).ok_or_else(|| Error::NoDesk(platform.to_owned()))?;
        Ok(DeskClient::with_interceptor(ch.clone(), Bearer::new(Some(token)).map_err(|_| Error::BadToken)?))
    }

    pub fn revisit(&self, token: &str) -> Result<Revisit> {
        Ok(RevisitClient::with_interceptor(self.revisit.clone(), Bearer::new(Some(token)).map_err(|_| Error::BadToken)?))
    }

    /// Asks every desk at once who `token` belongs to; the first (in the
    /// configured order) that knows it answers, so one slow desk delays no
    /// one whose desk answered.
    pub async fn sign_in(&self, token: &str) -> SignIn {
        if Bearer::new(Some(token)).is_err() || token.trim().is_empty() {
            return SignIn::Unknown;
        }
        let asks = self.desks.keys().map(|platform| async move {
            let Ok(mut desk) = self.desk(platform, token) else { return Err(None) };
            match desk.who_am_i(pb::WhoAmIRequest {}).await {
                Ok(r) => Ok(r.into_inner()),
                Err(s) if s.code() == tonic::Code::Unauthenticated => Err(None),
                Err(s) => Err(Some(format!("{platform}: {}", s.message()))),
            }
        });
        let answers = futures::future::join_all(asks).await;
        let mut trouble = None;
        for a in answers {
            match a {
                Ok(who) => return SignIn::Known(who),
                Err(Some(t)) => trouble = Some(t),
                Err(None) => {}
            }
        }
        match trouble {
            Some(t) => SignIn::Unavailable(t),
            None => SignIn::Unknown,
        }
    }
}
