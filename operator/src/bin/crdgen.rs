//! Prints the CachePair CustomResourceDefinition as YAML (`crds/cachepair.yaml` is its output).

fn main() -> anyhow::Result<()> {
    print!("{}", operator::crd::crd_yaml()?);
    Ok(())
}
