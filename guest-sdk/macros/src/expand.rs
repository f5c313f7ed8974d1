//! The expansion of `#[job]`: keep the function, add a hidden registration next to it.
//!
//! For `fn send_email(ctx: &mut Ctx, input: Email) -> Result<Sent, JobError>` it emits
//!
//! - the function, untouched, so authors can still call and test it;
//! - `fn __stepwise_run_send_email(ctx, payload)`, which parses the JSON payload into `Email`,
//!   calls the function and encodes its output. It lives beside the function so the author's
//!   types resolve exactly as they do in the signature, and its calls carry the spans of the
//!   signature's types, so a type that is not (de)serializable is reported at that type;
//! - `mod send_email { pub const __STEPWISE_JOB: JobDef = ... }`. A module lives in the type
//!   namespace and the function in the value namespace, so both can carry the author's name:
//!   `export_jobs!(send_email)` finds the registration through the same path (or `use`) that
//!   names the function, without any identifier pasting.

use proc_macro2::{Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType, Type};

use crate::options::{JobOptions, check_job_name};

/// The signature rule, repeated in every signature error.
const SHAPE: &str = "a job function has the shape \
                     `fn(ctx: &mut Ctx, input: In) -> Result<Out, JobError>`";

pub(crate) fn job(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let options = JobOptions::parse(attr)?;
    let func = match syn::parse2::<syn::Item>(item)? {
        syn::Item::Fn(func) => func,
        other => {
            return Err(syn::Error::new(
                other.span(),
                "#[job] applies to a function; ".to_owned() + SHAPE,
            ));
        }
    };
    let sig = Signature::check(&func)?;

    let ident = &func.sig.ident;
    let vis = &func.vis;
    let name = match &options.name {
        Some(name) => name.value(),
        None => {
            let name = default_name(ident);
            check_job_name(&name, ident.span())?;
            name
        }
    };
    let description = match &options.description {
        Some(d) => d.value(),
        None => first_doc_line(&func).unwrap_or_default(),
    };
    let policy = policy_tokens(&options);
    // Checked by the host at deploy, with the egress rules' grammar and messages.
    let hosts: Vec<String> = options.hosts.as_ref().map_or_else(Vec::new, |h| {
        h.value()
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect()
    });

    let run_fn = format_ident!("__stepwise_run_{}", ident.unraw());
    let local = |name| syn::Ident::new(name, Span::mixed_site());
    let (ctx, payload, input, output) = (
        local("ctx"),
        local("payload"),
        local("input"),
        local("output"),
    );
    let in_ty = sig.input;
    let (ctx_ty, out_ty) = (sig.ctx, sig.output);
    // Each conversion goes through a trait named after the rule it checks, written with the
    // author's type, so a signature that does not fit is reported at that type, in words.
    let parse_input = quote_spanned! {in_ty.span()=>
        ::stepwise_sdk::__private::parse_input::<#in_ty>(#name, #payload)
    };
    let ctx_arg = quote_spanned! {ctx_ty.span()=>
        <#ctx_ty as ::stepwise_sdk::__private::CtxArg>::from_ctx(#ctx)
    };
    let encode_output = quote_spanned! {out_ty.span()=>
        <#out_ty as ::stepwise_sdk::__private::JobResult>::encode(#output)
    };
    let doc = format!("Registration of the Stepwise job `{name}`, for `export_jobs!`.");

    Ok(quote! {
        #func

        #[doc(hidden)]
        fn #run_fn(
            #ctx: &mut ::stepwise_sdk::Ctx,
            #payload: &::core::primitive::str,
        ) -> ::core::result::Result<::std::string::String, ::stepwise_sdk::JobError> {
            let #input = #parse_input?;
            let #output = #ident(#ctx_arg, #input);
            #encode_output
        }

        #[doc = #doc]
        #[doc(hidden)]
        #vis mod #ident {
            #[doc = #doc]
            pub const __STEPWISE_JOB: ::stepwise_sdk::__private::JobDef =
                ::stepwise_sdk::__private::JobDef {
                    name: #name,
                    description: #description,
                    policy: #policy,
                    hosts: &[#(#hosts),*],
                    run: super::#run_fn,
                };
        }
    })
}

/// What the expansion needs from a signature that passed the checks.
struct Signature<'a> {
    ctx: &'a Type,
    input: &'a Type,
    output: &'a Type,
}

impl<'a> Signature<'a> {
    /// Rejects, with a message naming the rule, every shape the generated code cannot call.
    fn check(func: &'a ItemFn) -> syn::Result<Self> {
        let sig = &func.sig;
        if let Some(t) = &sig.asyncness {
            return fail(t.span(), "a job function cannot be async");
        }
        if let Some(t) = &sig.constness {
            return fail(t.span(), "a job function cannot be const");
        }
        if let Some(t) = &sig.unsafety {
            return fail(t.span(), "a job function cannot be unsafe");
        }
        if let Some(abi) = &sig.abi {
            return fail(abi.span(), "a job function cannot have an explicit ABI");
        }
        if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
            return fail(sig.generics.span(), "a job function cannot be generic");
        }
        if let Some(v) = &sig.variadic {
            return fail(v.span(), "a job function cannot be variadic");
        }
        if sig.inputs.len() != 2 {
            let span = if sig.inputs.is_empty() {
                sig.paren_token.span.join()
            } else {
                sig.inputs.span()
            };
            return fail(
                span,
                &format!(
                    "a job function takes exactly two arguments, this one takes {}",
                    sig.inputs.len()
                ),
            );
        }
        let mut args = sig.inputs.iter().map(|arg| match arg {
            FnArg::Typed(t) => Ok(&*t.ty),
            FnArg::Receiver(r) => fail(r.span(), "a job function cannot be a method"),
        });
        let ctx_ty = args.next().expect("two arguments")?;
        let input = args.next().expect("two arguments")?;
        match ctx_ty {
            Type::Reference(r) if r.mutability.is_some() => {}
            other => return fail(other.span(), "the first argument must be `&mut Ctx`"),
        }
        match input {
            Type::Reference(r) => {
                return fail(
                    r.span(),
                    "the input must be an owned type, since it is parsed from the JSON payload",
                );
            }
            Type::ImplTrait(t) => {
                return fail(
                    t.span(),
                    "the input must be a concrete type, not `impl Trait`",
                );
            }
            _ => {}
        }
        let output = match &sig.output {
            ReturnType::Default => {
                return fail(
                    sig.paren_token.span.close(),
                    "a job function must return `Result<Out, JobError>`",
                );
            }
            ReturnType::Type(_, ty) => &**ty,
        };
        Ok(Signature {
            ctx: ctx_ty,
            input,
            output,
        })
    }
}

fn fail<T>(span: Span, what: &str) -> syn::Result<T> {
    Err(syn::Error::new(span, format!("{what}; {SHAPE}")))
}

/// `send_email` → `send-email`: dashes read better in URLs and on the command line.
fn default_name(ident: &syn::Ident) -> String {
    ident.unraw().to_string().replace('_', "-")
}

/// The first non-empty line of the function's doc comment, if it has one written inline.
fn first_doc_line(func: &ItemFn) -> Option<String> {
    func.attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        })
        .flat_map(|doc| {
            doc.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .next()
}

fn policy_tokens(o: &JobOptions) -> TokenStream {
    fn opt<T>(value: Option<T>, lit: impl Fn(T) -> Literal) -> TokenStream {
        match value {
            Some(v) => {
                let v = lit(v);
                quote!(::core::option::Option::Some(#v))
            }
            None => quote!(::core::option::Option::None),
        }
    }
    let max_attempts = opt(o.max_attempts, Literal::u32_suffixed);
    let fuel = opt(o.fuel, Literal::u64_suffixed);
    let timeout_ms = opt(o.timeout_ms, Literal::u64_suffixed);
    let memory_bytes = opt(o.memory_bytes, Literal::u64_suffixed);
    let backoff = if o.backoff.is_given() {
        let b = &o.backoff;
        let initial_ms = opt(b.initial_ms, Literal::u64_suffixed);
        let max_ms = opt(b.max_ms, Literal::u64_suffixed);
        let multiplier = opt(b.multiplier, Literal::f64_suffixed);
        let jitter = opt(b.jitter, Literal::f64_suffixed);
        quote! {
            ::core::option::Option::Some(::stepwise_sdk::__private::BackoffSpec {
                initial_ms: #initial_ms,
                max_ms: #max_ms,
                multiplier: #multiplier,
                jitter: #jitter,
            })
        }
    } else {
        quote!(::core::option::Option::None)
    };
    quote! {
        ::stepwise_sdk::__private::Policy {
            max_attempts: #max_attempts,
            backoff: #backoff,
            fuel: #fuel,
            timeout_ms: #timeout_ms,
            memory_bytes: #memory_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<String> {
        job(attr, item).map(|t| t.to_string())
    }

    fn error(item: TokenStream) -> String {
        expand(quote!(), item)
            .expect_err("the item should be rejected")
            .to_string()
    }

    #[test]
    fn name_defaults_to_the_function_name_with_dashes() {
        let out = expand(
            quote!(),
            quote! {
                fn provision_after_payment(ctx: &mut Ctx, input: Payment)
                    -> Result<Receipt, JobError> { todo!() }
            },
        )
        .unwrap();
        assert!(out.contains(r#"name : "provision-after-payment""#), "{out}");
        assert!(out.contains("mod provision_after_payment"), "{out}");
        assert!(
            out.contains("fn __stepwise_run_provision_after_payment"),
            "{out}"
        );
    }

    #[test]
    fn options_override_name_and_description() {
        let out = expand(
            quote!(name = "custom", description = "Given."),
            quote! {
                /// From the docs.
                fn f(ctx: &mut Ctx, input: u32) -> Result<u32, JobError> { Ok(input) }
            },
        )
        .unwrap();
        assert!(out.contains(r#"name : "custom""#), "{out}");
        assert!(out.contains(r#"description : "Given.""#), "{out}");
    }

    #[test]
    fn description_is_the_first_doc_line() {
        let item = quote! {
            ///
            /// Charge, provision and send a receipt.
            ///
            /// More detail that stays out of the description.
            fn f(ctx: &mut Ctx, input: u32) -> Result<u32, JobError> { Ok(input) }
        };
        let func: ItemFn = syn::parse2(item).unwrap();
        assert_eq!(
            first_doc_line(&func).as_deref(),
            Some("Charge, provision and send a receipt.")
        );
    }

    #[test]
    fn policy_leaves_absent_options_to_the_host() {
        let o = JobOptions::parse(quote!(max_attempts = 5, backoff_initial_ms = 200)).unwrap();
        let policy = policy_tokens(&o).to_string();
        assert!(policy.contains("max_attempts : :: core :: option :: Option :: Some (5u32)"));
        assert!(policy.contains("initial_ms : :: core :: option :: Option :: Some (200u64)"));
        assert!(policy.contains("max_ms : :: core :: option :: Option :: None"));
        assert!(policy.contains("fuel : :: core :: option :: Option :: None"));
    }

    #[test]
    fn bad_signatures_are_rejected_with_the_rule() {
        let cases = [
            (
                quote!(
                    async fn f(ctx: &mut Ctx, i: u32) -> Result<u32, JobError> {
                        todo!()
                    }
                ),
                "cannot be async",
            ),
            (
                quote!(
                    fn f<T>(ctx: &mut Ctx, i: T) -> Result<u32, JobError> {
                        todo!()
                    }
                ),
                "cannot be generic",
            ),
            (
                quote!(
                    fn f(i: u32) -> Result<u32, JobError> {
                        todo!()
                    }
                ),
                "exactly two arguments",
            ),
            (
                quote!(
                    fn f(ctx: &Ctx, i: u32) -> Result<u32, JobError> {
                        todo!()
                    }
                ),
                "must be `&mut Ctx`",
            ),
            (
                quote!(
                    fn f(ctx: &mut Ctx, i: &str) -> Result<u32, JobError> {
                        todo!()
                    }
                ),
                "owned type",
            ),
            (
                quote!(
                    fn f(ctx: &mut Ctx, i: u32) {
                        todo!()
                    }
                ),
                "must return `Result<Out, JobError>`",
            ),
            (
                quote!(
                    struct NotAFunction;
                ),
                "applies to a function",
            ),
        ];
        for (item, expected) in cases {
            let message = error(item);
            assert!(message.contains(expected), "{message}");
            assert!(
                message.contains("a job function has the shape"),
                "{message}"
            );
        }
        assert!(
            error(quote!(
                fn f(self, i: u32) -> Result<u32, JobError> {
                    todo!()
                }
            ))
            .contains("method")
        );
    }
}
