use super::*;
use crate::builders::fixtures::instance;

fn settings() -> PodSettings {
    PodSettings {
        default_image: "registry.example/lingma-pod:1".to_owned(),
        account_selector_image: "ghcr.io/lingma-gateway/operator:0.1.0".to_owned(),
    }
}

fn build(spec: serde_json::Value) -> StatefulSet {
    desired_statefulset(&instance(spec), &settings(), "sum").expect("builds")
}

fn env_of(container: &Container) -> BTreeMap<String, EnvVar> {
    container
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name.clone(), e))
        .collect()
}

fn value(env: &BTreeMap<String, EnvVar>, name: &str) -> Option<String> {
    env.get(name).and_then(|e| e.value.clone())
}

#[test]
fn replicas_ordinals_and_accounts_follow_the_spec() {
    let sts = build(serde_json::json!({
        "replicas": 3,
        "accounts": {"secretRef": {"name": "team-accounts", "key": "list"}}
    }));
    let spec = sts.spec.as_ref().expect("spec");
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.service_name.as_deref(), Some("team"));
    let pod = spec.template.spec.as_ref().expect("pod spec");
    let lingma = &pod.containers[0];
    assert_eq!(pod.containers.len(), 1);
    assert_eq!(lingma.name, "lingma");
    let env = env_of(lingma);
    assert_eq!(value(&env, "LINGMA_ACCOUNT_SLOT").as_deref(), Some("auto"));
    assert_eq!(
        value(&env, "LINGMA_ACCOUNTS_FILE").as_deref(),
        Some("/var/run/lingma/accounts/accounts")
    );
    assert_eq!(
        env["SIDECAR_NAME"]
            .value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.as_str()),
        Some("metadata.name")
    );
    // The accounts key is mounted as a file; credentials never appear as env literals.
    let accounts = pod
        .volumes
        .as_ref()
        .expect("volumes")
        .iter()
        .find(|v| v.name == "all-accounts")
        .and_then(|v| v.secret.clone())
        .expect("accounts secret volume");
    assert_eq!(accounts.secret_name.as_deref(), Some("team-accounts"));
    assert_eq!(accounts.items.expect("items")[0].key, "list");
    assert!(env.values().all(|e| !e.name.contains("PASSWORD")));
    let token = pod
        .volumes
        .as_ref()
        .expect("volumes")
        .iter()
        .find(|v| v.name == "sidecar-token")
        .and_then(|v| v.secret.clone())
        .expect("token volume");
    assert_eq!(token.secret_name.as_deref(), Some("team-sidecar-token"));
    let mounted: Vec<&str> = token
        .items
        .iter()
        .flatten()
        .map(|i| i.key.as_str())
        .collect();
    assert_eq!(mounted, ["token"], "the checksum key is never mounted");
    assert_eq!(
        value(&env, "SIDECAR_TOKEN_FILE").as_deref(),
        Some("/var/run/lingma/token/token")
    );
}

#[test]
fn probes_point_at_the_sidecar() {
    let sts = build(serde_json::json!({"accounts": {"secretRef": {"name": "a"}}}));
    let pod = sts.spec.and_then(|s| s.template.spec).expect("pod spec");
    let lingma = &pod.containers[0];
    let path = |p: &Option<Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .map(|h| (h.path.clone(), h.port.clone()))
    };
    let mux = IntOrString::String("mux".to_owned());
    assert_eq!(
        path(&lingma.readiness_probe),
        Some((Some("/readyz".to_owned()), mux.clone()))
    );
    assert_eq!(
        path(&lingma.liveness_probe),
        Some((Some("/healthz".to_owned()), mux))
    );
    let port = &lingma.ports.as_ref().expect("ports")[0];
    assert_eq!(
        (port.name.as_deref(), port.container_port),
        (Some("mux"), 8318)
    );
}

#[test]
fn pods_run_non_root_read_only_without_capabilities_or_api_token() {
    let sts = build(serde_json::json!({"accounts": {"secretRef": {"name": "a"}}}));
    let pod = sts.spec.and_then(|s| s.template.spec).expect("pod spec");
    let pod_sc = pod.security_context.as_ref().expect("pod security");
    assert_eq!(pod_sc.run_as_non_root, Some(true));
    assert_eq!(pod_sc.run_as_user, Some(65532));
    assert_eq!(pod.automount_service_account_token, Some(false));
    for c in pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
    {
        let sc = c.security_context.as_ref().expect("container security");
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{}", c.name);
        assert_eq!(
            sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
            Some(vec!["ALL".to_owned()])
        );
        let resources = c.resources.as_ref().expect("resources");
        assert!(
            resources
                .requests
                .as_ref()
                .is_some_and(|r| r.contains_key("memory"))
        );
        assert!(
            resources
                .limits
                .as_ref()
                .is_some_and(|r| r.contains_key("memory"))
        );
    }
}

#[test]
fn bootstrap_init_container_only_when_the_binary_is_downloaded() {
    let marketplace = build(serde_json::json!({"accounts": {"secretRef": {"name": "a"}}}));
    let pod = marketplace.spec.and_then(|s| s.template.spec).expect("pod");
    let init = pod.init_containers.expect("bootstrap init container");
    assert_eq!(init[1].name, "bootstrap");
    assert_eq!(init[1].args, Some(vec!["bootstrap".to_owned()]));
    assert_eq!(
        init[1].image.as_deref(),
        Some("registry.example/lingma-pod:1")
    );
    let env = env_of(&init[1]);
    assert_eq!(
        value(&env, "LINGMA_SOURCE_TYPE").as_deref(),
        Some("marketplace")
    );
    assert_eq!(
        value(&env, "LINGMA_WORK_DIR").as_deref(),
        Some("/data/lingma")
    );
    assert_eq!(
        value(&env, "LINGMA_VERSION").as_deref(),
        Some(lingma_bootstrap::DEFAULT_LINGMA_VERSION),
        "pods download the version lingma-bootstrap pins, never `latest` by default"
    );
    assert_eq!(value(&env, "LINGMA_DOWNLOAD_SHA256"), None);

    let vsix = build(serde_json::json!({
        "accounts": {"secretRef": {"name": "a"}},
        "lingma": {"source": "vsix", "vsixUrl": "https://example.invalid/l.vsix", "forceRefresh": true,
                   "version": "2.7.0", "sha256": "ab".repeat(32)}
    }));
    let pod = vsix.spec.and_then(|s| s.template.spec).expect("pod");
    let env = env_of(&pod.containers[0]);
    assert_eq!(value(&env, "LINGMA_VERSION").as_deref(), Some("2.7.0"));
    assert_eq!(value(&env, "LINGMA_DOWNLOAD_SHA256"), Some("ab".repeat(32)));
    assert_eq!(
        value(&env, "LINGMA_VSIX_URL").as_deref(),
        Some("https://example.invalid/l.vsix")
    );
    assert_eq!(value(&env, "LINGMA_FORCE_REFRESH").as_deref(), Some("true"));

    let image = build(serde_json::json!({
        "accounts": {"secretRef": {"name": "a"}},
        "lingma": {"source": "image", "image": "mine:2"}
    }));
    let pod = image.spec.and_then(|s| s.template.spec).expect("pod");
    let init: Vec<&str> = pod
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        init,
        ["select-account"],
        "no bootstrap for a baked-in binary"
    );
    assert_eq!(pod.containers[0].image.as_deref(), Some("mine:2"));
}

#[test]
fn defaults_limits_and_storage_reach_the_pod() {
    let sts = build(serde_json::json!({
        "accounts": {"secretRef": {"name": "a"}},
        "defaults": {"model": "qwen", "askMode": "agent", "dedicatedDomainUrl": "https://corp.example"},
        "limits": {"maxConcurrentChats": 2, "rpcTimeoutSeconds": 60},
        "autoLogin": {"enabled": false},
        "storage": {"size": "5Gi", "storageClassName": "fast"},
        "pod": {"nodeSelector": {"pool": "lingma"}}
    }));
    let spec = sts.spec.expect("spec");
    let pod = spec.template.spec.as_ref().expect("pod");
    let env = env_of(&pod.containers[0]);
    for (name, expected) in [
        ("DEFAULT_MODEL", "qwen"),
        ("DEFAULT_ASK_MODE", "agent"),
        ("DEDICATED_DOMAIN_URL", "https://corp.example"),
        ("LINGMA_MAX_CONCURRENT_CHATS", "2"),
        ("LINGMA_RPC_TIMEOUT", "60"),
        ("LINGMA_STARTUP_TIMEOUT", "40"),
        ("AUTO_LOGIN_ENABLED", "false"),
        ("LOG_FORMAT", "json"),
        ("SIDECAR_HOST", "0.0.0.0"),
        ("SIDECAR_PORT", "8318"),
    ] {
        assert_eq!(value(&env, name).as_deref(), Some(expected), "{name}");
    }
    assert_eq!(
        pod.node_selector.as_ref().expect("node selector")["pool"],
        "lingma"
    );
    let claim = &spec.volume_claim_templates.expect("claims")[0];
    let claim_spec = claim.spec.as_ref().expect("claim spec");
    assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast"));
    assert_eq!(
        claim_spec
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .expect("requests")["storage"],
        Quantity("5Gi".to_owned())
    );
    let labels = spec
        .template
        .metadata
        .and_then(|m| m.labels)
        .expect("pod labels");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "lingma-operator");
    assert_eq!(
        sts.metadata.owner_references.expect("owner")[0].name,
        "team"
    );
}

#[test]
fn the_accounts_checksum_is_on_the_pod_template() {
    let spec = serde_json::json!({"accounts": {"secretRef": {"name": "acc"}}});
    let sts = desired_statefulset(&instance(spec), &settings(), "abc").expect("builds");
    let annotations = sts
        .spec
        .and_then(|s| s.template.metadata)
        .and_then(|m| m.annotations)
        .expect("template annotations");
    assert_eq!(
        annotations
            .get("lingma.io/accounts-checksum")
            .map(String::as_str),
        Some("abc")
    );
}

#[test]
fn only_the_init_step_mounts_every_account_and_lingma_sees_its_own() {
    let sts = build(serde_json::json!({"accounts": {"secretRef": {"name": "acc"}}}));
    let pod = sts.spec.and_then(|s| s.template.spec).expect("pod");
    let mounts_of = |c: &Container| -> Vec<String> {
        c.volume_mounts
            .iter()
            .flatten()
            .map(|m| m.name.clone())
            .collect()
    };
    let init = pod.init_containers.as_ref().expect("init containers");
    let selector = &init[0];
    assert_eq!(selector.name, "select-account");
    assert_eq!(
        selector.image.as_deref(),
        Some("ghcr.io/lingma-gateway/operator:0.1.0")
    );
    assert_eq!(
        selector.args.as_deref().map(|a| a[0].as_str()),
        Some("select-account")
    );
    assert!(mounts_of(selector).contains(&"all-accounts".to_owned()));
    for container in pod.containers.iter().chain(&init[1..]) {
        assert!(
            !mounts_of(container).contains(&"all-accounts".to_owned()),
            "{} must not see every account",
            container.name
        );
    }
    assert!(mounts_of(&pod.containers[0]).contains(&"accounts".to_owned()));
    let own = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "accounts")
        .and_then(|v| v.empty_dir.clone())
        .expect("own account volume");
    assert_eq!(own.medium.as_deref(), Some("Memory"));
}

#[test]
fn quota_settings_reach_the_sidecar() {
    let sts = build(serde_json::json!({
        "accounts": {"secretRef": {"name": "a"}},
        "limits": {"quotaPauseSeconds": 10, "quotaPauseMaxSeconds": 600,
            "quotaErrorCodes": [110, 40505]}
    }));
    let pod = sts.spec.and_then(|s| s.template.spec).expect("pod");
    let env = env_of(&pod.containers[0]);
    for (name, expected) in [
        ("SIDECAR_QUOTA_PAUSE_SEC", "10"),
        ("SIDECAR_QUOTA_PAUSE_MAX_SEC", "600"),
        ("LINGMA_QUOTA_ERROR_CODES", "110,40505"),
    ] {
        assert_eq!(value(&env, name).as_deref(), Some(expected), "{name}");
    }
    let none = build(serde_json::json!({
        "accounts": {"secretRef": {"name": "a"}},
        "limits": {"quotaErrorCodes": []}
    }));
    let pod = none.spec.and_then(|s| s.template.spec).expect("pod");
    assert_eq!(
        value(&env_of(&pod.containers[0]), "LINGMA_QUOTA_ERROR_CODES").as_deref(),
        Some(""),
        "an empty list is set, not left to the sidecar's default"
    );
}

/// The CRD's defaults are the sidecar's: a default instance sets what `.env.example` (every
/// setting with the sidecar's default) says, so an instance that names nothing behaves like a
/// sidecar started without these settings.
#[test]
fn quota_defaults_are_the_sidecar_defaults() {
    let example = include_str!("../../../../.env.example");
    let documented = |name: &str| {
        example
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .map(str::trim)
            .unwrap_or_else(|| panic!("{name} in .env.example"))
            .to_owned()
    };
    let sts = build(serde_json::json!({"accounts": {"secretRef": {"name": "a"}}}));
    let pod = sts.spec.and_then(|s| s.template.spec).expect("pod");
    let env = env_of(&pod.containers[0]);
    for name in [
        "SIDECAR_QUOTA_PAUSE_SEC",
        "SIDECAR_QUOTA_PAUSE_MAX_SEC",
        "LINGMA_QUOTA_ERROR_CODES",
    ] {
        assert_eq!(value(&env, name), Some(documented(name)), "{name}");
    }
}
