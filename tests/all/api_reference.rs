//! The API reference (docs/api.md) lists exactly the routes the server registers and exactly the
//! error codes it can return.

use std::collections::BTreeSet;

use stepwise::server::{ERROR_CODES, ROUTES};

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
    let returned: BTreeSet<String> = ERROR_CODES.iter().map(|c| c.to_string()).collect();
    assert_eq!(documented, returned);
}
