//! The one poll loop of the tests: ask until the answer is there, and fail
//! loudly, naming what never came and what was last seen, when it is not.

use std::future::Future;
use std::time::{Duration, Instant};

/// Asks `probe` every `every` until it answers `Ok`, and returns that; after
/// `within`, panics naming `what` and the last `Err` it answered.
pub async fn eventually<T, S: std::fmt::Debug, Fut>(what: &str, within: Duration, every: Duration, mut probe: impl FnMut() -> Fut) -> T
where
    Fut: Future<Output = Result<T, S>>,
{
    let start = Instant::now();
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(seen) if start.elapsed() > within => panic!("{what}: not within {within:?}; last seen: {seen:#?}"),
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn it_returns_once_the_answer_is_there() {
        let mut n = 0;
        let got = eventually("three asks", Duration::from_secs(5), Duration::from_millis(1), || {
            n += 1;
            let now = n;
            async move { if now >= 3 { Ok(now) } else { Err(now) } }
        })
        .await;
        assert_eq!(got, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "the ticket closed: not within 20ms; last seen: \"assigned\"")]
    async fn it_fails_naming_what_never_came_and_what_it_saw() {
        eventually::<(), _, _>("the ticket closed", Duration::from_millis(20), Duration::from_millis(5), || async { Err("assigned") })
            .await;
    }
}
