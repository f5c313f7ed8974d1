//! Example handler: send a user the week's digest.
//!
//! It shows a permanent failure: a payload naming a user who does not exist makes the
//! `load-user` step fail with a non-retryable error, so the run fails at once instead of
//! retrying something that can never succeed.

use stepwise_sdk::prelude::*;

/// The payload: `{"user_id":"u_1"}`.
#[derive(Deserialize)]
struct DigestRequest {
    user_id: String,
}

/// A row of the built-in user table.
#[derive(Clone, Serialize, Deserialize)]
struct User {
    id: String,
    name: String,
    email: String,
}

/// The job's output.
#[derive(Serialize, Deserialize)]
struct DigestSent {
    user_id: String,
    email: String,
    items: usize,
    message_id: String,
}

/// The users this example knows: (id, name, email). A real handler would call a service,
/// inside the `load-user` step.
const USERS: &[(&str, &str, &str)] = &[
    ("u_1", "Ada", "ada@example.com"),
    ("u_2", "Grace", "grace@example.com"),
];

/// Send a user the digest of their week.
#[job(max_attempts = 3, backoff_initial_ms = 500)]
fn weekly_digest(ctx: &mut Ctx, input: DigestRequest) -> Result<DigestSent, JobError> {
    let user: User = ctx.step("load-user", || {
        ctx.log_info(format!("loading user {}", input.user_id));
        find_user(&input.user_id).ok_or_else(|| {
            JobError::non_retryable(format!("user '{}' does not exist", input.user_id))
        })
    })?;

    let items: Vec<String> = ctx.step("collect-items", || {
        let items = items_for(&user);
        ctx.log_info(format!("collected {} items for {}", items.len(), user.id));
        Ok(items)
    })?;

    let body: String = ctx.step("render", || Ok(render(&user, &items)))?;

    let message_id: String = ctx.step("send", || {
        ctx.log_info(format!("sending {} bytes to {}", body.len(), user.email));
        // The run id keeps the message id the same however often this step is retried, so
        // a mail service that deduplicates on it sends the digest once.
        Ok(format!("msg_{}_{}", user.id, ctx.run_id()))
    })?;

    Ok(DigestSent {
        user_id: user.id,
        email: user.email,
        items: items.len(),
        message_id,
    })
}

fn find_user(id: &str) -> Option<User> {
    USERS
        .iter()
        .find(|(user_id, _, _)| *user_id == id)
        .map(|(id, name, email)| User {
            id: (*id).to_owned(),
            name: (*name).to_owned(),
            email: (*email).to_owned(),
        })
}

fn items_for(user: &User) -> Vec<String> {
    let count = if user.id == "u_1" { 3 } else { 1 };
    (1..=count)
        .map(|i| format!("update {i} for {}", user.name))
        .collect()
}

fn render(user: &User, items: &[String]) -> String {
    let mut body = format!("Hello {},\n\nYour week:\n", user.name);
    for item in items {
        body.push_str("- ");
        body.push_str(item);
        body.push('\n');
    }
    body
}

export_jobs!(weekly_digest);
