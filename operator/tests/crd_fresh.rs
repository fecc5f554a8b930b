//! `crds/` must hold exactly what the Rust types generate.

#[test]
fn crds_dir_matches_generated_crd() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crds/lingma.io_lingmainstances.yaml"
    );
    let stored = std::fs::read_to_string(path).expect("crds/lingma.io_lingmainstances.yaml exists");
    let generated = lingma_operator::crd::crd_yaml().expect("crd serializes");
    assert!(
        stored == generated,
        "crds/lingma.io_lingmainstances.yaml is stale: run `cargo run -p operator -- crd > crds/lingma.io_lingmainstances.yaml`"
    );
}
