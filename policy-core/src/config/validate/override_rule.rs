//! A route's tester override: the header that forces a version, the versions it may force, and
//! the optional shared secret that must come with it.

use super::fields::Fields;
use crate::config::{ConfigErrors, Override, OverrideSecret, Version};
use crate::json::Value;

/// The route's `override` member; `versions` and `routing_header` are the route's, to check against.
pub(super) fn compile_override(
    path: &str,
    value: &Value,
    versions: &[Version],
    routing_header: Option<&str>,
    errors: &mut ConfigErrors,
) -> Option<Override> {
    let before = errors.0.len();
    let mut fields = Fields::new(path, value, errors)?;
    let header_path = fields.child("header");
    let header = fields.header_or("header", "x-canary-force", errors);
    if header.is_some() && header.as_deref() == routing_header {
        errors.add(&header_path, "must differ from the routing header");
    }
    let allow_path = fields.child("allow");
    let mut allow = Vec::new();
    match fields.required_array("allow", "is required: the versions testers may force", errors) {
        None => {}
        Some([]) => errors.add(&allow_path, "is empty: list the versions testers may force"),
        Some(items) => {
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{allow_path}[{i}]");
                match item {
                    Value::String(name) => match versions.iter().position(|v| &v.name == name) {
                        Some(index) if allow.contains(&index) => {
                            errors.add(&item_path, format!("{name:?} is listed twice"))
                        }
                        Some(index) => allow.push(index),
                        None => errors.add(&item_path, format!("{name:?} is not one of this route's versions")),
                    },
                    other => errors.add(&item_path, format!("must be a string, not {}", other.kind())),
                }
            }
        }
    }
    let secret_header_path = fields.child("secret_header");
    let secret_header = fields.header("secret_header", errors);
    let secret_path = fields.child("secret");
    let secret = fields.string("secret", errors);
    fields.finish(errors);
    let secret = match (secret_header, secret) {
        (Some(header), Some(value)) => {
            if value.len() < 16 {
                errors.add(&secret_path, "is shorter than 16 characters: too easy to guess");
            }
            Some(OverrideSecret {
                header,
                value: value.into_bytes(),
            })
        }
        (Some(_), None) => {
            errors.add(&secret_path, "is required when secret_header is set");
            None
        }
        (None, Some(_)) => {
            errors.add(&secret_header_path, "is required when secret is set");
            None
        }
        (None, None) => None,
    };
    if let (Some(h), Some(s)) = (&header, &secret) {
        if h == &s.header {
            errors.add(&secret_header_path, "must differ from the override header");
        }
    }
    if errors.0.len() != before {
        return None;
    }
    Some(Override {
        header: header?,
        allow,
        secret,
    })
}
