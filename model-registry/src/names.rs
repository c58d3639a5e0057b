//! Validated names: parse, don't validate later.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use crate::RegistryError;

macro_rules! validated_string {
    ($(#[$doc:meta])* $name:ident, $check:path, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, RegistryError> {
                if $check(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(RegistryError::InvalidName { what: $what, value: s.to_owned() })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", "description": $what })
            }
        }
    };
}

validated_string!(
    /// A model's name: lowercase letters, digits, `.`, `_`, `-`; 1 to 64
    /// characters, starting with a letter or digit.
    ModelName,
    is_model_name,
    "model name"
);

validated_string!(
    /// A model version: letters, digits, `.`, `_`, `+`, `-`; 1 to 64
    /// characters, starting with a letter or digit; never `active` or
    /// `previous` (the pointer files' names).
    ModelVersion,
    is_model_version,
    "model version"
);

validated_string!(
    /// A relative file path inside a model version: `/`-separated, no empty,
    /// `.` or `..` components, no absolute paths, backslashes, drive letters
    /// or control characters.
    RelativePath,
    is_relative_path,
    "relative file path"
);

impl RelativePath {
    /// The path below `base`.
    pub fn under(&self, base: &Path) -> PathBuf {
        self.0.split('/').fold(base.to_owned(), |p, c| p.join(c))
    }
}

fn is_model_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

fn is_model_version(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'))
        && !matches!(s, "active" | "previous")
}

fn is_relative_path(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 1024
        && s.split('/').count() <= 16
        && s.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.len() <= 255
                && !c
                    .chars()
                    .any(|ch| ch.is_control() || matches!(ch, '\\' | ':'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_versions_and_paths_refuse_what_could_escape() {
        assert!(ModelName::parse("smollm2-135m-instruct").is_ok());
        for bad in ["", "Upper", "../x", "a/b", ".hidden", "-x", &"a".repeat(65)] {
            assert!(ModelName::parse(bad).is_err(), "{bad}");
        }
        assert!(ModelVersion::parse("v2").is_ok());
        assert!(ModelVersion::parse("1.0.0+q4_1").is_ok());
        for bad in ["", "active", "previous", "..", "a/b", ".x"] {
            assert!(ModelVersion::parse(bad).is_err(), "{bad}");
        }
        assert!(RelativePath::parse("model/model.bin").is_ok());
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "..",
            "a//b",
            "./a",
            "a\\b",
            "C:x",
            "a/\0",
        ] {
            assert!(RelativePath::parse(bad).is_err(), "{bad:?}");
        }
    }
}
