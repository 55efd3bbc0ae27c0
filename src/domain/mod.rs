//! Pure types and rules of Switchboard: ids, organisations, providers, apps, agents, phone
//! services, calls and languages, plus the validation that makes invalid values unrepresentable.
//!
//! Nothing here does I/O or knows about SQL, HTTP or Twilio (DESIGN invariant 1): storage maps
//! rows into these types and the HTTP layer serialises them.

pub mod agent;
pub mod analytics;
pub mod app;
pub mod audit;
pub mod automation;
pub mod call;
pub mod cost;
pub mod event;
pub mod ids;
pub mod languages;
pub mod org;
pub mod phone_number;
pub mod provider;
pub mod recording;
pub mod template;
pub mod ticket;
pub mod time;
pub mod validation;

/// Declares a closed set of values stored and exchanged as fixed strings: serde, `as_str`,
/// `FromStr` (with an error that lists the allowed values) and an OpenAPI enum schema.
macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        pub enum $name {
            $(#[serde(rename = $text)] #[schema(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value's wire and storage spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "`{other}` is not one of: {}",
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}
pub(crate) use text_enum;
