//! Journal rows (steps, timeline entries, log lines, deliveries) of any number of runs
//! written with a fixed number of statements, whatever their count: one `INSERT … SELECT
//! FROM unnest(…)` per table, and one `UPDATE` that takes the timeline and log sequence
//! numbers of every run at once. A transaction of many attempts' step records then costs a
//! few round trips, not a few per record.

use std::collections::HashMap;

use deadpool_postgres::Transaction;
use stepwise_store::JournalWrites;

use crate::cached::Cached;
use crate::encode_text;
use crate::tx::{TxResult, db_ms};

/// A per-run list numbered by sequence.
#[derive(Clone, Copy)]
enum Numbered {
    Timeline,
    Logs,
}

impl Numbered {
    fn column(self) -> &'static str {
        match self {
            Self::Timeline => "next_timeline",
            Self::Logs => "next_log",
        }
    }

    fn table(self) -> &'static str {
        match self {
            Self::Timeline => "timeline",
            Self::Logs => "logs",
        }
    }
}

/// Appends every `(run, journal)` in order; returns the bytes of records each stored.
pub(crate) async fn append_all(
    txn: &Transaction<'_>,
    jobs: &[(&str, &JournalWrites)],
) -> TxResult<Vec<u64>> {
    let mut bytes = vec![0u64; jobs.len()];

    // Steps: the last write of a (run, ordinal) wins, as if written one after the other.
    let mut steps: Vec<(String, i32, String)> = Vec::new();
    let mut at: HashMap<(String, i32), usize> = HashMap::new();
    for (i, (run, journal)) in jobs.iter().enumerate() {
        for step in &journal.steps {
            let json = encode_text(step)?;
            bytes[i] = bytes[i].saturating_add(json.len() as u64);
            let key = (
                (*run).to_owned(),
                i32::try_from(step.ordinal).unwrap_or(i32::MAX),
            );
            match at.get(&key) {
                Some(&k) => steps[k].2 = json,
                None => {
                    at.insert(key.clone(), steps.len());
                    steps.push((key.0, key.1, json));
                }
            }
        }
    }
    if !steps.is_empty() {
        let (runs, ordinals, records) = unzip3(steps);
        txn.x(
            "INSERT INTO steps (run, ordinal, record)
             SELECT r, o, j::json FROM unnest($1::text[], $2::int[], $3::text[]) AS s(r, o, j)
             ON CONFLICT (run, ordinal) DO UPDATE SET record = EXCLUDED.record",
            &[&runs, &ordinals, &records],
        )
        .await?;
    }

    // Timeline entries and log lines, numbered per run in the order given.
    let mut timeline: Vec<(usize, Option<i64>, String)> = Vec::new();
    let mut logs: Vec<(usize, String)> = Vec::new();
    for (i, (_, journal)) in jobs.iter().enumerate() {
        for entry in &journal.timeline {
            let json = encode_text(entry)?;
            bytes[i] = bytes[i].saturating_add(json.len() as u64);
            timeline.push((i, entry.attempt.map(i64::from), json));
        }
        for line in &journal.logs {
            let json = encode_text(line)?;
            bytes[i] = bytes[i].saturating_add(json.len() as u64);
            logs.push((i, json));
        }
    }
    if !timeline.is_empty() {
        let runs: Vec<&str> = timeline.iter().map(|(i, ..)| jobs[*i].0).collect();
        let seqs = number(txn, Numbered::Timeline, &runs).await?;
        let runs: Vec<String> = runs.into_iter().map(str::to_owned).collect();
        let attempts: Vec<Option<i64>> = timeline.iter().map(|(_, a, _)| *a).collect();
        let records: Vec<String> = timeline.into_iter().map(|(.., j)| j).collect();
        txn.x(
            "INSERT INTO timeline (run, seq, attempt, record)
             SELECT r, s, a, j::json
             FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[]) AS t(r, s, a, j)",
            &[&runs, &seqs, &attempts, &records],
        )
        .await?;
    }
    if !logs.is_empty() {
        let runs: Vec<&str> = logs.iter().map(|(i, _)| jobs[*i].0).collect();
        let seqs = number(txn, Numbered::Logs, &runs).await?;
        let runs: Vec<String> = runs.into_iter().map(str::to_owned).collect();
        let records: Vec<String> = logs.into_iter().map(|(_, j)| j).collect();
        txn.x(
            "INSERT INTO logs (run, seq, record)
             SELECT r, s, j::json FROM unnest($1::text[], $2::int[], $3::text[]) AS t(r, s, j)",
            &[&runs, &seqs, &records],
        )
        .await?;
    }

    // Deliveries: the last write of a (tenant, seq, run) wins.
    let mut deliveries: Vec<(String, i64, String, String)> = Vec::new();
    let mut seen: HashMap<(String, i64, String), usize> = HashMap::new();
    for (run, journal) in jobs {
        for d in &journal.deliveries {
            let key = (d.tenant.clone(), db_ms(d.seq), (*run).to_owned());
            match seen.get(&key) {
                Some(&k) => deliveries[k].3 = d.step.clone(),
                None => {
                    seen.insert(key.clone(), deliveries.len());
                    deliveries.push((key.0, key.1, key.2, d.step.clone()));
                }
            }
        }
    }
    if !deliveries.is_empty() {
        let tenants: Vec<String> = deliveries.iter().map(|d| d.0.clone()).collect();
        let seqs: Vec<i64> = deliveries.iter().map(|d| d.1).collect();
        let runs: Vec<String> = deliveries.iter().map(|d| d.2.clone()).collect();
        let step_names: Vec<String> = deliveries.into_iter().map(|d| d.3).collect();
        txn.x(
            "INSERT INTO event_deliveries (tenant, seq, run, step)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[])
             ON CONFLICT (tenant, seq, run) DO UPDATE SET step = EXCLUDED.step",
            &[&tenants, &seqs, &runs, &step_names],
        )
        .await?;
    }
    Ok(bytes)
}

/// The sequence numbers of entries appended to `list`, one per element of `runs` (the run
/// each belongs to), numbered per run in order. The runs' rows hold their next numbers, so
/// appends to one run serialize on its row. (Callers that write several runs lock their rows
/// in id order first; a deadlock otherwise is tried again, see `tx.rs`.)
async fn number(txn: &Transaction<'_>, list: Numbered, runs: &[&str]) -> TxResult<Vec<i32>> {
    let mut counts: HashMap<&str, i32> = HashMap::new();
    for run in runs {
        *counts.entry(run).or_default() += 1;
    }
    let mut ids: Vec<&str> = counts.keys().copied().collect();
    ids.sort_unstable();
    let ns: Vec<i32> = ids.iter().map(|id| counts[id]).collect();
    let ids_owned: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    let column = list.column();
    let sql = format!(
        "UPDATE runs SET {column} = runs.{column} + n.k
         FROM unnest($1::text[], $2::int[]) AS n(id, k)
         WHERE runs.id = n.id
         RETURNING runs.id, runs.{column} - n.k"
    );
    let rows = txn.q(&sql, &[&ids_owned, &ns]).await?;
    let mut next: HashMap<String, i32> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    // Entries of a run that is not stored (gone meanwhile) follow whatever is there.
    for id in &ids {
        if !next.contains_key(*id) {
            let sql = format!(
                "SELECT COALESCE(max(seq) + 1, 0) FROM {} WHERE run = $1",
                list.table()
            );
            let first: i32 = txn.q1(&sql, &[id]).await?.get(0);
            next.insert((*id).to_owned(), first);
        }
    }
    Ok(runs
        .iter()
        .map(|run| {
            let n = next.get_mut(*run).expect("numbered above");
            let seq = *n;
            *n = n.saturating_add(1);
            seq
        })
        .collect())
}

fn unzip3<A, B, C>(v: Vec<(A, B, C)>) -> (Vec<A>, Vec<B>, Vec<C>) {
    let mut a = Vec::with_capacity(v.len());
    let mut b = Vec::with_capacity(v.len());
    let mut c = Vec::with_capacity(v.len());
    for (x, y, z) in v {
        a.push(x);
        b.push(y);
        c.push(z);
    }
    (a, b, c)
}
