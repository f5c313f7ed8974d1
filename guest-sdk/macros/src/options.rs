//! Parsing and checking the options of `#[job(...)]`.
//!
//! Every check that can be made at compile time is made here, so a policy the host would reject
//! (a multiplier below 1.0, zero attempts) is a compile error at the option, not a failed deploy.

use proc_macro2::{Span, TokenStream};
use syn::parse::{ParseStream, Parser};
use syn::{Lit, LitStr, Token};

/// The options every `#[job]` accepts, for the "unknown option" message.
const KNOWN: &str = "name, description, max_attempts, backoff_initial_ms, backoff_max_ms, \
                     backoff_multiplier, backoff_jitter, fuel, timeout_ms, memory_bytes, hosts";

/// The options given to one `#[job(...)]`; `None` means "not given".
#[derive(Default)]
pub(crate) struct JobOptions {
    pub name: Option<LitStr>,
    pub description: Option<LitStr>,
    pub max_attempts: Option<u32>,
    pub backoff: BackoffOptions,
    pub fuel: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub memory_bytes: Option<u64>,
    /// `hosts = "api.stripe.com, hooks.example.com"`: the hosts the job calls.
    pub hosts: Option<LitStr>,
}

/// The backoff options; the SDK fills in defaults for those left out when any is given.
#[derive(Debug, Default)]
pub(crate) struct BackoffOptions {
    pub initial_ms: Option<u64>,
    pub max_ms: Option<u64>,
    pub multiplier: Option<f64>,
    pub jitter: Option<f64>,
}

impl BackoffOptions {
    pub fn is_given(&self) -> bool {
        self.initial_ms.is_some()
            || self.max_ms.is_some()
            || self.multiplier.is_some()
            || self.jitter.is_some()
    }
}

impl JobOptions {
    /// Parses the tokens between the parentheses of `#[job(...)]`.
    pub fn parse(tokens: TokenStream) -> syn::Result<Self> {
        let mut options = JobOptions::default();
        let mut backoff_span = None;
        let parser = syn::meta::parser(|meta| {
            let key = meta
                .path
                .get_ident()
                .map(ToString::to_string)
                .unwrap_or_default();
            let span = meta
                .path
                .get_ident()
                .map_or_else(Span::call_site, |i| i.span());
            if !KNOWN.split(", ").any(|k| k == key) {
                return Err(meta.error(format!("unknown #[job] option; the options are: {KNOWN}")));
            }
            let value = meta.value()?;
            match key.as_str() {
                "name" => set(&mut options.name, value.parse()?, span, &key),
                "description" => set(&mut options.description, value.parse()?, span, &key),
                "max_attempts" => {
                    let n = int::<u32>(value, &key, 1)?;
                    set(&mut options.max_attempts, n, span, &key)
                }
                "backoff_initial_ms" => {
                    backoff_span.get_or_insert(span);
                    let n = int::<u64>(value, &key, 0)?;
                    set(&mut options.backoff.initial_ms, n, span, &key)
                }
                "backoff_max_ms" => {
                    backoff_span.get_or_insert(span);
                    let n = int::<u64>(value, &key, 1)?;
                    set(&mut options.backoff.max_ms, n, span, &key)
                }
                "backoff_multiplier" => {
                    backoff_span.get_or_insert(span);
                    let x = float(value, &key, 1.0, f64::MAX)?;
                    set(&mut options.backoff.multiplier, x, span, &key)
                }
                "backoff_jitter" => {
                    backoff_span.get_or_insert(span);
                    let x = float(value, &key, 0.0, 1.0)?;
                    set(&mut options.backoff.jitter, x, span, &key)
                }
                "fuel" => {
                    let n = int::<u64>(value, &key, 1)?;
                    set(&mut options.fuel, n, span, &key)
                }
                "timeout_ms" => {
                    let n = int::<u64>(value, &key, 1)?;
                    set(&mut options.timeout_ms, n, span, &key)
                }
                "memory_bytes" => {
                    let n = int::<u64>(value, &key, 1)?;
                    set(&mut options.memory_bytes, n, span, &key)
                }
                "hosts" => set(&mut options.hosts, value.parse()?, span, &key),
                _ => unreachable!("every known option has an arm"),
            }
        });
        parser.parse2(tokens)?;

        if let (Some(initial), Some(max)) = (options.backoff.initial_ms, options.backoff.max_ms)
            && initial > max
        {
            return Err(syn::Error::new(
                backoff_span.unwrap_or_else(Span::call_site),
                format!("backoff_initial_ms ({initial}) is larger than backoff_max_ms ({max})"),
            ));
        }
        if let Some(name) = &options.name {
            check_job_name(&name.value(), name.span())?;
        }
        Ok(options)
    }
}

/// Job names travel in URLs, CLI arguments and log lines, so they must be plain words: the
/// host's rule (`stepwise-names`), checked here so a handler that builds always deploys.
pub(crate) fn check_job_name(name: &str, span: Span) -> syn::Result<()> {
    stepwise_names::check(stepwise_names::Kind::Job, name)
        .map_err(|e| syn::Error::new(span, format!("job name '{name}': {e}")))
}

fn set<T>(slot: &mut Option<T>, value: T, span: Span, key: &str) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new(span, format!("`{key}` is given twice")));
    }
    *slot = Some(value);
    Ok(())
}

fn reject_negative(input: ParseStream<'_>, key: &str) -> syn::Result<()> {
    if input.peek(Token![-]) {
        return Err(input.error(format!("`{key}` cannot be negative")));
    }
    Ok(())
}

fn int<T>(input: ParseStream<'_>, key: &str, min: T) -> syn::Result<T>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
    T::Err: std::fmt::Display,
{
    reject_negative(input, key)?;
    let lit: syn::LitInt = input
        .parse()
        .map_err(|e| syn::Error::new(e.span(), format!("`{key}` takes an integer")))?;
    let n: T = lit.base10_parse()?;
    if n < min {
        return Err(syn::Error::new(
            lit.span(),
            format!("`{key}` must be at least {min}"),
        ));
    }
    Ok(n)
}

fn float(input: ParseStream<'_>, key: &str, min: f64, max: f64) -> syn::Result<f64> {
    reject_negative(input, key)?;
    let lit: Lit = input.parse()?;
    let x = match &lit {
        Lit::Float(f) => f.base10_parse::<f64>()?,
        Lit::Int(i) => i.base10_parse::<f64>()?,
        _ => {
            return Err(syn::Error::new(
                lit.span(),
                format!("`{key}` takes a number"),
            ));
        }
    };
    if !(min..=max).contains(&x) {
        let range = if max == f64::MAX {
            format!("at least {min:?}")
        } else {
            format!("between {min:?} and {max:?}")
        };
        return Err(syn::Error::new(
            lit.span(),
            format!("`{key}` must be {range}"),
        ));
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn parse(tokens: TokenStream) -> syn::Result<JobOptions> {
        JobOptions::parse(tokens)
    }

    fn error(tokens: TokenStream) -> String {
        match parse(tokens) {
            Ok(_) => panic!("options should be rejected"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn no_options_leave_everything_to_the_host() {
        let o = parse(quote!()).unwrap();
        assert!(o.name.is_none() && o.description.is_none());
        assert!(o.max_attempts.is_none() && !o.backoff.is_given());
        assert!(o.fuel.is_none() && o.timeout_ms.is_none() && o.memory_bytes.is_none());
    }

    #[test]
    fn every_option_parses() {
        let o = parse(quote!(
            name = "send-email",
            description = "Sends one email.",
            max_attempts = 6,
            backoff_initial_ms = 500,
            backoff_max_ms = 60_000,
            backoff_multiplier = 3,
            backoff_jitter = 0.5,
            fuel = 1_000_000_000,
            timeout_ms = 30_000,
            memory_bytes = 67_108_864,
        ))
        .unwrap();
        assert_eq!(o.name.unwrap().value(), "send-email");
        assert_eq!(o.description.unwrap().value(), "Sends one email.");
        assert_eq!(o.max_attempts, Some(6));
        assert_eq!(o.backoff.initial_ms, Some(500));
        assert_eq!(o.backoff.max_ms, Some(60_000));
        assert_eq!(o.backoff.multiplier, Some(3.0));
        assert_eq!(o.backoff.jitter, Some(0.5));
        assert_eq!(o.fuel, Some(1_000_000_000));
        assert_eq!(o.timeout_ms, Some(30_000));
        assert_eq!(o.memory_bytes, Some(67_108_864));
    }

    #[test]
    fn one_backoff_option_marks_backoff_given() {
        let o = parse(quote!(backoff_initial_ms = 200)).unwrap();
        assert!(o.backoff.is_given());
        assert_eq!(o.backoff.max_ms, None);
    }

    #[test]
    fn bad_options_are_rejected_with_a_reason() {
        assert!(error(quote!(retries = 3)).contains("unknown #[job] option"));
        assert!(error(quote!(max_attempts = 0)).contains("at least 1"));
        assert!(error(quote!(max_attempts = 2, max_attempts = 3)).contains("given twice"));
        assert!(error(quote!(max_attempts = "3")).contains("takes an integer"));
        assert!(error(quote!(backoff_multiplier = 0.5)).contains("at least 1.0"));
        assert!(error(quote!(backoff_jitter = 1.5)).contains("between 0.0 and 1.0"));
        assert!(error(quote!(backoff_jitter = -0.1)).contains("cannot be negative"));
        assert!(error(quote!(fuel = 0)).contains("at least 1"));
        assert!(
            error(quote!(backoff_initial_ms = 5000, backoff_max_ms = 100))
                .contains("larger than backoff_max_ms")
        );
        assert!(error(quote!(name = "")).contains("cannot be empty"));
        assert!(error(quote!(name = "two words")).contains("not ' '"));
        let long = "j".repeat(129);
        assert!(error(quote!(name = #long)).contains("at most 128 bytes"));
    }
}
