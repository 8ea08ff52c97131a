//! What a name may be: DNS labels and names (route and version names, hosts, cookie domains,
//! Kubernetes names in the CLI) and HTTP tokens (header and cookie names).
//!
//! ```
//! use policy_core::{is_dns_name, is_label, is_token};
//! assert!(is_label("v2-canary"));
//! assert!(!is_label("V2"));
//! assert!(is_dns_name("shop.example.com"));
//! assert!(is_token("X-Canary-Version"));
//! assert!(!is_token("x canary"));
//! ```

/// RFC 9110 token characters: what header and cookie names may contain.
pub fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// A DNS-1123 label: what Istio accepts as a subset name, and safe in metric names.
pub fn is_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

/// A lowercase DNS name (RFC 1123): at most 253 bytes of [`is_label`] labels joined by dots.
pub fn is_dns_name(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_label)
}
