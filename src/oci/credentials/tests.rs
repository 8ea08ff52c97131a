use super::*;

fn from(config: &str, registry: &str) -> Result<Credentials, OciError> {
    Credentials::from_docker_config(config.as_bytes(), Path::new("/x/config.json"), registry)
}

fn login(c: &Credentials) -> Option<(String, String)> {
    c.login.clone()
}

#[test]
fn reads_base64_auth() {
    let c = from(r#"{"auths":{"r.example":{"auth":"dXNlcjpwYTpzcw=="}}}"#, "r.example").unwrap();
    assert_eq!(login(&c), Some(("user".into(), "pa:ss".into())));
    assert_eq!(c.source(), &CredentialSource::DockerConfig("/x/config.json".into()));
}

#[test]
fn reads_username_and_password_fields() {
    let c = from(
        r#"{"auths":{"r.example":{"username":"u","password":"p"}}}"#,
        "r.example",
    )
    .unwrap();
    assert_eq!(login(&c), Some(("u".into(), "p".into())));
}

#[test]
fn matches_url_shaped_keys_and_ports() {
    let config = r#"{"auths":{"https://r.example:5000/v1/":{"auth":"dTpw"}}}"#;
    assert_eq!(
        login(&from(config, "r.example:5000").unwrap()),
        Some(("u".into(), "p".into()))
    );
    assert_eq!(
        from(config, "r.example").unwrap().source(),
        &CredentialSource::Anonymous
    );
}

#[test]
fn uses_the_acr_identity_token() {
    // What `az acr login` writes: the all-zero user with an empty password, and the token beside.
    let config = r#"{"auths":{"x.azurecr.io":{"auth":"MDAwMDAwMDAtMDAwMC0wMDAwLTAwMDAtMDAwMDAwMDAwMDAwOg==","identitytoken":"tok"}}}"#;
    assert_eq!(
        login(&from(config, "x.azurecr.io").unwrap()),
        Some((TOKEN_USERNAME.into(), "tok".into()))
    );
}

#[test]
fn unknown_registries_and_empty_entries_are_anonymous() {
    assert_eq!(
        from(r#"{"auths":{"a.example":{"auth":"dTpw"}}}"#, "b.example")
            .unwrap()
            .source(),
        &CredentialSource::Anonymous
    );
    assert_eq!(
        from(r#"{"auths":{"b.example":{}}}"#, "b.example").unwrap().source(),
        &CredentialSource::Anonymous
    );
    assert_eq!(from("{}", "b.example").unwrap().source(), &CredentialSource::Anonymous);
}

#[test]
fn broken_configs_are_errors_without_the_secret() {
    let error = from(r#"{"auths":{"r.example":{"auth":"!!!secret!!!"}}}"#, "r.example")
        .unwrap_err()
        .to_string();
    assert!(error.contains("not base64") && !error.contains("secret!!!"), "{error}");
    let error = from("{not json", "r.example").unwrap_err().to_string();
    assert!(error.contains("/x/config.json"), "{error}");
}

#[test]
fn a_missing_helper_is_a_clear_error() {
    let error = from(r#"{"credsStore":"sticky-canary-no-such-helper"}"#, "r.example")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("docker-credential-sticky-canary-no-such-helper") && error.contains(USERNAME_VARIABLE),
        "{error}"
    );
}

#[test]
fn debug_output_redacts_the_password() {
    let c = Credentials::basic("u", "hunter2", CredentialSource::Environment);
    assert!(!format!("{c:?}").contains("hunter2"));
}
