//! The `metadata` of the objects built as YAML maps (Istio, Gateway API): one shape for every
//! writer. The core Kubernetes kinds use `k8s-openapi`'s typed `ObjectMeta` instead.

use serde_yaml_ng::{Mapping, Value as Yaml};

/// Metadata: name, namespace and, when given, labels (in that order, as `kubectl` prints them).
pub(super) fn metadata(name: &str, namespace: &str, labels: Option<Yaml>) -> Yaml {
    let mut m = Mapping::new();
    m.insert("name".into(), name.into());
    m.insert("namespace".into(), namespace.into());
    if let Some(labels) = labels {
        m.insert("labels".into(), labels);
    }
    Yaml::Mapping(m)
}
