//! Test guest: version 2 of the testbed's `echo` job. Deployed after the testbed, it must serve
//! `echo` from then on, while runs created before keep the module they were created with.

use stepwise_sdk::prelude::*;

/// The same input as the testbed's `echo`.
#[derive(Deserialize)]
struct Echo {
    message: String,
    count: u32,
}

/// What version 2 answers.
#[derive(Serialize, Deserialize)]
struct Versioned {
    version: u32,
    message: String,
    count: u32,
}

/// Echo the input, tagged with this module's version.
#[job]
fn echo(_ctx: &mut Ctx, input: Echo) -> Result<Versioned, JobError> {
    Ok(Versioned {
        version: 2,
        message: input.message,
        count: input.count,
    })
}

export_jobs!(echo);
