//! Waiting in a license's queue: an acquire that asked to wait and got 202
//! `waiting` long-polls its `queue_url` until the server grants it a seat,
//! and gives its place up when the caller's wait runs out.

use crate::{Answer, Client, Error};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

/// Longest wait the server accepts, in seconds.
pub(crate) const MAX_WAIT_SECS: u32 = 86_400;
/// Longest single long-poll, in seconds (the server's bound).
const POLL_SECS: u64 = 60;

/// A place in a queue, from the acquire's 202.
#[derive(Debug, Deserialize)]
pub(crate) struct Waiting {
    queue_url: String,
}

#[derive(Deserialize)]
struct Status {
    status: String,
}

/// The place an acquire's answer gives, if it is one (202 `waiting`).
pub(crate) fn waiting(answer: &Answer) -> Result<Option<Waiting>, Error> {
    if answer.status != StatusCode::ACCEPTED {
        return Ok(None);
    }
    let status: Status = answer.json()?;
    if status.status != "waiting" {
        return Ok(None);
    }
    Ok(Some(answer.json()?))
}

fn no_seat(detail: &str) -> Error {
    Error::NoSeats {
        retry_after: None,
        detail: detail.to_owned(),
    }
}

impl Client {
    /// Long-polls `place` until it is granted (the answer, shaped like an
    /// acquire's) or `deadline` passes (its place is given up).
    pub(crate) async fn wait_in_queue(
        &self,
        place: &Waiting,
        deadline: tokio::time::Instant,
    ) -> Result<Answer, Error> {
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            // Each long-poll ends a second before the request's timeout.
            let poll = self
                .inner
                .timeout
                .as_secs()
                .saturating_sub(1)
                .min(POLL_SECS);
            let secs = left.as_secs().min(poll);
            let path = format!("{}?wait_secs={secs}", place.queue_url);
            let answer = self.call(Method::GET, &path, None, None).await?;
            let status: Status = answer.json()?;
            match status.status.as_str() {
                "granted" => return Ok(answer),
                "waiting" if !left.is_zero() => {
                    if secs == 0 {
                        tokio::time::sleep(left.min(std::time::Duration::from_millis(500))).await;
                    }
                }
                "waiting" => return self.give_up(place).await,
                "timed_out" => return Err(no_seat("the wait in the queue ran out")),
                "cancelled" => return Err(no_seat("the place in the queue was cancelled")),
                other => return Err(no_seat(&format!("left the queue ({other})"))),
            }
        }
    }

    /// Cancels the place; a grant that won the race is still taken.
    async fn give_up(&self, place: &Waiting) -> Result<Answer, Error> {
        let _ = self
            .send(Method::DELETE, &place.queue_url, None, None)
            .await;
        let answer = self.call(Method::GET, &place.queue_url, None, None).await?;
        match answer.json::<Status>()?.status.as_str() {
            "granted" => Ok(answer),
            _ => Err(no_seat("no seat freed within the wait")),
        }
    }
}
