//! Reaching the platform: intake, a desk and the revisit service, with the
//! caller's token; gRPC errors in words.

use anyhow::Context;
use whistle_proto::v1::{desk_client::DeskClient, intake_client::IntakeClient, revisit_client::RevisitClient};

use crate::args::Cli;

/// The token from --token, WHISTLE_TOKEN or --token-file.
pub(crate) fn token(cli: &Cli) -> anyhow::Result<Option<String>> {
    Ok(match (&cli.token, &cli.token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(f)) => {
            Some(std::fs::read_to_string(f).with_context(|| format!("cannot read the token file {}", f.display()))?.trim().to_owned())
        }
        (None, None) => None,
    })
}

/// A channel to `url` (`what` names the service in errors) and the
/// bearer of the caller's token, for any of the platform's clients.
async fn reach(cli: &Cli, url: &str, what: &str) -> anyhow::Result<(tonic::transport::Channel, whistle_proto::Bearer)> {
    let channel = tonic::transport::Channel::from_shared(url.to_owned())
        .with_context(|| format!("{url} is not a URL"))?
        .connect()
        .await
        .with_context(|| format!("cannot reach {what} at {url}"))?;
    Ok((channel, whistle_proto::Bearer::new(token(cli)?.as_deref())?))
}

type WithToken = tonic::codegen::InterceptedService<tonic::transport::Channel, whistle_proto::Bearer>;

pub(crate) type Desk = DeskClient<WithToken>;

/// A desk client carrying the token from --token, WHISTLE_TOKEN or --token-file.
pub(crate) async fn desk(cli: &Cli) -> anyhow::Result<Desk> {
    let (channel, bearer) = reach(cli, &cli.desk, "the desk").await?;
    Ok(DeskClient::with_interceptor(channel, bearer))
}

pub(crate) type Revisit = RevisitClient<WithToken>;

/// A revisit client carrying the token (an agent's, or any desk token for figures).
pub(crate) async fn revisit(cli: &Cli) -> anyhow::Result<Revisit> {
    let (channel, bearer) = reach(cli, &cli.revisit, "the revisit service").await?;
    Ok(RevisitClient::with_interceptor(channel, bearer))
}

pub(crate) fn rfc3339(s: &str) -> anyhow::Result<whistle_proto::prost_types::Timestamp> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("{s:?} is not an RFC 3339 time like 2026-12-03T10:00:00+08:00"))?;
    Ok(whistle_proto::timestamp(t))
}

pub(crate) fn status(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", s.code(), s.message())
}

/// An intake client, carrying the token if one is given (looking a ticket
/// up by number needs one, or the citizen's phone).
pub(crate) async fn intake(cli: &Cli) -> anyhow::Result<IntakeClient<WithToken>> {
    let (channel, bearer) = reach(cli, &cli.intake, "intake").await?;
    Ok(IntakeClient::with_interceptor(channel, bearer))
}
