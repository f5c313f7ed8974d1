//! `stepwise secrets`: store a tenant's secrets on a server (the value from stdin or a file,
//! never from the command line, where other users and shell history would see it), list them
//! without values, remove them, and make a new sealing key for the operator.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::Outcome;
use super::client::{ClientFlags, reply};
use crate::api::PutSecret;
use crate::api::responses::{SecretDeleted, SecretList};
use crate::egress::RuleSpec;
use crate::secrets::{SecretInfo, SecretKeys};

/// Subcommands of `stepwise secrets`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Store a secret; the value is read from stdin (or `--from-file`).
    Set(SetArgs),
    /// List the secrets: names, bindings, whether readable; never values.
    List(ListArgs),
    /// Remove a secret.
    Rm(RmArgs),
    /// Print a new random sealing key (64 hex digits) for the server's `secrets_key`.
    Keygen,
}

/// Arguments of `stepwise secrets set`.
#[derive(Debug, clap::Args)]
pub struct SetArgs {
    /// The secret's name (letters, digits, `_`).
    name: String,
    /// A host whose requests may carry it as `{{secret:NAME}}` in a header (repeatable):
    /// `api.stripe.com` (HTTPS on 443), `*.example.com`, `http://127.0.0.1:7080`.
    #[arg(long = "host")]
    hosts: Vec<String>,
    /// Let handlers read it with `ctx.secret(NAME)`.
    #[arg(long)]
    readable: bool,
    /// Read the value from this file instead of stdin.
    #[arg(long)]
    from_file: Option<PathBuf>,
    #[command(flatten)]
    client: ClientFlags,
}

/// Arguments of `stepwise secrets list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    client: ClientFlags,
}

/// Arguments of `stepwise secrets rm`.
#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// The secret's name.
    name: String,
    #[command(flatten)]
    client: ClientFlags,
}

fn describe(s: &SecretInfo) -> String {
    let hosts: Vec<&str> = s.hosts.iter().map(|h| h.pattern.as_str()).collect();
    let bound = if hosts.is_empty() {
        "bound to no host".to_owned()
    } else {
        format!("bound to {}", hosts.join(", "))
    };
    let readable = if s.readable { "; readable" } else { "" };
    format!("{}: {bound}{readable}", s.name)
}

/// The value, without the one trailing newline that `echo` and editors add.
fn read_value(from_file: Option<&PathBuf>) -> Result<String> {
    let mut text = String::new();
    match from_file {
        Some(path) => {
            text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
        }
        None => {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the value from stdin")?;
        }
    }
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.is_empty() {
        bail!("the value is empty (give it on stdin or with --from-file)");
    }
    Ok(text)
}

/// Runs the command.
pub async fn execute(command: Command) -> Result<Outcome> {
    match command {
        Command::Keygen => {
            #[allow(clippy::print_stdout, reason = "the key is the command's output")]
            {
                println!("{}", SecretKeys::generate());
            }
            Ok(Outcome::Success)
        }
        Command::Set(args) => {
            let client = args.client.client()?;
            let value = read_value(args.from_file.as_ref())?;
            let body = PutSecret {
                value,
                hosts: args
                    .hosts
                    .iter()
                    .map(|h| RuleSpec {
                        pattern: h.clone(),
                        methods: Vec::new(),
                    })
                    .collect(),
                readable: args.readable,
            };
            let answer: Value = client.put(&["v1", "secrets", &args.name], &body).await?;
            reply(answer, args.client.json, |s: SecretInfo| {
                format!("secret {}", describe(&s))
            })
        }
        Command::List(args) => {
            let client = args.client.client()?;
            let answer: Value = client.get(&["v1", "secrets"], &[]).await?;
            reply(answer, args.client.json, |l: SecretList| {
                if l.secrets.is_empty() {
                    return "no secrets".to_owned();
                }
                l.secrets
                    .iter()
                    .map(describe)
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        Command::Rm(args) => {
            let client = args.client.client()?;
            let answer: Value = client.delete(&["v1", "secrets", &args.name]).await?;
            reply(answer, args.client.json, |v: SecretDeleted| {
                format!("secret {} removed", v.deleted)
            })
        }
    }
}
