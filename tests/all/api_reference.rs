//! The API reference (docs/api.md) lists exactly the routes the server registers and exactly the
//! error codes it can return.

use std::collections::BTreeSet;

use stepwise::api::ErrorCode;
use stepwise::server::ROUTES;

const DOC: &str = include_str!("../../docs/api.md");

/// Rows of the markdown table under `heading`, as cells.
fn table_rows(heading: &str) -> Vec<Vec<String>> {
    DOC.lines()
        .skip_while(|l| l.trim() != heading)
        .skip(1)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().trim_matches('`').to_owned())
                .collect()
        })
        .collect()
}

#[test]
fn every_route_is_documented_and_every_documented_route_exists() {
    let documented: BTreeSet<(String, String)> = table_rows("## Routes")
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, served);
}

#[test]
fn every_error_code_is_documented_and_every_documented_code_exists() {
    let documented: BTreeSet<String> = table_rows("## Errors")
        .into_iter()
        .map(|r| r[1].clone())
        .collect();
    let returned: BTreeSet<String> = ErrorCode::ALL
        .iter()
        .map(|c| c.as_str().to_owned())
        .collect();
    assert_eq!(documented, returned);
}

#[test]
fn the_committed_openapi_document_is_what_the_server_generates() {
    let committed = include_str!("../../docs/openapi.json");
    let generated = stepwise::server::openapi_document();
    if committed != generated {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json.new");
        let _ = std::fs::write(path, generated);
        panic!(
            "docs/openapi.json differs from what the server generates; the generated one is in \
             docs/openapi.json.new: review it and move it over"
        );
    }
}

#[test]
fn the_openapi_document_describes_every_route() {
    let doc: serde_json::Value =
        serde_json::from_str(stepwise::server::openapi_document()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut described = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            described.insert((method.to_uppercase(), path.clone()));
        }
    }
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(described, served);
    let codes = &doc["components"]["schemas"]["ErrorCode"]["enum"];
    assert_eq!(codes.as_array().unwrap().len(), ErrorCode::ALL.len());
}
