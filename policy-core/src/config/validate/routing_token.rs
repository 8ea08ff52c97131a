//! A route's routing token: the value clients do not know that the generated routes require.

use super::fields::Fields;
use crate::config::{ConfigErrors, RoutingToken, DEFAULT_TOKEN_HEADER};
use crate::json::Value;

/// The routing token. Its header may be the routing header itself: the token then travels in
/// that header's value (`VERSION;TOKEN`), one header write instead of two.
pub(super) fn compile_routing_token(path: &str, value: &Value, errors: &mut ConfigErrors) -> Option<RoutingToken> {
    let before = errors.0.len();
    let mut fields = Fields::new(path, value, errors)?;
    let header = fields.header_or("header", DEFAULT_TOKEN_HEADER, errors);
    let value_path = fields.child("value");
    let token = fields.string("value", errors);
    match &token {
        None if fields.take("value").is_none() => errors.add(&value_path, "is required"),
        Some(t) if t.len() < 16 => errors.add(&value_path, "is shorter than 16 characters: too easy to guess"),
        Some(t) if !t.bytes().all(|b| b.is_ascii_graphic()) => errors.add(
            &value_path,
            "may hold visible ASCII characters only (it is a header value matched exactly)",
        ),
        _ => {}
    }
    fields.finish(errors);
    if errors.0.len() != before {
        return None;
    }
    Some(RoutingToken {
        header: header?,
        value: token?,
    })
}
