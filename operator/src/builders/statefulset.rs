use std::collections::BTreeMap;

use k8s_discovery::names::{SIDECAR_PORT, SIDECAR_PORT_NAME, TOKEN_KEY, token_secret_name};
use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, KeyToPath, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::{ACCOUNTS_CHECKSUM_ANNOTATION, BuildError, child_meta, labels, selector_labels};
use crate::crd::{LingmaInstance, LingmaInstanceSpec, SourceType};

/// Operator-wide settings of the generated pods.
#[derive(Debug, Clone)]
pub struct PodSettings {
    /// Pod image used when the instance names none (OPERATOR_LINGMA_POD_IMAGE).
    pub default_image: String,
    /// Image of the `select-account` init container (OPERATOR_ACCOUNT_SELECTOR_IMAGE).
    pub account_selector_image: String,
}

/// The non-root user of every image of this project (distroless `nonroot`).
pub const RUN_AS_USER: i64 = 65532;
const DATA_DIR: &str = "/data";
const WORK_DIR: &str = "/data/lingma";
const TOKEN_DIR: &str = "/var/run/lingma/token";
const ACCOUNTS_DIR: &str = "/var/run/lingma/accounts";
/// Every account: mounted only in the `select-account` init container.
const ALL_ACCOUNTS_DIR: &str = "/var/run/lingma/all-accounts";
/// Seconds open chats get after SIGTERM (the sidecar's SIDECAR_DRAIN_TIMEOUT_SEC) plus margin.
const DRAIN_SECONDS: i64 = 30;
const GRACE_SECONDS: i64 = DRAIN_SECONDS + 15;

/// The StatefulSet: pod ordinal i is account slot i (the sidecar uses account i mod n), one
/// `lingma` container (the sidecar, which starts and supervises Lingma), and a `bootstrap` init
/// container when the binary must be downloaded.
/// `accounts_checksum` goes on the pod template, so a change of the accounts rolls the pods.
pub fn desired_statefulset(
    instance: &LingmaInstance,
    settings: &PodSettings,
    accounts_checksum: &str,
) -> Result<StatefulSet, BuildError> {
    let spec = &instance.spec;
    let name = instance.name_any();
    let image = spec
        .lingma
        .image
        .clone()
        .unwrap_or_else(|| settings.default_image.clone());
    let pull_policy = spec.lingma.image_pull_policy.map(|p| p.as_str().to_owned());
    // Each Lingma container sees only its own account: the init step copies it out of the
    // Secret, which the Lingma container never mounts.
    let mut init_containers = vec![account_selector(settings, pull_policy.clone())];
    init_containers.extend(
        (spec.lingma.source != SourceType::Image)
            .then(|| bootstrap_container(spec, image.clone(), pull_policy.clone())),
    );
    let container = lingma_container(spec, image, pull_policy);

    let pod_labels = labels(instance);
    Ok(StatefulSet {
        metadata: child_meta(instance, name.clone())?,
        spec: Some(StatefulSetSpec {
            replicas: Some(spec.replicas),
            service_name: Some(name.clone()),
            // Pods log in independently; ordered start would only slow a scale-up down.
            pod_management_policy: Some("Parallel".to_owned()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(instance)),
                match_expressions: None,
            },
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    // A scaled-down slot keeps its login state for when it comes back.
                    when_scaled: Some("Retain".to_owned()),
                    when_deleted: Some("Delete".to_owned()),
                },
            ),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(BTreeMap::from([(
                        ACCOUNTS_CHECKSUM_ANNOTATION.to_owned(),
                        accounts_checksum.to_owned(),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    // The sidecar never talks to the Kubernetes API.
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(GRACE_SECONDS),
                    security_context: Some(pod_security()),
                    init_containers: Some(init_containers),
                    containers: vec![container],
                    volumes: Some(volumes(instance)),
                    node_selector: spec.pod.node_selector.clone(),
                    tolerations: spec.pod.tolerations.clone(),
                    priority_class_name: spec.pod.priority_class_name.clone(),
                    image_pull_secrets: spec.pod.image_pull_secrets.clone(),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![data_volume_claim(instance)]),
            ..StatefulSetSpec::default()
        }),
        status: None,
    })
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// Settings of the binary's source: shared by the bootstrap init container and the sidecar.
fn source_env(spec: &LingmaInstanceSpec) -> Vec<EnvVar> {
    let source = &spec.lingma;
    let mut vars = vec![
        env("LINGMA_WORK_DIR", WORK_DIR),
        env("HOME", DATA_DIR),
        env("LOG_FORMAT", "json"),
        env("LINGMA_SOURCE_TYPE", source.source.as_env()),
        env(
            "LINGMA_MARKETPLACE_PUBLISHER",
            source.marketplace_publisher.clone(),
        ),
        env(
            "LINGMA_MARKETPLACE_EXTENSION",
            source.marketplace_extension.clone(),
        ),
        env(
            "LINGMA_BOOTSTRAP_ALWAYS",
            source.bootstrap_always.to_string(),
        ),
        env("LINGMA_FORCE_REFRESH", source.force_refresh.to_string()),
    ];
    if let Some(url) = &source.vsix_url {
        vars.push(env("LINGMA_VSIX_URL", url.clone()));
    }
    vars.push(env("LINGMA_VERSION", source.version.clone()));
    if let Some(digest) = &source.sha256 {
        vars.push(env("LINGMA_DOWNLOAD_SHA256", digest.clone()));
    }
    vars
}

fn sidecar_env(spec: &LingmaInstanceSpec) -> Vec<EnvVar> {
    let mut vars = vec![
        env("SIDECAR_HOST", "0.0.0.0"),
        env("SIDECAR_PORT", SIDECAR_PORT.to_string()),
        EnvVar {
            name: "SIDECAR_NAME".to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: "metadata.name".to_owned(),
                }),
                ..EnvVarSource::default()
            }),
        },
        env("SIDECAR_TOKEN_FILE", format!("{TOKEN_DIR}/{TOKEN_KEY}")),
        env("SIDECAR_DRAIN_TIMEOUT_SEC", DRAIN_SECONDS.to_string()),
        env("LINGMA_ACCOUNTS_FILE", format!("{ACCOUNTS_DIR}/accounts")),
        // The sidecar takes the ordinal at the end of the pod name: account = ordinal mod n.
        env("LINGMA_ACCOUNT_SLOT", "auto"),
    ];
    vars.extend(source_env(spec));
    vars.extend([
        env("DEFAULT_MODEL", spec.defaults.model.clone()),
        env("DEFAULT_ASK_MODE", spec.defaults.ask_mode.as_env()),
        env("AUTO_LOGIN_ENABLED", spec.auto_login.enabled.to_string()),
        env("AUTO_LOGIN_HEADLESS", spec.auto_login.headless.to_string()),
        env(
            "AUTO_LOGIN_TIMEOUT",
            spec.auto_login.timeout_seconds.to_string(),
        ),
        env(
            "AUTO_LOGIN_MAX_RETRY",
            spec.auto_login.max_retry.to_string(),
        ),
        env(
            "LINGMA_MAX_CONCURRENT_CHATS",
            spec.limits.max_concurrent_chats.to_string(),
        ),
        env(
            "LINGMA_RPC_TIMEOUT",
            spec.limits.rpc_timeout_seconds.to_string(),
        ),
        env(
            "LINGMA_STARTUP_TIMEOUT",
            spec.limits.startup_timeout_seconds.to_string(),
        ),
        env(
            "SIDECAR_QUOTA_PAUSE_SEC",
            spec.limits.quota_pause_seconds.to_string(),
        ),
        env(
            "SIDECAR_QUOTA_PAUSE_MAX_SEC",
            spec.limits.quota_pause_max_seconds.to_string(),
        ),
        // Comma-separated, as the sidecar reads it; empty = no quota codes (not the default).
        env(
            "LINGMA_QUOTA_ERROR_CODES",
            quota_codes_env(&spec.limits.quota_error_codes),
        ),
    ]);
    if let Some(url) = &spec.defaults.dedicated_domain_url {
        vars.push(env("DEDICATED_DOMAIN_URL", url.clone()));
    }
    vars
}

fn quota_codes_env(codes: &[i64]) -> String {
    codes
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

/// The per-pod work-directory volume (login state, cache, sessions).
fn data_volume_claim(instance: &LingmaInstance) -> PersistentVolumeClaim {
    let spec = &instance.spec;
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".to_owned()),
            labels: Some(selector_labels(instance)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: spec.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(spec.storage.size.clone()),
                )])),
                limits: None,
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

/// The `lingma` container: the sidecar, which starts and supervises Lingma.
/// Downloads the Lingma binary into the work directory (sources marketplace and vsix).
fn bootstrap_container(
    spec: &LingmaInstanceSpec,
    image: String,
    pull_policy: Option<String>,
) -> Container {
    Container {
        name: "bootstrap".to_owned(),
        image: Some(image),
        image_pull_policy: pull_policy,
        args: Some(vec!["bootstrap".to_owned()]),
        env: Some(source_env(spec)),
        volume_mounts: Some(vec![
            mount("data", DATA_DIR, false),
            mount("tmp", "/tmp", false),
        ]),
        security_context: Some(container_security()),
        resources: Some(bootstrap_resources()),
        ..Container::default()
    }
}

fn lingma_container(
    spec: &LingmaInstanceSpec,
    image: String,
    pull_policy: Option<String>,
) -> Container {
    let mounts = vec![
        mount("data", DATA_DIR, false),
        mount("tmp", "/tmp", false),
        mount("dshm", "/dev/shm", false),
        mount("sidecar-token", TOKEN_DIR, true),
        mount("accounts", ACCOUNTS_DIR, true),
    ];
    Container {
        name: "lingma".to_owned(),
        image: Some(image),
        image_pull_policy: pull_policy,
        env: Some(sidecar_env(spec)),
        ports: Some(vec![ContainerPort {
            name: Some(SIDECAR_PORT_NAME.to_owned()),
            container_port: SIDECAR_PORT,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        // healthz = the sidecar process is alive; Lingma restarts never need a pod restart.
        liveness_probe: Some(http_probe("/healthz", 10, 3)),
        // readyz = connected to Lingma and logged in: only then do chats arrive.
        readiness_probe: Some(http_probe("/readyz", 5, 2)),
        startup_probe: Some(http_probe("/healthz", 2, 30)),
        resources: Some(spec.pod.resources.clone().unwrap_or_else(default_resources)),
        security_context: Some(container_security()),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

fn account_selector(settings: &PodSettings, pull_policy: Option<String>) -> Container {
    Container {
        name: "select-account".to_owned(),
        image: Some(settings.account_selector_image.clone()),
        image_pull_policy: pull_policy,
        args: Some(vec![
            "select-account".to_owned(),
            format!("--input={ALL_ACCOUNTS_DIR}/accounts"),
            format!("--output={ACCOUNTS_DIR}/accounts"),
        ]),
        env: Some(vec![EnvVar {
            name: "POD_NAME".to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: "metadata.name".to_owned(),
                }),
                ..EnvVarSource::default()
            }),
        }]),
        volume_mounts: Some(vec![
            mount("all-accounts", ALL_ACCOUNTS_DIR, true),
            mount("accounts", ACCOUNTS_DIR, false),
        ]),
        security_context: Some(container_security()),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity("10m".to_owned())),
                ("memory".to_owned(), Quantity("16Mi".to_owned())),
            ])),
            limits: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity("100m".to_owned())),
                ("memory".to_owned(), Quantity("32Mi".to_owned())),
            ])),
            ..ResourceRequirements::default()
        }),
        ..Container::default()
    }
}

fn volumes(instance: &LingmaInstance) -> Vec<Volume> {
    let accounts = &instance.spec.accounts.secret_ref;
    let secret_volume = |name: &str, secret: String, key: &str, path: &str| Volume {
        name: name.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret),
            items: Some(vec![KeyToPath {
                key: key.to_owned(),
                path: path.to_owned(),
                mode: None,
            }]),
            default_mode: Some(0o440),
            optional: Some(false),
        }),
        ..Volume::default()
    };
    let empty_dir = |name: &str, medium: Option<&str>, limit: &str| Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: medium.map(str::to_owned),
            size_limit: Some(Quantity(limit.to_owned())),
        }),
        ..Volume::default()
    };
    vec![
        secret_volume(
            "sidecar-token",
            token_secret_name(&instance.name_any()),
            TOKEN_KEY,
            TOKEN_KEY,
        ),
        secret_volume(
            "all-accounts",
            accounts.name.clone(),
            &accounts.key,
            "accounts",
        ),
        // The pod's own account, in memory (never on the node's disk).
        empty_dir("accounts", Some("Memory"), "1Mi"),
        // The root filesystem is read-only; the login browser needs /tmp and /dev/shm.
        empty_dir("tmp", None, "1Gi"),
        empty_dir("dshm", Some("Memory"), "256Mi"),
    ]
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(SIDECAR_PORT_NAME.to_owned()),
            scheme: Some("HTTP".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS_USER),
        run_as_group: Some(RUN_AS_USER),
        fs_group: Some(RUN_AS_USER),
        fs_group_change_policy: Some("OnRootMismatch".to_owned()),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}

fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        ..SecurityContext::default()
    }
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
        .collect()
}

fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(quantities(&[("cpu", "250m"), ("memory", "512Mi")])),
        limits: Some(quantities(&[("memory", "2Gi")])),
        ..ResourceRequirements::default()
    }
}

fn bootstrap_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(quantities(&[("cpu", "100m"), ("memory", "128Mi")])),
        limits: Some(quantities(&[("memory", "512Mi")])),
        ..ResourceRequirements::default()
    }
}

#[cfg(test)]
mod tests;
