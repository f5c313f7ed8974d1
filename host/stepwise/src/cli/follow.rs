//! `stepwise runs show RUN --follow`: reads the server-sent events of
//! `GET /v1/runs/{id}/events` and prints the run's state changes and new timeline entries as
//! they happen, until the run ends. The event-stream format is parsed here by hand: it is a
//! few lines of text (`event:`, `data:`, `id:`, blank line), not worth a dependency.

use anyhow::Result;
use serde_json::{Value, json};

use super::Outcome;
use super::client::{Class, Client, Failure};
use super::common::write_stdout;
use crate::api::events::{RunProgress, TimelineEvent, names};
use crate::api::{Run, RunState};
use crate::time_fmt;

/// The longest event accepted; a server sending more is not the Stepwise server.
const MAX_EVENT_BYTES: usize = 16 << 20;

/// Turns the bytes of an event stream into (event name, data) pairs.
#[derive(Debug, Default)]
struct Parser {
    buffer: Vec<u8>,
    event: String,
    data: String,
}

impl Parser {
    /// Feeds `bytes`; returns the events they complete.
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<(String, String)>> {
        self.buffer.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() || !self.event.is_empty() {
                    let name = std::mem::take(&mut self.event);
                    let name = if name.is_empty() {
                        "message".into()
                    } else {
                        name
                    };
                    out.push((name, std::mem::take(&mut self.data)));
                }
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => self.event = value.to_owned(),
                "data" => {
                    if !self.data.is_empty() {
                        self.data.push('\n');
                    }
                    self.data.push_str(value);
                }
                _ => {}
            }
        }
        if self.buffer.len() + self.data.len() > MAX_EVENT_BYTES {
            return Err(bad_answer("an event of over 16 MiB").into());
        }
        Ok(out)
    }
}

fn bad_answer(what: &str) -> Failure {
    Failure {
        class: Class::Server,
        code: "bad_answer".into(),
        message: format!("unexpected event stream from the server: {what}"),
        details: Default::default(),
    }
}

fn describe_progress(p: &RunProgress) -> String {
    let mut text = format!("status {}  attempts {}", p.status.as_str(), p.attempts);
    if let Some(e) = &p.executing {
        text.push_str(&format!("  executing attempt {}", e.attempt));
        if let Some(step) = &e.step {
            text.push_str(&format!(" in step '{step}'"));
        }
    }
    text
}

fn describe_entry(t: &TimelineEvent) -> String {
    let e = &t.entry;
    let kind = serde_json::to_value(e.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let mut text = format!("{}  {kind}", time_fmt::rfc3339(e.at));
    if let Some(a) = e.attempt {
        text.push_str(&format!("  attempt {a}"));
    }
    if let Some(step) = &e.step {
        text.push_str(&format!("  step '{step}'"));
    }
    if !e.detail.is_empty() {
        text.push_str(&format!("  {}", e.detail));
    }
    text
}

/// Follows run `id` until it ends; with `json`, one JSON object per event and line
/// (`{"event", "data"}`). Completed: success; failed: the run did not complete.
pub async fn follow(client: &Client, id: &str, json: bool) -> Result<Outcome> {
    // The server ends a stream after an hour; follow on from where it stopped.
    let mut from = 0u32;
    loop {
        if let Some(outcome) = follow_once(client, id, json, &mut from).await? {
            return Ok(outcome);
        }
    }
}

/// One stream of events from timeline position `from` (moved past each entry shown); the
/// run's outcome once it ended, `None` when the stream closed first.
async fn follow_once(
    client: &Client,
    id: &str,
    json: bool,
    from: &mut u32,
) -> Result<Option<Outcome>> {
    let query = [("from", from.to_string())];
    let mut response = client.events(&["v1", "runs", id, "events"], &query).await?;
    let mut parser = Parser::default();
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => {
                return Err(Failure {
                    class: Class::Server,
                    code: "unreachable".into(),
                    message: format!("the event stream was cut: {e}"),
                    details: Default::default(),
                }
                .into());
            }
        };
        for (name, data) in parser.feed(&chunk)? {
            let value: Value = serde_json::from_str(&data)
                .map_err(|_| bad_answer(&format!("'{name}' event is not JSON")))?;
            if json {
                write_stdout(&json!({ "event": name, "data": value }).to_string())?;
            }
            if name == names::TIMELINE
                && let Some(position) = value["position"].as_u64()
            {
                *from = u32::try_from(position)
                    .unwrap_or(u32::MAX)
                    .saturating_add(1);
            }
            let decode = |what| bad_answer(&format!("'{what}' event of another shape"));
            match name.as_str() {
                names::STATE if !json => {
                    let p: RunProgress =
                        serde_json::from_value(value).map_err(|_| decode(names::STATE))?;
                    write_stdout(&describe_progress(&p))?;
                }
                names::TIMELINE if !json => {
                    let t: TimelineEvent =
                        serde_json::from_value(value).map_err(|_| decode(names::TIMELINE))?;
                    write_stdout(&format!("  {}", describe_entry(&t)))?;
                }
                names::END => {
                    let run: Run = serde_json::from_value(value).map_err(|_| decode(names::END))?;
                    if !json {
                        write_stdout(&format!("run {} {}", run.id, run.status.as_str()))?;
                    }
                    return Ok(Some(if run.status == RunState::Completed {
                        Outcome::Success
                    } else {
                        Outcome::RunNotCompleted
                    }));
                }
                names::GONE => {
                    return Err(Failure {
                        class: Class::NotFound,
                        code: "not_found".into(),
                        message: format!("run '{id}' was deleted while followed"),
                        details: Default::default(),
                    }
                    .into());
                }
                _ => {}
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_parsed_across_chunks() {
        let mut p = Parser::default();
        assert!(p.feed(b"event: state\ndata: {\"a\"").unwrap().is_empty());
        let events = p
            .feed(b": 1}\n\n:keep-alive\n\nid: 3\nevent: end\r\ndata: 2\r\n\r\n")
            .unwrap();
        assert_eq!(
            events,
            vec![
                ("state".to_owned(), "{\"a\": 1}".to_owned()),
                ("end".to_owned(), "2".to_owned()),
            ]
        );
    }
}
