use super::*;

#[test]
fn minimal_spec_takes_documented_defaults() {
    let spec: LingmaInstanceSpec =
        serde_json::from_value(serde_json::json!({"accounts": {"secretRef": {"name": "acc"}}}))
            .expect("minimal spec parses");
    assert_eq!(spec.replicas, 1);
    assert_eq!(spec.accounts.secret_ref.key, "accounts");
    assert_eq!(spec.lingma.source, SourceType::Marketplace);
    assert_eq!(spec.defaults.model, "org_auto");
    assert_eq!(spec.defaults.ask_mode, AskMode::Chat);
    assert!(spec.auto_login.enabled);
    assert_eq!(spec.limits.max_concurrent_chats, 1);
    assert_eq!(
        (
            spec.limits.quota_pause_seconds,
            spec.limits.quota_pause_max_seconds,
            spec.limits.quota_error_codes.as_slice()
        ),
        (30, 900, [110].as_slice())
    );
    assert_eq!(spec.storage.size, "2Gi");
}

#[test]
fn spec_without_accounts_is_rejected() {
    let parsed = serde_json::from_value::<LingmaInstanceSpec>(serde_json::json!({"replicas": 2}));
    assert!(parsed.is_err());
}

#[test]
fn schema_carries_validation_scale_and_columns() {
    let yaml = crd_yaml().expect("crd serializes");
    let crd: serde_json::Value = serde_yaml::from_str(&yaml).expect("crd yaml parses");
    let version = &crd["spec"]["versions"][0];
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(
        spec["properties"]["replicas"]["minimum"].as_f64(),
        Some(0.0)
    );
    assert_eq!(spec["required"], serde_json::json!(["accounts"]));
    assert_eq!(
        spec["properties"]["defaults"]["properties"]["askMode"]["enum"],
        serde_json::json!(["chat", "agent"])
    );
    assert_eq!(
        spec["properties"]["lingma"]["properties"]["source"]["enum"],
        serde_json::json!(["image", "marketplace", "vsix"])
    );
    assert_eq!(
        version["subresources"]["scale"]["labelSelectorPath"],
        ".status.selector"
    );
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .expect("printer columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(
        columns.contains(&"Ready") && columns.contains(&"Logged-In") && columns.contains(&"Age")
    );
    assert_eq!(
        crd["spec"]["names"]["shortNames"],
        serde_json::json!(["lingma"])
    );
}

fn rules(schema: &serde_json::Value) -> Vec<&str> {
    schema["x-kubernetes-validations"]
        .as_array()
        .map(|rules| rules.iter().filter_map(|r| r["rule"].as_str()).collect())
        .unwrap_or_default()
}

fn cr(name: &str, spec: serde_json::Value) -> LingmaInstance {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "lingma.io/v1alpha1", "kind": "LingmaInstance",
        "metadata": {"name": name, "namespace": "lingma"},
        "spec": spec,
    }))
    .expect("valid LingmaInstance")
}

/// The CEL rules evaluated as the API server would (kube's client-side CEL evaluator).
#[test]
fn cel_rules_accept_valid_instances_and_refuse_what_they_guard() {
    use kube::core::cel::{validate_cel, validate_cel_update};
    let accounts = serde_json::json!({"secretRef": {"name": "acc"}});
    let base = cr("team", serde_json::json!({"accounts": accounts}));
    assert!(validate_cel(&base).is_ok(), "{:?}", validate_cel(&base));

    let mut resized = base.clone();
    resized.spec.storage.size = "10Gi".to_owned();
    assert!(
        validate_cel_update(&resized, &base).is_err(),
        "storage is immutable"
    );
    let mut scaled = base.clone();
    scaled.spec.replicas = 5;
    assert!(
        validate_cel_update(&scaled, &base).is_ok(),
        "other fields stay mutable"
    );

    let long = cr(&"a".repeat(53), serde_json::json!({"accounts": accounts}));
    assert!(validate_cel(&long).is_err(), "names over 52 characters");
    let digit = cr("1team", serde_json::json!({"accounts": accounts}));
    assert!(
        validate_cel(&digit).is_err(),
        "a Service name starts with a letter"
    );

    let plain = cr(
        "team",
        serde_json::json!({"accounts": accounts,
            "lingma": {"source": "vsix", "vsixUrl": "http://example.invalid/l.vsix"}}),
    );
    assert!(validate_cel(&plain).is_err(), "vsixUrl is https only");
    let missing = cr(
        "team",
        serde_json::json!({"accounts": accounts, "lingma": {"source": "vsix"}}),
    );
    assert!(validate_cel(&missing).is_err(), "vsix needs a URL");
    let tls = cr(
        "team",
        serde_json::json!({"accounts": accounts,
            "lingma": {"source": "vsix", "vsixUrl": "https://example.invalid/l.vsix"},
            "defaults": {"dedicatedDomainUrl": "https://lingma.example.invalid"}}),
    );
    assert!(validate_cel(&tls).is_ok(), "{:?}", validate_cel(&tls));
    let domain = cr(
        "team",
        serde_json::json!({"accounts": accounts,
            "defaults": {"dedicatedDomainUrl": "http://lingma.example.invalid"}}),
    );
    assert!(
        validate_cel(&domain).is_err(),
        "dedicatedDomainUrl is https only"
    );

    let inverted = cr(
        "team",
        serde_json::json!({"accounts": accounts,
            "limits": {"quotaPauseSeconds": 600, "quotaPauseMaxSeconds": 60}}),
    );
    assert!(
        validate_cel(&inverted).is_err(),
        "the longest pause is at least the first"
    );
    let off = cr(
        "team",
        serde_json::json!({"accounts": accounts,
            "limits": {"quotaPauseSeconds": 0, "quotaPauseMaxSeconds": 0, "quotaErrorCodes": []}}),
    );
    assert!(validate_cel(&off).is_ok(), "{:?}", validate_cel(&off));
}

#[test]
fn schema_guards_immutable_and_bounded_fields_with_cel() {
    let yaml = crd_yaml().expect("crd serializes");
    let crd: serde_json::Value = serde_yaml::from_str(&yaml).expect("crd yaml parses");
    let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let spec = &root["properties"]["spec"]["properties"];
    assert_eq!(rules(&spec["storage"]), ["self == oldSelf"]);
    assert!(rules(root)[0].contains("self.metadata.name.size() <= 52"));
    assert_eq!(
        rules(&spec["lingma"]["properties"]["vsixUrl"]),
        ["self.startsWith('https://')"]
    );
    assert_eq!(
        rules(&spec["defaults"]["properties"]["dedicatedDomainUrl"]),
        ["self == '' || self.startsWith('https://')"]
    );
    assert_eq!(
        rules(&spec["lingma"]),
        ["self.source != 'vsix' || has(self.vsixUrl)"]
    );
    assert_eq!(
        rules(&spec["limits"]),
        ["self.quotaPauseMaxSeconds >= self.quotaPauseSeconds"]
    );
    let limits = &spec["limits"]["properties"];
    assert_eq!(limits["quotaPauseSeconds"]["minimum"].as_f64(), Some(0.0));
    assert_eq!(limits["quotaErrorCodes"]["items"]["type"], "integer");
    assert_eq!(spec["replicas"]["maximum"].as_f64(), Some(256.0));
    let secret_name = &spec["accounts"]["properties"]["secretRef"]["properties"]["name"];
    assert_eq!(secret_name["maxLength"].as_u64(), Some(253));
    assert!(secret_name["pattern"].is_string());
    assert!(spec["storage"]["properties"]["size"]["pattern"].is_string());
}
