//! Tenant, queue and job names as validated newtypes: a value of these types has passed its
//! rule (from `stepwise-names`, the one the SDK's macro applies too), whether it came from a
//! JSON body, a path segment or a CLI argument.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use stepwise_names::{Kind, NameError, check};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The rule this name follows.
            pub const KIND: Kind = $kind;

            /// `name`, if it follows the rule.
            pub fn parse(name: &str) -> Result<Self, NameError> {
                check(Self::KIND, name).map(|()| Self(name.to_owned()))
            }

            /// The name.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The name, owned.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = NameError;

            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::parse(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = Cow::<'de, str>::deserialize(d)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                name_schema(Self::KIND)
            }
        }

        impl utoipa::ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

fn name_schema(kind: Kind) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(kind.max_len()))
        .pattern(Some(kind.pattern()))
        .description(Some(format!(
            "A {} name: 1 to {} {}.",
            kind.noun(),
            kind.max_len(),
            kind.alphabet()
        )))
        .into()
}

name_type!(
    /// A tenant's name: 1–64 of `a-z`, `0-9`, `-`, `_`.
    TenantName,
    Kind::Tenant
);
name_type!(
    /// A queue's name: 1–128 ASCII letters, digits, `-`, `_`, `.`.
    QueueName,
    Kind::Queue
);
name_type!(
    /// A job's name: 1–128 ASCII letters, digits, `-`, `_`, `.`.
    JobName,
    Kind::Job
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_when_read_from_json() {
        let q: QueueName = serde_json::from_str("\"billing.v2\"").unwrap();
        assert_eq!(q.as_str(), "billing.v2");
        let err = serde_json::from_str::<QueueName>("\"a/b\"").unwrap_err();
        assert!(err.to_string().contains("'/'"), "{err}");
        assert!(serde_json::from_str::<TenantName>("\"Acme\"").is_err());
        assert!(serde_json::from_str::<JobName>(&format!("\"{}\"", "j".repeat(129))).is_err());
        assert_eq!(serde_json::to_string(&q).unwrap(), "\"billing.v2\"");
    }
}
