//! A route's key chain: where the key comes from, tried in order, and the settings of the
//! client-id cookie issued when nothing else yields a key.

use super::fields::{cookie_name, header_name, Fields};
use crate::client_id::SECONDS_PER_DAY;
use crate::config::{ConfigErrors, KeySpec, NewClientId, SameSite, MAX_COOKIE_AGE_SECONDS};
use crate::json::Value;
use crate::names::is_dns_name;

/// The route's required `key_chain` member, with at least one source.
pub(super) fn key_chain_field(fields: &mut Fields<'_>, errors: &mut ConfigErrors) -> Vec<KeySpec> {
    let chain_path = fields.child("key_chain");
    match fields.required_array("key_chain", "is required", errors) {
        None => Vec::new(),
        Some([]) => {
            errors.add(&chain_path, "is empty: give at least one key source");
            Vec::new()
        }
        Some(items) => compile_key_chain(&chain_path, items, errors),
    }
}

fn compile_key_chain(path: &str, items: &[Value], errors: &mut ConfigErrors) -> Vec<KeySpec> {
    let mut chain = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        let spec = match item {
            Value::String(s) if s == "client_address" => Some(KeySpec::ClientAddress),
            Value::Object(members) if members.len() == 1 => {
                let Some((kind, inner)) = members.first() else {
                    continue;
                };
                let inner_path = format!("{item_path}.{kind}");
                match (kind.as_str(), inner) {
                    ("cookie", Value::String(name)) => cookie_name(&inner_path, name, errors).map(KeySpec::Cookie),
                    ("header", Value::String(name)) => header_name(&inner_path, name, errors).map(KeySpec::Header),
                    ("identity_header", Value::String(name)) => {
                        header_name(&inner_path, name, errors).map(KeySpec::IdentityHeader)
                    }
                    ("new_client_id", settings) => {
                        compile_new_client_id(&inner_path, settings, errors).map(KeySpec::NewClientId)
                    }
                    ("cookie" | "header" | "identity_header", other) => {
                        errors.add(
                            &inner_path,
                            format!("must be a string (the name), not {}", other.kind()),
                        );
                        None
                    }
                    _ => {
                        errors.add(
                            &inner_path,
                            "unknown key source (cookie, header, identity_header, new_client_id or \"client_address\")",
                        );
                        None
                    }
                }
            }
            _ => {
                errors.add(
                    &item_path,
                    "must be {\"cookie\": NAME}, {\"header\": NAME}, {\"identity_header\": NAME}, {\"new_client_id\": {...}} or \"client_address\"",
                );
                None
            }
        };
        let Some(spec) = spec else { continue };
        if chain.contains(&spec) {
            errors.add(&item_path, "repeats an earlier key source");
            continue;
        }
        if let Some(last) = chain.last() {
            if matches!(last, KeySpec::NewClientId(_) | KeySpec::ClientAddress) {
                errors.add(
                    &item_path,
                    "can never be reached: new_client_id and client_address always yield a key, so they must come last",
                );
                continue;
            }
        }
        chain.push(spec);
    }
    chain
}

/// The settings of the client-id cookie; each one has a default.
fn compile_new_client_id(path: &str, value: &Value, errors: &mut ConfigErrors) -> Option<NewClientId> {
    let before = errors.0.len();
    let mut fields = Fields::new(path, value, errors)?;
    let cookie_path = fields.child("cookie");
    let cookie = match fields.string("cookie", errors) {
        Some(name) => cookie_name(&cookie_path, &name, errors),
        None => Some("sticky-canary-id".to_owned()),
    };
    let path_attr = cookie_path_field(&mut fields, errors);
    let domain = domain_field(&mut fields, errors);
    let errors_before_age = errors.0.len();
    let max_age_seconds = max_age_field(&mut fields, errors);
    // Compared with max_age_seconds only when that one is valid.
    let max_age_valid = errors.0.len() == errors_before_age;
    let refresh_after_days = refresh_field(&mut fields, max_age_valid.then_some(max_age_seconds), errors);
    let http_only = fields.bool("http_only", true, errors);
    let secure = fields.bool("secure", true, errors);
    let same_site = same_site_field(&mut fields, secure, errors);
    fields.finish(errors);
    if errors.0.len() != before {
        return None;
    }
    let mut settings = NewClientId {
        cookie: cookie?,
        path: path_attr,
        domain,
        max_age_seconds,
        http_only,
        secure,
        same_site,
        refresh_after_days,
        attributes: String::new(),
    };
    settings.attributes = attributes(&settings);
    Some(settings)
}

/// The cookie's `path`: `/` unless given; starts with `/`, no `;` or control characters.
fn cookie_path_field(fields: &mut Fields<'_>, errors: &mut ConfigErrors) -> String {
    let cookie_path_attr = fields.child("path");
    let path_attr = fields.string("path", errors).unwrap_or_else(|| "/".to_owned());
    if !path_attr.starts_with('/')
        || path_attr
            .bytes()
            .any(|b| b < 0x20 || b == 0x7f || b == b';' || b >= 0x80)
    {
        errors.add(
            &cookie_path_attr,
            format!("{path_attr:?} must start with '/' and hold no ';' or control characters"),
        );
    }
    path_attr
}

/// The cookie's optional `domain`: a DNS name, with or without a leading dot.
fn domain_field(fields: &mut Fields<'_>, errors: &mut ConfigErrors) -> Option<String> {
    let domain_path = fields.child("domain");
    let domain = fields.string("domain", errors);
    if let Some(d) = &domain {
        if !is_dns_name(d.strip_prefix('.').unwrap_or(d)) {
            errors.add(&domain_path, format!("{d:?} is not a domain name"));
        }
    }
    domain
}

/// `max_age_seconds`: 30 days unless given; at most what browsers allow.
fn max_age_field(fields: &mut Fields<'_>, errors: &mut ConfigErrors) -> u64 {
    let age_path = fields.child("max_age_seconds");
    match fields.take("max_age_seconds") {
        None => 30 * 24 * 3600,
        Some(Value::Number(text)) => match text.parse::<u64>() {
            Ok(n) if n <= MAX_COOKIE_AGE_SECONDS => n,
            Ok(n) => {
                errors.add(
                    &age_path,
                    format!("{n} is above {MAX_COOKIE_AGE_SECONDS} (400 days, what browsers allow)"),
                );
                0
            }
            Err(_) => {
                errors.add(&age_path, format!("{text} is not a whole number of seconds"));
                0
            }
        },
        Some(other) => {
            errors.add(&age_path, format!("must be a number, not {}", other.kind()));
            0
        }
    }
}

/// `refresh_after_days`: 1 unless given; shorter than `max_age_seconds` (when that is valid).
fn refresh_field(fields: &mut Fields<'_>, max_age_seconds: Option<u64>, errors: &mut ConfigErrors) -> u32 {
    let refresh_path = fields.child("refresh_after_days");
    match fields.take("refresh_after_days") {
        None => 1,
        Some(Value::Number(text)) => match text.parse::<u32>() {
            Ok(0) => {
                errors.add(&refresh_path, "must be at least 1 (a day)");
                1
            }
            Ok(days) => match max_age_seconds {
                Some(max_age) if u64::from(days) * SECONDS_PER_DAY >= max_age => {
                    errors.add(
                        &refresh_path,
                        format!(
                            "{days} day(s) is not shorter than max_age_seconds ({max_age} s): the cookie would expire before its refresh"
                        ),
                    );
                    1
                }
                _ => days,
            },
            Err(_) => {
                errors.add(&refresh_path, format!("{text} is not a whole number of days"));
                1
            }
        },
        Some(other) => {
            errors.add(&refresh_path, format!("must be a number, not {}", other.kind()));
            1
        }
    }
}

/// `same_site`: `"Lax"` unless given; `"None"` only with `secure`.
fn same_site_field(fields: &mut Fields<'_>, secure: bool, errors: &mut ConfigErrors) -> SameSite {
    let same_site_path = fields.child("same_site");
    let same_site = match fields.string("same_site", errors).as_deref() {
        None | Some("Lax") => SameSite::Lax,
        Some("Strict") => SameSite::Strict,
        Some("None") => SameSite::None,
        Some(other) => {
            errors.add(
                &same_site_path,
                format!("{other:?} is not one of \"Strict\", \"Lax\", \"None\""),
            );
            SameSite::Lax
        }
    };
    if same_site == SameSite::None && !secure {
        errors.add(
            &same_site_path,
            "\"None\" needs secure: true (browsers drop the cookie otherwise)",
        );
    }
    same_site
}

/// The Set-Cookie attributes after `NAME=VALUE`, rendered once: `; Path=/; Max-Age=...`.
fn attributes(settings: &NewClientId) -> String {
    let mut attributes = format!("; Path={}", settings.path);
    if let Some(d) = &settings.domain {
        attributes.push_str("; Domain=");
        attributes.push_str(d);
    }
    attributes.push_str(&format!("; Max-Age={}", settings.max_age_seconds));
    if settings.http_only {
        attributes.push_str("; HttpOnly");
    }
    if settings.secure {
        attributes.push_str("; Secure");
    }
    attributes.push_str("; SameSite=");
    attributes.push_str(settings.same_site.as_str());
    attributes
}
