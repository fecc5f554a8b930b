fn main() -> anyhow::Result<()> {
    print!("{}", lingma_operator::crd::crd_yaml()?);
    Ok(())
}
