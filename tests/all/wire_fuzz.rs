//! Random and mutated request bodies against a real `stepwise serve`: none may answer a
//! server error, every answer is in the API's shapes, and nothing the wire types refuse is
//! accepted (a body the server takes must parse strictly into its request type). Seeded, so
//! a failure reproduces.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{Map, Value, json};
use stepwise::api::{CreateTenant, Enqueue, ErrorBody, PutQueue, PutSecret};
use stepwise_tests::guests;

use crate::serve_util::{ADMIN_TOKEN, Body, Server};

/// Mutations per route: enough to cover every mutation kind many times over.
const CASES: usize = 150;

/// One route's valid body, the request type it must parse into, and who may call it.
struct Target {
    method: Method,
    path: &'static str,
    admin: bool,
    valid: Value,
    parses: fn(&[u8]) -> bool,
}

fn strict<T: serde::de::DeserializeOwned>(body: &[u8]) -> bool {
    serde_json::from_slice::<T>(body).is_ok()
}

/// A JSON value of a random kind, sometimes extreme.
fn random_value(rng: &mut StdRng, depth: u32) -> Value {
    match rng.random_range(0..12) {
        0 => Value::Null,
        1 => json!(rng.random::<bool>()),
        2 => json!(rng.random::<i64>()),
        3 => json!(u64::MAX),
        4 => json!(rng.random::<f64>() * 1e300),
        5 => json!(-1),
        6 => json!(""),
        7 => json!("x".repeat(rng.random_range(0..300))),
        8 => json!("2026-11-23T10:00:00Z"),
        9 if depth < 3 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        10 if depth < 3 => {
            let mut map = Map::new();
            for i in 0..rng.random_range(0..4) {
                map.insert(format!("k{i}"), random_value(rng, depth + 1));
            }
            Value::Object(map)
        }
        _ => json!("\u{0}\u{ffff}é"),
    }
}

/// `valid` changed in one random way, as bytes.
fn mutate(rng: &mut StdRng, valid: &Value) -> Vec<u8> {
    let mut value = valid.clone();
    let keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    let key = &keys[rng.random_range(0..keys.len())];
    match rng.random_range(0..9) {
        // A field gets a value of another kind.
        0..=2 => {
            value[key] = random_value(rng, 0);
        }
        // A field goes missing.
        3 => {
            value.as_object_mut().unwrap().remove(key);
        }
        // An unknown field, at the top or one level down.
        4 => {
            let target = match value[key].as_object_mut() {
                Some(inner) if rng.random() => inner,
                _ => value.as_object_mut().unwrap(),
            };
            target.insert("unexpected".into(), random_value(rng, 0));
        }
        // Not an object at all.
        5 => value = random_value(rng, 0),
        // Raw bytes: cut short, or a byte flipped.
        6 => {
            let mut bytes = serde_json::to_vec(&value).unwrap();
            let cut = rng.random_range(0..bytes.len());
            bytes.truncate(cut);
            return bytes;
        }
        7 => {
            let mut bytes = serde_json::to_vec(&value).unwrap();
            let at = rng.random_range(0..bytes.len());
            bytes[at] = rng.random();
            return bytes;
        }
        // Deep nesting.
        _ => {
            let depth = rng.random_range(100..2_000);
            let text = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
            value[key] = serde_json::from_str(&text).unwrap_or(Value::Null);
        }
    }
    serde_json::to_vec(&value).unwrap()
}

#[tokio::test]
async fn mutated_bodies_never_cause_a_server_error_or_accepted_garbage() {
    let server = Server::start_with_config(&format!("secrets_key = \"{}\"\n", "ab".repeat(32)));
    let api = server.api();
    let token = api.admin_create_tenant("fuzz").await;
    api.deploy(&token, guests::TESTBED).await;
    let targets = [
        Target {
            method: Method::POST,
            path: "/v1/queues/q/jobs",
            admin: false,
            valid: json!({
                "job": "echo",
                "payload": {"message": "m", "count": 1},
                "idempotency_key": "k",
                "max_attempts": 3,
                "backoff": {"initial_ms": 10, "max_ms": 100, "multiplier": 2.0, "jitter": 0.1},
                "timeout_ms": 5000,
                "delay": "1s",
                "priority": 1,
            }),
            parses: strict::<Enqueue>,
        },
        Target {
            method: Method::PUT,
            path: "/v1/queues/q",
            admin: false,
            valid: json!({"concurrency": 2}),
            parses: strict::<PutQueue>,
        },
        Target {
            method: Method::PUT,
            path: "/v1/secrets/API_KEY",
            admin: false,
            valid: json!({"value": "s3cret-value", "hosts": [{"pattern": "api.example.com"}], "readable": true}),
            parses: strict::<PutSecret>,
        },
        Target {
            method: Method::PUT,
            path: "/v1/egress",
            admin: false,
            valid: json!({"rules": [{"pattern": "api.example.com", "methods": ["POST"]}], "limits": {"max_requests": 5}}),
            parses: strict::<stepwise::egress::TenantEgress>,
        },
        Target {
            method: Method::POST,
            path: "/v1/tenants",
            admin: true,
            valid: json!({"name": "t"}),
            parses: strict::<CreateTenant>,
        },
    ];
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut accepted = 0;
    for target in &targets {
        let caller = if target.admin {
            ADMIN_TOKEN
        } else {
            token.as_str()
        };
        for case in 0..CASES {
            let body = mutate(&mut rng, &target.valid);
            let shown = String::from_utf8_lossy(&body)
                .chars()
                .take(300)
                .collect::<String>();
            let (status, answer) = api
                .request(
                    target.method.clone(),
                    Some(caller),
                    target.path,
                    Body::Raw(body.clone(), "application/json"),
                )
                .await;
            let what = format!("{} {} case {case}: {shown}", target.method, target.path);
            assert!(status < 500, "{what}\nanswered {status}: {answer}");
            if (200..300).contains(&status) {
                accepted += 1;
                assert!(
                    (target.parses)(&body),
                    "{what}\naccepted a body its wire type refuses: {answer}"
                );
            } else {
                let error: Result<ErrorBody, _> = serde_json::from_value(answer.clone());
                assert!(error.is_ok(), "{what}\nnot the error shape: {answer}");
            }
        }
    }
    // Some mutations keep a body valid (a value replaced by one of the same kind); were none
    // accepted, the valid bodies themselves would be broken and the test would prove nothing.
    assert!(accepted > 0, "no mutated body was accepted");
    assert!(!server.log().contains("panicked"), "{}", server.log());
}
