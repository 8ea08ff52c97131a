//! `plugin`: how the filter is installed (form, module source and digest, phase, fail
//! strategy, pull settings).

use super::fields::is_placeholder_digest;
use crate::oci::is_sha256_hex;
use crate::render::spec::app::{FailStrategy, ModuleSource, Plugin, PluginForm, SpecErrors};
use crate::render::spec::raw::RawPlugin;

const PHASES: &[&str] = &["AUTHN", "AUTHZ", "STATS", "UNSPECIFIED_PHASE"];
const PULL_POLICIES: &[&str] = &["IfNotPresent", "Always"];

/// The plugin settings (`None` when one is wrong), and a warning for a placeholder digest.
pub(super) fn check(
    raw: RawPlugin,
    minor: Option<u32>,
    errors: &mut SpecErrors,
    warnings: &mut Vec<String>,
) -> Option<Plugin> {
    let plugin = check_fields(raw, minor, errors);
    if let Some(Plugin {
        source: ModuleSource::Oci { digest: hex, .. } | ModuleSource::Url { sha256: hex, .. },
        ..
    }) = &plugin
    {
        if is_placeholder_digest(hex) {
            warnings.push(format!(
                "plugin.sha256: {hex} is a placeholder: istio-agent will refuse the module (digest mismatch) and the gateway runs without the filter; put the digest `sticky-canary push` printed"
            ));
        }
    }
    plugin
}

fn check_fields(raw: RawPlugin, minor: Option<u32>, errors: &mut SpecErrors) -> Option<Plugin> {
    let before = errors.0.len();
    let form = match raw.form.as_deref() {
        // The AKS add-on's admission webhook refuses WasmPlugin; EnvoyFilters are allowed.
        None => PluginForm::EnvoyFilter,
        Some(text) => PluginForm::parse(text).unwrap_or_else(|| {
            errors.add(
                "plugin.form",
                format!("{text:?} is not one of {}", PluginForm::spellings()),
            );
            PluginForm::WasmPlugin
        }),
    };
    if let Some(why) = minor.and_then(|m| form.unsupported_on(m)) {
        errors.add("plugin.form", why);
    }
    let sha256 = raw
        .sha256
        .as_deref()
        .map(|s| s.strip_prefix("sha256:").unwrap_or(s).to_ascii_lowercase());
    if let Some(s) = &sha256 {
        if !is_sha256_hex(s) {
            errors.add("plugin.sha256", "must be 64 hex digits (optionally after \"sha256:\")");
        }
    }
    let source = match (form, raw.url.as_deref()) {
        (PluginForm::EnvoyFilterInline, None) => Some(ModuleSource::Inline),
        (PluginForm::EnvoyFilterInline, Some(_)) => {
            errors.add(
                "plugin.url",
                "is not used by the envoyfilter-inline form (the module travels inside the EnvoyFilter): remove it",
            );
            None
        }
        (_, None) => {
            errors.add(
                "plugin.url",
                "is required: oci://REGISTRY/REPO:TAG (e.g. pushed with `sticky-canary push`) or https://.../sticky_canary_filter.wasm",
            );
            None
        }
        (_, Some(url)) if url.starts_with("oci://") => {
            let from_url = url.rsplit_once("@sha256:").map(|(_, d)| d.to_ascii_lowercase());
            match (from_url, sha256.clone()) {
                (Some(a), Some(b)) if a != b => {
                    errors.add("plugin.sha256", "differs from the digest in plugin.url");
                    None
                }
                (Some(d), _) | (None, Some(d)) => Some(ModuleSource::Oci {
                    url: url.to_owned(),
                    digest: d,
                }),
                (None, None) => {
                    errors.add(
                        "plugin.sha256",
                        "is required for an oci:// url: the image manifest digest that `sticky-canary push` prints (Istio compares it with the manifest digest, not with the .wasm's SHA-256)",
                    );
                    None
                }
            }
        }
        (_, Some(url)) if url.starts_with("https://") || url.starts_with("file://") => Some(ModuleSource::Url {
            url: url.to_owned(),
            sha256: sha256.clone().unwrap_or_else(|| crate::sha256_hex(crate::FILTER_WASM)),
        }),
        (_, Some(url)) => {
            errors.add(
                "plugin.url",
                format!("{url:?} must start with oci://, https:// or file:// (plain http:// is not accepted)"),
            );
            None
        }
    };
    let phase_set_for_envoyfilter = raw.phase.is_some() && !form.is_istio_extension();
    let phase = raw.phase.unwrap_or_else(|| "AUTHZ".to_owned());
    if !PHASES.contains(&phase.as_str()) {
        errors.add("plugin.phase", format!("{phase:?} is not one of {}", PHASES.join(", ")));
    }
    if phase_set_for_envoyfilter {
        errors.add(
            "plugin.phase",
            "only applies to the wasmplugin and trafficextension forms (an EnvoyFilter is inserted just before the router)",
        );
    }
    let fail_strategy = match raw.fail_strategy.as_deref() {
        None | Some("FAIL_OPEN") => FailStrategy::FailOpen,
        Some("FAIL_CLOSE") => FailStrategy::FailClose,
        Some("FAIL_RELOAD") => {
            if minor.is_some_and(|m| m < 27) {
                errors.add(
                    "plugin.fail_strategy",
                    "FAIL_RELOAD exists from Istio 1.27 (revision asm-1-27): use FAIL_OPEN or FAIL_CLOSE on older revisions",
                );
            }
            FailStrategy::FailReload
        }
        Some(other) => {
            errors.add(
                "plugin.fail_strategy",
                format!("{other:?} is not one of \"FAIL_OPEN\", \"FAIL_CLOSE\", \"FAIL_RELOAD\""),
            );
            FailStrategy::FailOpen
        }
    };
    if let Some(policy) = &raw.image_pull_policy {
        if !PULL_POLICIES.contains(&policy.as_str()) {
            errors.add(
                "plugin.image_pull_policy",
                format!("{policy:?} is not one of {}", PULL_POLICIES.join(", ")),
            );
        }
    }
    if raw.image_pull_secret.is_some() && !form.is_istio_extension() {
        errors.add(
            "plugin.image_pull_secret",
            "only the wasmplugin and trafficextension forms can use a pull secret: with an EnvoyFilter, istio-agent pulls anonymously (make the repository anonymously readable, or use an https:// url or the inline form)",
        );
    }
    if raw.image_pull_policy.is_some() && !form.is_istio_extension() {
        errors.add(
            "plugin.image_pull_policy",
            "only applies to the wasmplugin and trafficextension forms",
        );
    }
    if errors.0.len() != before {
        return None;
    }
    Some(Plugin {
        form,
        source: source?,
        phase,
        fail_strategy,
        image_pull_policy: raw.image_pull_policy,
        image_pull_secret: raw.image_pull_secret,
    })
}
