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

pub(crate) type Desk = DeskClient<tonic::codegen::InterceptedService<tonic::transport::Channel, whistle_proto::Bearer>>;

/// A desk client carrying the token from --token, WHISTLE_TOKEN or --token-file.
pub(crate) async fn desk(cli: &Cli) -> anyhow::Result<Desk> {
    let token = token(cli)?;
    let channel = tonic::transport::Channel::from_shared(cli.desk.clone())?
        .connect()
        .await
        .with_context(|| format!("cannot reach the desk at {}", cli.desk))?;
    Ok(DeskClient::with_interceptor(channel, whistle_proto::Bearer::new(token.as_deref())?))
}

pub(crate) type Revisit = RevisitClient<tonic::codegen::InterceptedService<tonic::transport::Channel, whistle_proto::Bearer>>;

/// A revisit client carrying the token (an agent's, or any desk token for figures).
pub(crate) async fn revisit(cli: &Cli) -> anyhow::Result<Revisit> {
    let channel = tonic::transport::Channel::from_shared(cli.revisit.clone())?
        .connect()
        .await
        .with_context(|| format!("cannot reach the revisit service at {}", cli.revisit))?;
    Ok(RevisitClient::with_interceptor(channel, whistle_proto::Bearer::new(token(cli)?.as_deref())?))
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
pub(crate) async fn intake(
    cli: &Cli,
) -> anyhow::Result<IntakeClient<tonic::codegen::InterceptedService<tonic::transport::Channel, whistle_proto::Bearer>>> {
    let channel = tonic::transport::Channel::from_shared(cli.intake.clone())
        .with_context(|| format!("{} is not a URL", cli.intake))?
        .connect()
        .await
        .with_context(|| format!("cannot reach intake at {}", cli.intake))?;
    Ok(IntakeClient::with_interceptor(channel, whistle_proto::Bearer::new(token(cli)?.as_deref())?))
}
