//! The preview over gRPC: what the classifier would choose for a request
//! and where the routing table would send it, without registering it or
//! recording it in the repeat history.

use std::sync::Arc;
use tonic::{Request, Response, Status};
use whistle_domain::city::City;
use whistle_domain::{Contact, Location};
use whistle_proto::v1::{self as pb, classifier_server::Classifier};

use crate::engine::{Engine, Input};

pub struct Preview {
    pub(crate) engine: Arc<Engine>,
    pub(crate) city: Arc<City>,
}

#[tonic::async_trait]
impl Classifier for Preview {
    async fn preview(&self, req: Request<pb::PreviewRequest>) -> Result<Response<pb::PreviewResponse>, Status> {
        let r = req.into_inner();
        let invalid = |e: whistle_domain::Error| Status::invalid_argument(e.to_string());
        let location = Location::parse(&r.address, r.lat, r.lon).map_err(invalid)?;
        let request = whistle_domain::Request::parse("phone", "", &r.text, location, Contact::default(), &r.language).map_err(invalid)?;
        let reading = self.engine.read(&Input::of(&request, None));
        let o = self.engine.finish(reading, None);
        let platform = self.city.start_platform(o.category, o.whistle_level, &o.jurisdiction);
        let unit = self.city.unit_for(&platform, o.category).map(|u| u.to_string()).unwrap_or_default();
        Ok(Response::new(pb::PreviewResponse {
            category: o.category.as_str().to_owned(),
            urgency: o.urgency.as_str().to_owned(),
            whistle_level: o.whistle_level.as_str().to_owned(),
            jurisdiction: Some(pb::Jurisdiction {
                county: o.jurisdiction.county.clone().unwrap_or_default(),
                street: o.jurisdiction.street.clone().unwrap_or_default(),
                community: o.jurisdiction.community.clone().unwrap_or_default(),
            }),
            language: o.language.as_str().to_owned(),
            confidence: o.confidence,
            runners_up: o
                .runners_up
                .iter()
                .map(|a| pb::Alternative { category: a.category.as_str().to_owned(), probability: a.probability })
                .collect(),
            triage: o.triage,
            why: o.matched.clone(),
            platform: platform.to_string(),
            unit,
        }))
    }
}
