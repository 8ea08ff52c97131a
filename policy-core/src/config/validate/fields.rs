//! Reading one JSON object's members as typed fields, each problem recorded at its field path;
//! and the checks of header and cookie names that many fields share.

use crate::config::ConfigErrors;
use crate::json::Value;
use crate::names::is_label;
use crate::names::is_token;

/// Reads the members of one JSON object, so that unknown and duplicated
/// member names are reported once every known one has been taken.
pub(super) struct Fields<'a> {
    path: String,
    members: &'a [(String, Value)],
    taken: Vec<bool>,
}

impl<'a> Fields<'a> {
    /// The members of `value`, or `None` (and an error at `path`) when it is not an object.
    pub(super) fn new(path: &str, value: &'a Value, errors: &mut ConfigErrors) -> Option<Fields<'a>> {
        match value {
            Value::Object(members) => Some(Fields {
                path: path.to_owned(),
                members,
                taken: vec![false; members.len()],
            }),
            other => {
                errors.add(path, format!("must be an object, not {}", other.kind()));
                None
            }
        }
    }

    /// The field path of member `name`.
    pub(super) fn child(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{}", self.path, name)
        }
    }

    /// The first member called `name`, marked as known.
    pub(super) fn take(&mut self, name: &str) -> Option<&'a Value> {
        let members = self.members;
        let mut found = None;
        for (i, (key, value)) in members.iter().enumerate() {
            if key == name && found.is_none() {
                if let Some(flag) = self.taken.get_mut(i) {
                    *flag = true;
                }
                found = Some(value);
            }
        }
        found
    }

    /// Reports every member given twice, and every one no reader took.
    pub(super) fn finish(self, errors: &mut ConfigErrors) {
        for (i, (key, _)) in self.members.iter().enumerate() {
            let path = self.child(key);
            let first = self.members.iter().position(|(k, _)| k == key) == Some(i);
            if !first {
                errors.add(&path, "is given more than once");
            } else if !self.taken.get(i).copied().unwrap_or(false) {
                errors.add(&path, "unknown field");
            }
        }
    }

    /// An optional string member.
    pub(super) fn string(&mut self, name: &str, errors: &mut ConfigErrors) -> Option<String> {
        let path = self.child(name);
        match self.take(name)? {
            Value::String(s) => Some(s.clone()),
            other => {
                errors.add(&path, format!("must be a string, not {}", other.kind()));
                None
            }
        }
    }

    /// An optional boolean member; `default` when absent or not a boolean.
    pub(super) fn bool(&mut self, name: &str, default: bool, errors: &mut ConfigErrors) -> bool {
        let path = self.child(name);
        match self.take(name) {
            None => default,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                errors.add(&path, format!("must be true or false, not {}", other.kind()));
                default
            }
        }
    }

    /// The required `name` member, a DNS label; `what` describes it in the error ("version name (...)").
    pub(super) fn label(&mut self, what: &str, errors: &mut ConfigErrors) -> Option<String> {
        let path = self.child("name");
        let name = self.string("name", errors);
        match name {
            None if self.take("name").is_none() => {
                errors.add(&path, "is required");
                None
            }
            Some(n) if !is_label(&n) => {
                errors.add(&path, format!("{n:?} is not a valid {what}"));
                None
            }
            other => other,
        }
    }

    /// An optional array member.
    pub(super) fn array(&mut self, name: &str, errors: &mut ConfigErrors) -> Option<&'a [Value]> {
        let path = self.child(name);
        match self.take(name)? {
            Value::Array(items) => Some(items),
            other => {
                errors.add(&path, format!("must be an array, not {}", other.kind()));
                None
            }
        }
    }

    /// A required array member; `missing` is the error when it is absent ("is required").
    pub(super) fn required_array(
        &mut self,
        name: &str,
        missing: &str,
        errors: &mut ConfigErrors,
    ) -> Option<&'a [Value]> {
        let items = self.array(name, errors);
        if items.is_none() && self.take(name).is_none() {
            errors.add(self.child(name), missing);
        }
        items
    }

    /// An optional header-name member, lowercased and checked; `None` when absent or invalid.
    pub(super) fn header(&mut self, name: &str, errors: &mut ConfigErrors) -> Option<String> {
        let path = self.child(name);
        self.string(name, errors).and_then(|h| header_name(&path, &h, errors))
    }

    /// A header-name member, lowercased and checked; `default` when absent.
    pub(super) fn header_or(&mut self, name: &str, default: &str, errors: &mut ConfigErrors) -> Option<String> {
        let path = self.child(name);
        match self.string(name, errors) {
            Some(h) => header_name(&path, &h, errors),
            None => Some(default.to_owned()),
        }
    }
}

/// Headers that carry framing, identity or our own cookies: never a routing or override header.
const RESERVED_HEADERS: &[&str] = &[
    "cookie",
    "set-cookie",
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "expect",
];

/// A header name we may set or read: a token, not reserved; lowercased.
pub(super) fn header_name(path: &str, name: &str, errors: &mut ConfigErrors) -> Option<String> {
    if !is_token(name) {
        errors.add(
            path,
            format!("{name:?} is not a valid header name (letters, digits and !#$%&'*+-.^_`|~ only)"),
        );
        return None;
    }
    let lower = name.to_ascii_lowercase();
    if RESERVED_HEADERS.contains(&lower.as_str()) {
        errors.add(path, format!("{name:?} is reserved by HTTP and cannot be used here"));
        return None;
    }
    Some(lower)
}

/// A cookie name: a token, kept as written (cookie names are case-sensitive).
pub(super) fn cookie_name(path: &str, name: &str, errors: &mut ConfigErrors) -> Option<String> {
    if is_token(name) {
        Some(name.to_owned())
    } else {
        errors.add(
            path,
            format!("{name:?} is not a valid cookie name (letters, digits and !#$%&'*+-.^_`|~ only)"),
        );
        None
    }
}
