//! The committed CRD files are crdgen's output: regenerate them with
//! `scripts/crdgen.sh` when this fails.

use std::path::Path;

#[test]
fn committed_crds_are_crdgens_output() {
    let generated = operator::crd::crd_yaml().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for file in ["crds/cachepair.yaml", "charts/cachepair-operator/crds/cachepair.yaml", "deploy/crd.yaml"] {
        let committed = std::fs::read_to_string(root.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(committed == generated, "{file} is stale: regenerate it with crdgen");
    }
}
